"""The application factory: wires configuration into services for one app's lifespan."""

from __future__ import annotations

import datetime as dt
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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
from tokenserver.accounts import AccountError, Accounts
from tokenserver.audit import AdminTrail, AuditLog
from tokenserver.authn.base import Backend
from tokenserver.authn.cache import CredentialCache
from tokenserver.authn.chain import Authenticator
from tokenserver.authn.ci_tokens import CITokenBackend
from tokenserver.authn.configured import build_backends
from tokenserver.authn.federated import FederatedBackend
from tokenserver.authz.acl import DEFAULT_ACL, ACLPolicy
from tokenserver.authz.acl_file import ACLFile
from tokenserver.authz.policy import Explaining
from tokenserver.config import Config
from tokenserver.errors import (
    AdminUnauthorized,
    ClientGone,
    HTTPError,
    InvalidRequest,
    TokenEndpointError,
    from_account_error,
)
from tokenserver.federation.trusts import Trusts
from tokenserver.grants import GrantService
from tokenserver.issuer import Issuer
from tokenserver.keys import load_keys
from tokenserver.metrics import TokenMetrics
from tokenserver.routes import admin, token, ui, wellknown
from tokenserver.store.audit import AuditStore
from tokenserver.store.ci_tokens import CITokenStore
from tokenserver.store.db import Database
from tokenserver.store.login_failures import LoginFailureStore
from tokenserver.store.refresh_tokens import RefreshTokenStore
from tokenserver.store.trusts import TrustStore
from tokenserver.store.ui_sessions import UISessionStore
from tokenserver.store.users import UserStore
from tokenserver.throttle import LoginThrottle

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_policy(config: Config) -> Explaining:
    """The configured rules; a bad rules file raises ConfigError here, before serving."""
    if config.acl_file is not None:
        return ACLFile(config.acl_file)
    return ACLPolicy(DEFAULT_ACL if config.acl is None else config.acl)


def create_app(config: Config, *, clock: Callable[[], dt.datetime] = _utcnow) -> FastAPI:
    policy = build_policy(config)
    config.check_trust_files()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(config.database.url, pool_size=config.database.pool_size)
        db.migrate()
        keys = load_keys(config.token.keys_dir, config.token.algorithm, config.token.signing_key)
        users = UserStore(db)
        refresh_tokens = RefreshTokenStore(db)
        ci_tokens = CITokenStore(db)
        people = build_backends(config, users)
        trust_store = TrustStore(db)
        configured_trusts = [trust.spec() for trust in config.federation]
        federation = FederatedBackend(Trusts(configured_trusts, trust_store, clock))
        # CI tokens and trusts first: only passwords shaped like their secrets
        # (a CI secret, a JWT) go there.
        backends: list[Backend] = [CITokenBackend(ci_tokens, clock), federation, *people]
        authenticator = Authenticator(
            backends,
            CredentialCache(config.users.credential_cache_ttl),
            config.users.bcrypt_cost,
        )
        audit = AuditLog(AuditStore(db), dt.timedelta(days=config.audit.retention_days), clock)
        app.state.config = config
        app.state.db = db
        app.state.jwks = keys.jwks()
        app.state.keys = keys
        app.state.audit = audit
        app.state.grants = GrantService(
            authenticator=authenticator,
            policy=policy,
            issuer=Issuer(keys, config.token.issuer, config.token.expiration, config.token.x5c),
            refresh_tokens=refresh_tokens,
            services=config.token.services,
            refresh_lifetime=dt.timedelta(seconds=config.token.refresh_expiration),
            clock=clock,
            throttle=LoginThrottle(
                LoginFailureStore(db),
                config.throttle.account_failures,
                config.throttle.address_failures,
                config.throttle.window,
                clock=lambda: clock().timestamp(),
                ipv6_prefix=config.throttle.ipv6_prefix,
            ),
            metrics=app.state.metrics,
            audit=audit,
            federation=federation,
        )
        trail = AdminTrail(AuditStore(db), clock)
        app.state.trail = trail
        app.state.accounts = Accounts(
            users=users,
            refresh_tokens=refresh_tokens,
            ci_tokens=ci_tokens,
            directory=Authenticator(people, CredentialCache(0), config.users.bcrypt_cost),
            trail=trail,
            clock=clock,
            bcrypt_cost=config.users.bcrypt_cost,
            ci_max_ttl=config.ci_tokens.max_ttl,
            trusts=trust_store,
            ui_sessions=UISessionStore(db),
            configured_trusts=configured_trusts,
        )
        log.info(
            "token server ready",
            extra={
                "signing_kid": keys.signing.kid,
                "alg": keys.signing.alg,
                "keys": len(keys.public),
                "backends": ",".join(b.name for b in backends),
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
            app.state.audit.close()
            for backend in backends:
                backend.close()
            db.dispose()

    metrics = TokenMetrics()
    app = token.TokenApp(
        observers=[metrics.observe],
        title="tokenserver",
        version=__version__,
        lifespan=lifespan,
        # The API docs come from a local copy of Swagger UI, so /docs works offline.
        docs_url=None,
        redoc_url=None,
    )
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

    app.state.metrics = metrics
    app.include_router(token.router)
    app.include_router(wellknown.router)
    app.include_router(admin.router)
    ui.install(app)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, headers={"Content-Type": content_type})

    @app.exception_handler(TokenEndpointError)
    async def token_error(request: Request, exc: TokenEndpointError) -> Response:
        if isinstance(exc, ClientGone):
            return await client_disconnected(request, ClientDisconnect())
        log.info("request refused", extra={"error": exc.error, "status": exc.status})
        headers = exc.headers()
        if exc.close:
            headers["Connection"] = "close"
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(AccountError)
    async def account_error(request: Request, exc: AccountError) -> Response:
        return await token_error(request, from_account_error(exc))

    def refused_before_auth(request: Request) -> TokenEndpointError | None:
        # An unknown admin path or method tells a caller without credentials
        # only that it needs some.
        path = request.url.path
        if path.startswith(admin.PREFIX + "/") and "authorization" not in request.headers:
            return AdminUnauthorized("credentials are required", admin.REALM)
        return None

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return await token_error(request, InvalidRequest("malformed request"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Routing and body-parsing errors, in the same JSON shape as every other error."""
        error = refused_before_auth(request) or HTTPError(exc.status_code, str(exc.detail))
        response = await token_error(request, error)
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

    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # Validation errors are answered 400 in our JSON shape, not FastAPI's 422.
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
    return app
