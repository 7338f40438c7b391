"""A small, registry-agnostic client for the OCI Distribution API with token auth.

`TokenAuth` is an `httpx.Auth` generator flow: it sends the request as is; on a
401 carrying `WWW-Authenticate: Bearer realm=…,service=…,scope=…` it asks the
realm for a token (HTTP Basic with the user's credentials, `service` and one
`scope` parameter per scope) and retries the request once with
`Authorization: Bearer <token>`. Tokens are cached per (realm, service, scope
string) until shortly before they expire. The token request goes out through
the same client as the registry request, so the flow works for `httpx.Client`
and `httpx.AsyncClient` alike.

`RegistryClient` wraps an `httpx.Client` with the few calls tests need: push a
blob or a manifest, read them back, list tags, fetch a token for a scope.
The `*_manifest` builders make small OCI / Docker manifests and indexes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import httpx

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "EMPTY_JSON",
    "MANIFEST_MEDIA_TYPES",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "Descriptor",
    "PushedImage",
    "RegistryClient",
    "RegistryError",
    "TokenAuth",
    "TokenError",
    "bearer_challenge",
    "descriptor",
    "docker_manifest",
    "docker_manifest_list",
    "error_codes",
    "json_bytes",
    "oci_index",
    "oci_manifest",
    "parse_challenge",
    "parse_challenges",
    "parse_scopes",
    "random_bytes",
    "sha256_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
EMPTY_JSON = b"{}"

# Refetch a cached token this many seconds before it expires.
EXPIRY_MARGIN = 5.0
# What the token spec says to assume when the answer carries no `expires_in`.
DEFAULT_EXPIRES_IN = 60


# --- WWW-Authenticate -------------------------------------------------------

_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SPACE = " \t"


class _Scanner:
    """Walks one header value: tokens, quoted strings, `=` and `,`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
            self.pos += 1

    def skip_commas(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE + ",":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        assert self.peek() == '"'
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
            elif char == '"':
                self.pos += 1
                return "".join(out)
            else:
                out.append(char)
                self.pos += 1
        raise ValueError(f"unterminated quoted string in challenge: {self.text!r}")

    def bare_value(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _SPACE + ",":
            self.pos += 1
        return self.text[start : self.pos]

    def next_is_param(self) -> bool:
        """Whether a `name=` (a parameter, not a new scheme) starts here."""
        saved = self.pos
        try:
            if not self.token():
                return False
            self.skip_space()
            return self.peek() == "=" and not self.text.startswith("==", self.pos)
        finally:
            self.pos = saved


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """Every challenge in a `WWW-Authenticate` value, as (scheme, params).

    Parameter names are lower-cased; values are unquoted (a quoted value may
    hold commas, spaces and backslash escapes). A token68 (`Basic abc==`) is
    returned under the key "" . The first occurrence of a parameter wins.
    """
    scanner = _Scanner(header)
    challenges: list[tuple[str, dict[str, str]]] = []
    scanner.skip_commas()
    while not scanner.at_end():
        scheme = scanner.token()
        if not scheme:
            raise ValueError(f"expected an auth scheme at {scanner.pos} in {header!r}")
        params: dict[str, str] = {}
        scanner.skip_space()
        if not scanner.at_end() and scanner.peek() != "," and not scanner.next_is_param():
            # token68: letters, digits and -._~+/ followed by optional '='.
            params[""] = scanner.bare_value()
        while True:
            scanner.skip_commas()
            if scanner.at_end() or not scanner.next_is_param():
                break
            name = scanner.token().lower()
            scanner.skip_space()
            scanner.pos += 1  # the "="
            scanner.skip_space()
            value = scanner.quoted() if scanner.peek() == '"' else scanner.bare_value()
            params.setdefault(name, value)
        challenges.append((scheme, params))
        scanner.skip_commas()
    return challenges


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """The first challenge of a `WWW-Authenticate` value: (scheme, params)."""
    challenges = parse_challenges(header)
    if not challenges:
        raise ValueError("empty WWW-Authenticate header")
    return challenges[0]


def bearer_challenge(response: httpx.Response) -> dict[str, str] | None:
    """The params of a 401's Bearer challenge with a realm, if it has one."""
    if response.status_code != 401:
        return None
    for value in response.headers.get_list("www-authenticate"):
        try:
            challenges = parse_challenges(value)
        except ValueError:
            continue
        for scheme, params in challenges:
            if scheme.lower() == "bearer" and params.get("realm"):
                return params
    return None


def parse_scopes(value: str) -> dict[tuple[str, str], frozenset[str]]:
    """`type[(class)]:name:actions` scopes (space-separated) as {(type, name): actions}.

    The type runs to the first `:`, the actions follow the last one, and the
    name (which may hold a `host:port`) is what lies between; a class is dropped.
    """
    out: dict[tuple[str, str], frozenset[str]] = {}
    for scope in value.split():
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        kind = kind.split("(", 1)[0]
        key = (kind, name)
        out[key] = out.get(key, frozenset()) | frozenset(a for a in actions.split(",") if a)
    return out


# --- Token auth -------------------------------------------------------------


class TokenError(httpx.HTTPError):
    """The token realm refused or gave no token; `response` is its answer."""

    def __init__(self, message: str, response: httpx.Response) -> None:
        super().__init__(message)
        self.response = response


class _TokenRequest(httpx.Request):
    """A request to the token realm; its response body is read inside the flow."""


@dataclass
class _CachedToken:
    token: str
    expires_at: float


def _scope_key(challenge: Mapping[str, str]) -> tuple[str, str, str]:
    return (challenge["realm"], challenge.get("service", ""), challenge.get("scope", ""))


class TokenAuth(httpx.Auth):
    """Docker Registry v2 token authentication as an httpx auth flow.

    A request that already carries `Authorization` is sent untouched (so a
    test can send its own, forged or foreign, token through the same client).
    """

    requires_request_body = True

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        account: bool = False,
    ) -> None:
        self.username = username
        self.password = password
        self.account = account
        self._tokens: dict[tuple[str, str, str], _CachedToken] = {}
        self._lock = threading.Lock()
        self.token_requests = 0

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()

    def cached_token(self, realm: str, service: str, scope: str) -> str | None:
        with self._lock:
            entry = self._tokens.get((realm, service, scope))
        if entry is None or entry.expires_at <= time.monotonic():
            return None
        return entry.token

    def token_request(self, challenge: Mapping[str, str]) -> httpx.Request:
        """The GET to the challenge's realm that asks for its service and scopes."""
        params: list[tuple[str, str | int | float | bool | None]] = []
        if challenge.get("service"):
            params.append(("service", challenge["service"]))
        params.extend(("scope", scope) for scope in challenge.get("scope", "").split())
        if self.account and self.username:
            params.append(("account", self.username))
        headers = {"Accept": "application/json"}
        if self.username is not None:
            userpass = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(userpass).decode()
        return _TokenRequest("GET", challenge["realm"], params=params, headers=headers)

    def remember(self, challenge: Mapping[str, str], response: httpx.Response) -> str:
        """The token of a realm's answer, cached for the challenge's scope string."""
        if response.status_code != 200:
            raise TokenError(
                f"token realm answered {response.status_code}: {response.text[:200]}", response
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise TokenError("token realm answered non-JSON", response) from exc
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError("token realm answered without a token", response)
        expires_in = body.get("expires_in") or DEFAULT_EXPIRES_IN
        expires_at = time.monotonic() + max(float(expires_in) - EXPIRY_MARGIN, 1.0)
        with self._lock:
            self._tokens[_scope_key(challenge)] = _CachedToken(token, expires_at)
            self.token_requests += 1
        return token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "authorization" in request.headers:
            yield request
            return
        response = yield request
        challenge = bearer_challenge(response)
        if challenge is None:
            return
        token = self.cached_token(*_scope_key(challenge))
        if token is None:
            token_response = yield self.token_request(challenge)
            token = self.remember(challenge, token_response)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if self.requires_request_body:
            request.read()
        flow = self.auth_flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            if isinstance(outgoing, _TokenRequest):
                response.read()
            try:
                outgoing = flow.send(response)
            except StopIteration:
                break

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.requires_request_body:
            await request.aread()
        flow = self.auth_flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            if isinstance(outgoing, _TokenRequest):
                await response.aread()
            try:
                outgoing = flow.send(response)
            except StopIteration:
                break


# --- Content ----------------------------------------------------------------


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_bytes(size: int) -> bytes:
    return secrets.token_bytes(size)


def json_bytes(obj: Any) -> bytes:
    """Compact JSON, keys in insertion order (the exact bytes matter, not the form)."""
    return json.dumps(obj, separators=(",", ":")).encode()


Descriptor = dict[str, Any]


def descriptor(
    media_type: str,
    data: bytes,
    *,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
    platform: Mapping[str, str] | None = None,
) -> Descriptor:
    out: Descriptor = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    if artifact_type is not None:
        out["artifactType"] = artifact_type
    if platform is not None:
        out["platform"] = dict(platform)
    if annotations is not None:
        out["annotations"] = dict(annotations)
    return out


def oci_manifest(
    config: Descriptor,
    layers: Sequence[Descriptor] = (),
    *,
    subject: Descriptor | None = None,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    body: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type is not None:
        body["artifactType"] = artifact_type
    body["config"] = config
    body["layers"] = list(layers)
    if subject is not None:
        body["subject"] = subject
    if annotations is not None:
        body["annotations"] = dict(annotations)
    return json_bytes(body)


def oci_index(
    manifests: Sequence[Descriptor],
    *,
    subject: Descriptor | None = None,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    body: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX}
    if artifact_type is not None:
        body["artifactType"] = artifact_type
    body["manifests"] = list(manifests)
    if subject is not None:
        body["subject"] = subject
    if annotations is not None:
        body["annotations"] = dict(annotations)
    return json_bytes(body)


def docker_manifest(config: Descriptor, layers: Sequence[Descriptor]) -> bytes:
    return json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config,
            "layers": list(layers),
        }
    )


def docker_manifest_list(manifests: Sequence[Descriptor]) -> bytes:
    return json_bytes(
        {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": list(manifests)}
    )


def error_codes(response: httpx.Response) -> list[str]:
    """The `code` of every entry of an OCI error body ([] if there is none)."""
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [str(e.get("code")) for e in errors if isinstance(e, dict)]


# --- Client -----------------------------------------------------------------


@dataclass(frozen=True)
class PushedImage:
    """An image pushed by `RegistryClient.push_image`: its manifest and blobs."""

    repo: str
    manifest: bytes
    media_type: str
    digest: str
    config: bytes
    layers: tuple[bytes, ...]

    @property
    def descriptor(self) -> Descriptor:
        return descriptor(self.media_type, self.manifest)

    @property
    def blob_digests(self) -> list[str]:
        return [sha256_digest(b) for b in (self.config, *self.layers)]


class RegistryError(Exception):
    """A registry call did not answer what it should; carries the response."""

    def __init__(self, message: str, response: httpx.Response) -> None:
        super().__init__(
            f"{message}: {response.request.method} {response.request.url} -> "
            f"{response.status_code} {response.text[:300]}"
        )
        self.response = response


def _expect(response: httpx.Response, *statuses: int) -> httpx.Response:
    if response.status_code not in statuses:
        raise RegistryError(f"expected {' or '.join(map(str, statuses))}", response)
    return response


class RegistryClient:
    """Convenience calls over one `httpx.Client` (normally authenticated by `TokenAuth`)."""

    def __init__(
        self,
        url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        if http is None:
            if url is None:
                raise ValueError("give a url or an httpx.Client")
            http = httpx.Client(
                base_url=url,
                auth=TokenAuth(username, password),
                timeout=timeout,
                trust_env=False,
            )
            self._owns_http = True
        else:
            self._owns_http = False
        self.http = http
        self.url = str(http.base_url).rstrip("/")
        self.username = username
        self.password = password

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Plumbing

    def request(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, url, **kwargs)

    def resolve(self, location: str, **params: str) -> httpx.URL:
        """An absolute URL for a (relative or absolute) `Location`, plus extra query params."""
        url = httpx.URL(self.url + "/").join(location)
        return url.copy_merge_params(params) if params else url

    def challenge(self) -> dict[str, str]:
        """The Bearer challenge of an unauthenticated `GET /v2/`."""
        response = self.http.get("/v2/", auth=None)
        challenge = bearer_challenge(response)
        if challenge is None:
            raise RegistryError("no Bearer challenge", response)
        return challenge

    def get_token(
        self,
        scope: str | Iterable[str] = (),
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> str:
        """A fresh token for `scope` (one string, maybe space-separated, or several)."""
        scopes = [scope] if isinstance(scope, str) else list(scope)
        challenge = dict(self.challenge())
        challenge["scope"] = " ".join(s for s in scopes if s)
        user = username if username is not None else self.username
        secret = password if password is not None else self.password
        if user is None and isinstance(self.http.auth, TokenAuth):
            user, secret = self.http.auth.username, self.http.auth.password
        auth = TokenAuth(user, secret)
        request = auth.token_request(challenge)
        response = self.http.send(request, auth=None)
        return auth.remember(challenge, response)

    # Blobs

    def start_upload(self, repo: str, **params: str) -> httpx.Response:
        return self.http.post(
            f"/v2/{repo}/blobs/uploads/", params=params, headers={"Content-Length": "0"}
        )

    def push_blob(self, repo: str, data: bytes) -> str:
        """POST then PUT `data` as one blob; its digest."""
        digest = sha256_digest(data)
        started = _expect(self.start_upload(repo), 202)
        url = self.resolve(started.headers["location"], digest=digest)
        _expect(
            self.http.put(url, content=data, headers={"Content-Type": "application/octet-stream"}),
            201,
        )
        return digest

    def mount_blob(self, repo: str, digest: str, source: str) -> httpx.Response:
        """POST `?mount=&from=` with a token asked for both repositories, as clients do.

        A registry may challenge only for `repo` and then, lacking pull on the
        source in the token, fall back to a plain upload session (202).
        """
        token = self.get_token([f"repository:{repo}:pull,push", f"repository:{source}:pull"])
        return self.http.post(
            f"/v2/{repo}/blobs/uploads/",
            params={"mount": digest, "from": source},
            headers={"Authorization": f"Bearer {token}"},
        )

    def get_blob(self, repo: str, digest: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(f"/v2/{repo}/blobs/{digest}", **kwargs)

    def head_blob(self, repo: str, digest: str) -> httpx.Response:
        return self.http.head(f"/v2/{repo}/blobs/{digest}")

    def delete_blob(self, repo: str, digest: str) -> httpx.Response:
        return self.http.delete(f"/v2/{repo}/blobs/{digest}")

    # Manifests

    def put_manifest(
        self, repo: str, ref: str, body: bytes, media_type: str, **params: Any
    ) -> httpx.Response:
        return self.http.put(
            f"/v2/{repo}/manifests/{ref}",
            content=body,
            headers={"Content-Type": media_type},
            params=params,
        )

    def push_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        """PUT a manifest (201 expected); the digest the registry answered."""
        response = _expect(self.put_manifest(repo, ref, body, media_type), 201)
        return response.headers.get("docker-content-digest") or sha256_digest(body)

    def push_image(
        self,
        repo: str,
        ref: str | None = None,
        *,
        layers: int = 1,
        media_type: str = OCI_MANIFEST,
        layer_size: int = 512,
    ) -> PushedImage:
        """Push a config, `layers` random layers and an OCI or Docker manifest."""
        docker = media_type == DOCKER_MANIFEST
        config = json_bytes(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
                "nonce": secrets.token_hex(8),
            }
        )
        blobs = tuple(random_bytes(layer_size) for _ in range(layers))
        for blob in (config, *blobs):
            self.push_blob(repo, blob)
        config_desc = descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config)
        layer_descs = [descriptor(DOCKER_LAYER if docker else OCI_LAYER, b) for b in blobs]
        if docker:
            manifest = docker_manifest(config_desc, layer_descs)
        elif media_type == OCI_MANIFEST:
            manifest = oci_manifest(config_desc, layer_descs)
        else:
            raise ValueError(f"push_image makes image manifests, not {media_type}")
        digest = self.push_manifest(repo, ref or sha256_digest(manifest), manifest, media_type)
        return PushedImage(repo, manifest, media_type, digest, config, blobs)

    def get_manifest(
        self, repo: str, ref: str, accept: Sequence[str] = MANIFEST_MEDIA_TYPES
    ) -> httpx.Response:
        return self.http.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ", ".join(accept)})

    def head_manifest(
        self, repo: str, ref: str, accept: Sequence[str] = MANIFEST_MEDIA_TYPES
    ) -> httpx.Response:
        return self.http.head(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ", ".join(accept)})

    def delete_manifest(self, repo: str, ref: str) -> httpx.Response:
        return self.http.delete(f"/v2/{repo}/manifests/{ref}")

    # Listings

    def tags(self, repo: str, **params: Any) -> httpx.Response:
        return self.http.get(f"/v2/{repo}/tags/list", params=params)

    def catalog(self, **params: Any) -> httpx.Response:
        return self.http.get("/v2/_catalog", params=params)

    def referrers(self, repo: str, digest: str, **params: Any) -> httpx.Response:
        return self.http.get(f"/v2/{repo}/referrers/{digest}", params=params)

    def follow(self, response: httpx.Response, key: str) -> list[Any]:
        """`key` of a paginated listing, collected across its `Link: rel="next"` pages."""
        items: list[Any] = []
        seen: set[str] = set()
        while True:
            _expect(response, 200)
            items.extend(response.json().get(key) or [])
            link = response.links.get("next", {}).get("url")
            if not link or link in seen:
                return items
            seen.add(link)
            response = self.http.get(self.resolve(link))
