"""What every handler needs: the repository name, the token check, the common headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request

from authcore.scope import Access
from registry_proxy import context
from registry_proxy.auth import VerifiedToken
from registry_proxy.errors import RegistryError
from registry_proxy.reference import (
    Digest,
    InvalidDigest,
    InvalidName,
    UnsupportedDigest,
    check_name,
)
from registry_proxy.services import Services

__all__ = [
    "API_HEADERS",
    "authorize",
    "body_stream",
    "parse_digest",
    "repository",
    "services",
    "writable",
]

API_HEADERS = {"Docker-Distribution-Api-Version": "registry/2.0"}


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def repository(request: Request) -> str:
    name = request.path_params["name"]
    try:
        check_name(name)
    except InvalidName:
        raise RegistryError("NAME_INVALID", {"name": name[:300]}) from None
    context.REPOSITORY.set(name)
    return str(name)


def writable(request: Request) -> str:
    """The repository a write names: refused (405) when it is an upstream registry's."""
    name = repository(request)
    if services(request).upstreams.owns(name):
        raise RegistryError(
            "UNSUPPORTED",
            {"name": name[:300]},
            message="this repository is served from an upstream registry: it cannot be changed here",
        )
    return name


def parse_digest(text: str, code: str = "DIGEST_INVALID") -> Digest:
    try:
        return Digest.parse(text)
    except UnsupportedDigest:
        raise RegistryError(
            code, {"digest": text[:300]}, message="unsupported digest algorithm"
        ) from None
    except InvalidDigest:
        raise RegistryError(code, {"digest": text[:300]}, message="invalid digest") from None


def pull(name: str) -> Access:
    return Access("repository", name, frozenset({"pull"}))


def push(name: str) -> Access:
    return Access("repository", name, frozenset({"pull", "push"}))


def delete(name: str) -> Access:
    return Access("repository", name, frozenset({"delete"}))


async def authorize(request: Request, *needed: Access) -> VerifiedToken:
    token = await services(request).access.authorize(request.headers.get("authorization"), needed)
    context.ACCOUNT.set(token.subject)
    return token


async def body_stream(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives, never buffered whole."""
    async for chunk in request.stream():
        if chunk:
            yield chunk
