"""The application factory of the registry service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from authcore.middleware import RequestMiddleware
from authcore.remote_keys import FETCH_DEADLINE
from authcore.routing import allow_header, allowed_methods
from registry_proxy import context
from registry_proxy.auth import AccessController
from registry_proxy.config import Config
from registry_proxy.errors import RegistryError, error_response, from_storage
from registry_proxy.metrics import RegistryMetrics, auth_failure_reason
from registry_proxy.purger import run_purger
from registry_proxy.routes import base, blobs, catalog, manifests, referrers, tags, uploads
from registry_proxy.routes.numbers import bounded_int, is_number
from registry_proxy.services import Services
from registry_proxy.storage import Storage, close_driver, make_driver
from registry_proxy.storage.errors import StorageError
from registry_proxy.trust import KeyStore
from registry_proxy.upload_slots import UploadSlots
from registry_proxy.upstreams.configured import build_upstreams
from registry_proxy.upstreams.pull_through import PullThrough

__all__ = ["create_app"]

log = logging.getLogger("registry_proxy")

NAME = "{name:path}"


# No request matches two of these in full (path and method: each ends in its
# own fixed segments), so their order only decides how many patterns the
# router tries first: the requests pulls make most come first.
ROUTES = [
    Route(f"/v2/{NAME}/blobs/{{digest}}", blobs.get_blob, methods=["GET", "HEAD"]),
    Route(f"/v2/{NAME}/manifests/{{reference}}", manifests.get_manifest, methods=["GET", "HEAD"]),
    Route("/v2/", base.version_check, methods=["GET", "HEAD"]),
    Route(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.patch_upload, methods=["PATCH"]),
    Route(f"/v2/{NAME}/blobs/uploads/", uploads.start_upload, methods=["POST"]),
    Route(f"/v2/{NAME}/blobs/uploads", uploads.start_upload, methods=["POST"]),
    Route(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.upload_status, methods=["GET"]),
    Route(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.finish_upload, methods=["PUT"]),
    Route(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.cancel_upload, methods=["DELETE"]),
    Route(f"/v2/{NAME}/manifests/{{reference}}", manifests.put_manifest, methods=["PUT"]),
    Route(f"/v2/{NAME}/manifests/{{reference}}", manifests.delete_manifest, methods=["DELETE"]),
    Route(f"/v2/{NAME}/blobs/{{digest}}", blobs.delete_blob, methods=["DELETE"]),
    Route(f"/v2/{NAME}/tags/list", tags.list_tags, methods=["GET"]),
    Route(f"/v2/{NAME}/referrers/{{digest}}", referrers.referrers, methods=["GET"]),
    Route("/v2/_catalog", catalog.catalog, methods=["GET"]),
]


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _read_only(request: Request) -> Response:
    """Every write of a read-only instance: refused before anything else is looked at."""
    allowed = allowed_methods(request.app.router.routes, request.scope)
    raise RegistryError(
        "UNSUPPORTED",
        {"method": request.method},
        message="the registry is in read-only mode",
        headers={"Allow": ", ".join(m for m in allowed if m not in WRITE_METHODS)},
    )


def _routes(read_only: bool) -> list[Route]:
    if not read_only:
        return ROUTES
    return [
        Route(route.path, _read_only, methods=list(route.methods or ()))
        if WRITE_METHODS & set(route.methods or ())
        else route
        for route in ROUTES
    ]


# Bodies up to this size are read and dropped before an error answer, so the
# client's connection stays usable (as Go's HTTP server does); larger ones
# are left unread and the connection is closed.
DRAIN_LIMIT = 4 * 1024 * 1024


async def _drain(request: Request) -> bool:
    """Read and drop what is left of the body; False if it is too much to read."""
    declared = request.headers.get("content-length")
    if declared is None and "chunked" not in request.headers.get("transfer-encoding", ""):
        return True
    if declared is not None and (
        not is_number(declared) or bounded_int(declared, DRAIN_LIMIT + 1) > DRAIN_LIMIT
    ):
        return False
    drained = 0
    try:
        async for chunk in request.stream():
            drained += len(chunk)
            if drained > DRAIN_LIMIT:
                return False
    except (ClientDisconnect, RuntimeError):
        # RuntimeError: the handler already consumed the stream.
        return True
    return True


async def _respond(request: Request, exc: RegistryError) -> Response:
    # A request refused for load (429) is answered at once: its body is what we refuse.
    drained = exc.status != 429 and await _drain(request)
    context.ERROR_CODE.set(exc.code)
    context.ERROR_MESSAGE.set(exc.message)
    if exc.detail is not None:
        context.ERROR_DETAIL.set(exc.detail)
    metrics: RegistryMetrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None and exc.code == "UNAUTHORIZED":
        metrics.auth_failure(
            auth_failure_reason(
                request.headers.get("authorization"), exc.headers.get("WWW-Authenticate")
            )
        )
    # Logged once, here, with the typed context keys; challenges are routine.
    level = logging.INFO if exc.status in (401, 404) else logging.WARNING
    log.log(level, "request failed", extra={"status": exc.status})
    response = error_response(exc, head=request.method == "HEAD")
    if not drained:
        # Else the server would go on reading (and dropping) the rest for as long
        # as the client sends it, holding the connection and its buffers.
        response.headers["Connection"] = "close"
    if exc.status == 405 and "Allow" not in exc.headers:
        # Every method of the path, also for a route that refuses its own (deletes disabled).
        response.headers["Allow"] = allow_header(request.app.router.routes, request.scope)
    return response


async def _registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    return await _respond(request, exc)


async def _storage_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StorageError)
    return await _respond(request, from_storage(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = RegistryError(
            "UNSUPPORTED", {"method": request.method}, message="method not allowed"
        )
    else:
        error = RegistryError("UNSUPPORTED", None, message="not found", status=exc.status_code)
    return await _respond(request, error)


async def _metrics(request: Request) -> Response:
    metrics: RegistryMetrics = request.app.state.metrics
    body, content_type = metrics.render()
    return Response(body, headers={"Content-Type": content_type})


async def _disconnect(request: Request, exc: Exception) -> Response:
    # Nothing can be sent; whatever arrived stays in the upload session.
    log.info("client disconnected", extra={"path": request.url.path})
    return Response(status_code=499)


def create_app(config: Config) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        token = config.auth.token
        keys = KeyStore.from_sources(token.rootcertbundle, token.jwks, token.jwks_min_refresh)
        if token.jwks and "://" in token.jwks:
            # At start there is time to wait for the whole fetch (it has its deadline).
            await keys.refresh(wait=FETCH_DEADLINE)
        driver = make_driver(config.storage.driver, **config.storage.driver_options())
        storage = Storage(driver, config.validation.rules())
        upstreams = build_upstreams(config)
        pull_through = PullThrough(storage, metrics)
        app.state.services = Services(
            storage=storage,
            access=AccessController(
                keys,
                realm=token.realm,
                service=token.service,
                issuer=token.issuer,
                leeway=token.leeway,
            ),
            delete_enabled=config.storage.delete.enabled,
            uploads=UploadSlots(config.http.max_uploads, config.http.max_uploads_per_subject),
            redirect=not config.storage.redirect.disable,
            upstreams=upstreams,
            pull_through=pull_through,
        )
        read_only = config.storage.maintenance.readonly.enabled
        log.info(
            "registry ready",
            extra={
                "storage": config.storage.driver,
                "keys": len(keys.current.by_kid),
                "read_only": read_only,
            },
        )
        purging = config.storage.maintenance.uploadpurging
        # A read-only instance writes nothing, so it leaves purging to a writable one.
        purger = (
            asyncio.create_task(run_purger(app.state.services.storage, purging), name="purge")
            if purging.enabled and not read_only
            else None
        )
        try:
            yield
        finally:
            if purger is not None:
                purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purger
            await pull_through.aclose()
            await upstreams.aclose()
            await keys.aclose()
            await close_driver(driver)

    metrics = RegistryMetrics() if config.http.metrics.enabled else None
    routes = _routes(config.storage.maintenance.readonly.enabled)
    if metrics is not None:
        routes = [*routes, Route("/metrics", _metrics, methods=["GET"])]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            RegistryError: _registry_error,
            StorageError: _storage_error,
            HTTPException: _http_error,
            ClientDisconnect: _disconnect,
        },
    )
    app.add_middleware(
        RequestMiddleware,
        logger="registry_proxy.access",
        observers=[] if metrics is None else [metrics.observe],
    )
    app.state.metrics = metrics
    return app
