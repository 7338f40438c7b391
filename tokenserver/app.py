"""The application factory: routes, error answers and a lifespan that opens the services."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from swagger_ui_bundle import swagger_ui_path

from authcore.routing import allow_header
from tokenserver import __version__
from tokenserver.accounts import AccountError
from tokenserver.config import Config
from tokenserver.errors import (
    AdminUnauthorized,
    ClientGone,
    FrameworkError,
    InvalidRequest,
    TokenServerError,
    from_account_error,
)
from tokenserver.fast_path import TokenApp
from tokenserver.metrics import TokenMetrics
from tokenserver.routes import admin, device, token, ui, wellknown
from tokenserver.services import (
    Clock,
    Services,
    build_policy,
    open_services,
    rechecker,
    utcnow,
)

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(config: Config, *, clock: Clock = utcnow) -> FastAPI:
    policy = build_policy(config)
    config.check_trust_files()
    metrics = TokenMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with open_services(config, policy=policy, metrics=metrics, clock=clock) as services:
            app.state.services = services
            async with _rechecking(services):
                with _frozen_heap(services):
                    yield

    app = TokenApp(
        token_routes=token.router,
        observers=[metrics.observe],
        title="tokenserver",
        version=__version__,
        lifespan=lifespan,
        # The API docs come from a local copy of Swagger UI, so /docs works offline.
        docs_url=None,
        redoc_url=None,
    )
    _mount_docs(app)
    app.include_router(token.router)
    app.include_router(wellknown.router)
    app.include_router(admin.router)
    app.include_router(device.router)
    ui.install(app)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, headers={"Content-Type": content_type})

    _install_error_answers(app)
    _drop_validation_answers(app)
    return app


@asynccontextmanager
async def _rechecking(services: Services) -> AsyncIterator[None]:
    """Ask the OpenID provider about its people again while the app runs (`sso/recheck.py`)."""
    recheck = rechecker(services)
    if recheck is None:
        yield
        return
    from tokenserver.sso.recheck import keep_rechecking

    task = asyncio.create_task(keep_rechecking(recheck))
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


@contextmanager
def _frozen_heap(services: Services) -> Iterator[None]:
    """Say the server is ready, and keep what start-up built out of the collector's way."""
    keys = services.keys
    log.info(
        "token server ready",
        extra={
            "signing_kid": keys.signing.kid,
            "alg": keys.signing.alg,
            "keys": len(keys.public),
            "backends": ",".join(b.name for b in services.authenticator.backends),
        },
    )
    # What start-up built lives as long as the app: out of the collector's
    # way, a full collection no longer walks it (tens of milliseconds here,
    # the warm path's p99 before this).
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _mount_docs(app: FastAPI) -> None:
    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )


def _refused_before_auth(request: Request) -> TokenServerError | None:
    # An unknown admin path or method tells a caller without credentials
    # only that it needs some.
    path = request.url.path
    if path.startswith(admin.PREFIX + "/") and "authorization" not in request.headers:
        return AdminUnauthorized("credentials are required", admin.REALM)
    return None


def _install_error_answers(app: FastAPI) -> None:
    """Every refusal, ours or the framework's, in one JSON shape."""

    @app.exception_handler(TokenServerError)
    async def answer_error(request: Request, exc: TokenServerError) -> Response:
        if isinstance(exc, ClientGone):
            return await client_disconnected(request, ClientDisconnect())
        log.info("request refused", extra={"error": exc.error, "status": exc.status})
        headers = exc.headers()
        if exc.close:
            headers["Connection"] = "close"
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(AccountError)
    async def account_error(request: Request, exc: AccountError) -> Response:
        return await answer_error(request, from_account_error(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return await answer_error(request, InvalidRequest("malformed request"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Routing and body-parsing errors, in the same JSON shape as every other error."""
        error = _refused_before_auth(request) or FrameworkError(exc.status_code, str(exc.detail))
        response = await answer_error(request, error)
        if exc.headers:
            response.headers.update(exc.headers)
        if response.status_code == 405:
            # Starlette names only the first matching route's methods.
            response.headers["Allow"] = allow_header(app.router.routes, request.scope)
        return response

    @app.exception_handler(ClientDisconnect)
    async def client_disconnected(request: Request, _exc: ClientDisconnect) -> Response:
        # Nothing can be sent any more; the access line records it as 499.
        log.info("client disconnected", extra={"path": request.url.path})
        return Response(status_code=499)


def _drop_validation_answers(app: FastAPI) -> None:
    """Validation errors are answered 400 in our JSON shape, not FastAPI's 422: the
    schema says so."""
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate_openapi()
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    operation.get("responses", {}).pop("422", None)
            components = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
        return app.openapi_schema or generate_openapi()

    app.openapi = openapi  # type: ignore[method-assign]
