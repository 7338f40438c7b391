"""The registry's repositories and tags, read through its own API as the signed-in admin.

The page asks this server for a token for its admin (filtered and audited
like any other) and reads `_catalog`, each repository's tags and each tag's
manifest from `ui.registry_url`. What a registry answers is anybody's: every
answer is read up to a size, checked before use, and parsed off the event
loop; a tag is looked at with HEAD, and only a manifest small enough is read
to add up an image's size, once per digest. Repositories come a page at a
time, and a page that takes too long shows what it has.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from tokenserver.refusals import Refused
from tokenserver.routes.common import services
from tokenserver.routes.ui.common import base_context
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import SignedIn, admin_signed_in
from tokenserver.token_requests import TokenRequest

__all__ = ["router"]

router = APIRouter()

PAGE_SIZE = 20
MAX_TAGS = 50
# Answers larger than these are not read: a list past its page, a manifest past its size.
MAX_LIST_BYTES = 256 * 1024
MAX_MANIFEST_BYTES = 256 * 1024
PARALLEL = 8
PAGE_DEADLINE = 10.0
REQUEST_TIMEOUT = 5.0
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{1,256}")
_MEDIA_TYPE = re.compile(r"[\w.+-]{1,127}/[\w.+-]{1,127}")


class _Unreadable(Exception):
    """The registry answered something this page does not take."""


@dataclass
class _Tag:
    name: str
    digest: str = ""
    media_type: str = ""
    size: int | None = None


@dataclass
class _Repository:
    name: str
    tags: list[_Tag] = field(default_factory=list)
    more_tags: bool = False


def is_name(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 255 and _NAME.fullmatch(value) is not None


def _listed(raw: bytes, key: str, valid: Any) -> list[str]:
    """The strings under `key` of a JSON list answer, each one `valid` says it may be."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise _Unreadable(f"{key}: not JSON") from None
    items = doc.get(key) if isinstance(doc, dict) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise _Unreadable(f"{key}: not a list")
    return [item for item in items if valid(item)]


def _size(raw: bytes) -> int | None:
    """What pulling it costs: the manifest, its config and layers (or its child manifests)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    parts: list[object] = [doc.get("config")]
    for key in ("layers", "manifests"):
        value = doc.get(key)
        if isinstance(value, list):
            parts.extend(value)
    total = len(raw)
    for part in parts:
        size = part.get("size") if isinstance(part, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            total += size
    return total


async def _read(client: httpx.AsyncClient, url: str, limit: int, **options: Any) -> bytes | None:
    """The body of a 2xx answer if it is at most `limit` bytes; None for any other answer."""
    async with client.stream("GET", url, **options) as answer:
        if not answer.is_success:
            return None
        body = bytearray()
        async for chunk in answer.aiter_bytes():
            body += chunk
            if len(body) > limit:
                return None
        return bytes(body)


async def _token(request: Request, who: SignedIn, scopes: list[str]) -> str:
    """A token for the signed-in admin, as the token endpoint would grant it."""
    grants = services(request).grants
    service = sorted(grants.services)[0]
    ip = request.client.host if request.client else None
    token_request = TokenRequest(service, scopes, "session", client_ip=ip)
    return (await grants.grant(token_request, identity=who.identity)).token.token


class _Reader:
    def __init__(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        self._client = client
        self._auth = auth
        self._slots = asyncio.Semaphore(PARALLEL)
        self._sizes: dict[tuple[str, str], asyncio.Task[int | None]] = {}

    async def repository(self, repository: _Repository) -> None:
        name = quote(repository.name)
        async with self._slots:
            raw = await _read(
                self._client,
                f"/v2/{name}/tags/list",
                MAX_LIST_BYTES,
                params={"n": MAX_TAGS + 1},
                headers=self._auth,
            )
        if raw is None:
            return
        valid = lambda tag: isinstance(tag, str) and _TAG.fullmatch(tag) is not None  # noqa: E731
        tags = await asyncio.to_thread(_listed, raw, "tags", valid)
        repository.more_tags = len(tags) > MAX_TAGS
        repository.tags = [_Tag(tag) for tag in sorted(tags)[:MAX_TAGS]]
        await asyncio.gather(*(self._tag(repository.name, tag) for tag in repository.tags))

    async def _tag(self, repository: str, tag: _Tag) -> None:
        async with self._slots:
            answer = await self._client.head(
                f"/v2/{quote(repository)}/manifests/{quote(tag.name)}", headers=self._auth
            )
        if not answer.is_success:
            return
        digest = answer.headers.get("docker-content-digest", "")
        media_type = answer.headers.get("content-type", "").split(";")[0].strip()
        tag.digest = digest if _DIGEST.fullmatch(digest) else ""
        tag.media_type = media_type if _MEDIA_TYPE.fullmatch(media_type) else ""
        length = answer.headers.get("content-length", "")
        if not tag.digest or not length.isascii() or not length.isdigit():
            return
        if len(length) > 12 or int(length) > MAX_MANIFEST_BYTES:
            return  # too large to read for its size
        key = (repository, tag.digest)
        if key not in self._sizes:
            # Fifty tags on one manifest read it once.
            self._sizes[key] = asyncio.ensure_future(self._manifest_size(repository, tag.digest))
        tag.size = await self._sizes[key]

    async def _manifest_size(self, repository: str, digest: str) -> int | None:
        async with self._slots:
            raw = await _read(
                self._client,
                f"/v2/{quote(repository)}/manifests/{digest}",
                MAX_MANIFEST_BYTES,
                headers=self._auth,
            )
        return None if raw is None else await asyncio.to_thread(_size, raw)


async def _page(
    request: Request, who: SignedIn, base: str, last: str | None
) -> tuple[list[_Repository], str | None]:
    """This page's repositories (filled in as far as the deadline allowed) and the next `last`."""
    async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT) as client:
        catalog_token = await _token(request, who, ["registry:catalog:*"])
        raw = await _read(
            client,
            "/v2/_catalog",
            MAX_LIST_BYTES,
            params={"n": PAGE_SIZE + 1, **({"last": last} if last else {})},
            headers={"Authorization": f"Bearer {catalog_token}"},
        )
        if raw is None:
            raise _Unreadable("the catalog")
        names = await asyncio.to_thread(_listed, raw, "repositories", is_name)
        following = names[PAGE_SIZE - 1] if len(names) > PAGE_SIZE else None
        repositories = [_Repository(name) for name in names[:PAGE_SIZE]]
        if not repositories:
            return [], None
        token = await _token(request, who, [f"repository:{r.name}:pull" for r in repositories])
        reader = _Reader(client, {"Authorization": f"Bearer {token}", "Accept": MANIFEST_TYPES})
        try:
            async with asyncio.timeout(PAGE_DEADLINE):
                await asyncio.gather(*(reader.repository(r) for r in repositories))
        except TimeoutError:
            raise _Partial(repositories, following) from None
        return repositories, following


class _Partial(Exception):
    def __init__(self, repositories: list[_Repository], following: str | None) -> None:
        super().__init__("the page's deadline passed")
        self.repositories = repositories
        self.following = following


@router.get("/repositories", include_in_schema=False)
async def repositories(request: Request) -> Response:
    who = await admin_signed_in(request)
    base = services(request).config.ui.registry_url
    context = base_context(request, who)
    last = request.query_params.get("last") or None
    if last is not None and not is_name(last):
        context["error"] = "That is not a repository name to list from."
        return page(
            request, "repositories.html", 400, registry_url=base, repositories=[], following=None,
            **context,
        )  # fmt: skip
    found: list[_Repository] = []
    following: str | None = None
    if base:
        try:
            found, following = await _page(request, who, base, last)
        except _Partial as partial:
            found, following = partial.repositories, partial.following
            context["error"] = f"The registry at {base} answered too slowly; this is what came."
        except (httpx.HTTPError, _Unreadable, Refused) as exc:
            context["error"] = f"The registry at {base} could not be read: {type(exc).__name__}"
    return page(
        request, "repositories.html", registry_url=base, repositories=found, following=following,
        **context,
    )  # fmt: skip
