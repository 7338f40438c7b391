"""OCI Distribution API conformance suite with token auth, run against every target.

Each test that takes the `target` fixture runs once per name in `TARGETS`.
A target is a registry started per test module behind one token server per
session (users `admin`, in group `admin`, and `alice`, in no group: the
default policy lets a user pull/push/delete `<own name>/*` and an admin do
anything).

Adding a target (e.g. our own registry_proxy):

1. Write a context manager `start(tokens: TokenServer, workdir: Path)` that
   starts the registry trusting `tokens` (realm `tokens.realm`, service
   `tokens.service`, issuer `tokens.issuer`, bundle `tokens.cert_bundle`),
   yields its base URL ("http://127.0.0.1:PORT") once it answers, and stops
   it (by PID) on exit.
2. Register it in `KINDS` with the features it has (see `FEATURES`).
3. Append its name to `TARGETS`.

Tests that need a feature carry `@pytest.mark.requires("feature", ...)` (or
a module `pytestmark`); for a target without every required feature the test
is deselected at collection (never skipped).
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.peers import GoRegistry
from tests.support.registry_client import RegistryClient, TokenAuth
from tests.support.registry_proxy import RegistryProxy
from tests.support.swift import Swift
from tests.support.tokenserver import TokenServer

HERE = Path(__file__).resolve().parent

# Optional parts of the spec, and points where a registry may deviate from it.
FEATURES = {
    # Optional API parts.
    "referrers": "GET /v2/NAME/referrers/DIGEST (distribution-spec 1.1)",
    "oci-subject-header": "a manifest PUT with `subject` answers `OCI-Subject`",
    "monolithic-post": "POST /blobs/uploads/?digest= with the body answers 201",
    "manifest-tag-param": "PUT /manifests/DIGEST?tag=A&tag=B tags it too (OCI-Tag)",
    "tag-delete": "DELETE /manifests/TAG answers 202 (may be refused with 400/405)",
    # Spec requirements the Go registry 2.8 does not meet.
    "strict-chunk-order": "a chunk out of order (PATCH or closing PUT) answers 416",
    "strict-upload-unknown": "an upload id never issued answers 404 BLOB_UPLOAD_UNKNOWN",
    "strict-manifest-digest-path": "GET/HEAD of a manifest by a malformed digest is 400/404",
    "strict-manifest-reference": "GET of a manifest by what is neither tag nor digest is "
    "404 MANIFEST_UNKNOWN (the Go registry: a plain-text 404)",
    "strict-manifest-digest-put": "PUT of a manifest to a malformed digest is 400 DIGEST_INVALID "
    "(the Go registry: 500)",
    "strict-manifest-size": "a manifest over 4 MiB answers 413",
    "strict-name-invalid": "a name outside the grammar or over 255 chars is 400 NAME_INVALID",
    "strict-tags-order": "tags list in lexical (or ASCIIbetical) order",
    "strict-tags-pagination": "tags list honours n, last, n=0 and sends Link rel=next",
    "strict-catalog-order": "catalog in lexical order also across nested repositories",
    "strict-empty-tags": "a repository whose tags are all gone lists `tags: []`, not null",
}

USERS: dict[str, tuple[str, ...]] = {"admin": ("admin",), "alice": ()}

# Per target, how many of its tests collection deselected for a feature it lacks.
_DESELECTED = pytest.StashKey[Counter[str]]()


@dataclass(frozen=True)
class TargetKind:
    features: frozenset[str]
    start: Callable[..., AbstractContextManager[str]]
    # Started on the session's Swift (passed as `swift=`): a real peer, so end-to-end.
    on_swift: bool = False


@contextmanager
def _start_go_registry(tokens: TokenServer, workdir: Path) -> Iterator[str]:
    with GoRegistry(workdir, token=tokens.registry_auth()) as registry:
        yield registry.url


@contextmanager
def _start_registry_proxy(
    tokens: TokenServer, workdir: Path, swift: Swift | None = None
) -> Iterator[str]:
    s3 = swift.s3_config(swift.new_bucket("conformance")) if swift is not None else None
    with RegistryProxy(workdir, tokens.registry_auth(), s3=s3) as registry:
        yield registry.url
    # Whatever the suite sent, nothing may have crashed a request handler.
    crashes = [line for line in registry.log_text().splitlines() if '"level": "error"' in line]
    assert not crashes, "\n".join(crashes[:5])


# Repositories are ordered component-wise by design (a path separator sorts
# before every other character), as the Go registry walks them.
PROXY_FEATURES = frozenset(FEATURES) - {"strict-catalog-order"}

KINDS: dict[str, TargetKind] = {
    "go-registry": TargetKind(frozenset(), _start_go_registry),
    "registry-proxy": TargetKind(PROXY_FEATURES, _start_registry_proxy),
    "registry-proxy-s3": TargetKind(PROXY_FEATURES, _start_registry_proxy, on_swift=True),
}

TARGETS = ["go-registry", "registry-proxy", "registry-proxy-s3"]
END_TO_END = {name for name, kind in KINDS.items() if kind.on_swift} | {"go-registry"}


@dataclass
class Target:
    """A running registry under test.

    `client(user)` is an `httpx.Client` on the registry with `TokenAuth` for
    that user (one per user and module, so tokens are cached across tests);
    `raw()` has no auth at all; `registry(user)` wraps `client(user)` in a
    `RegistryClient`; `token(user, *scopes)` fetches a token from the realm.
    """

    name: str
    url: str
    tokens: TokenServer
    features: frozenset[str]
    passwords: dict[str, str]
    _clients: dict[str | None, httpx.Client] = field(default_factory=dict)

    def _new_client(self, auth: httpx.Auth | None) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=auth, timeout=15.0, trust_env=False)

    def client(self, user: str) -> httpx.Client:
        if user not in self._clients:
            self._clients[user] = self._new_client(TokenAuth(user, self.passwords[user]))
        return self._clients[user]

    def raw(self) -> httpx.Client:
        if None not in self._clients:
            self._clients[None] = self._new_client(None)
        return self._clients[None]

    def registry(self, user: str) -> RegistryClient:
        return RegistryClient(http=self.client(user), username=user, password=self.passwords[user])

    def token(self, user: str, *scopes: str) -> str:
        return self.registry(user).get_token(scopes)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(*features): run only against targets with every named feature"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames and Path(metafunc.definition.path).is_relative_to(HERE):
        # The Go registry and Swift are real peers: those runs are end-to-end tests.
        params = [
            pytest.param(name, marks=pytest.mark.e2e) if name in END_TO_END else name
            for name in TARGETS
        ]
        metafunc.parametrize("target", params, indirect=True, scope="module")


def _required(item: pytest.Item) -> set[str]:
    return {f for mark in item.iter_markers("requires") for f in mark.args}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("target") if callspec is not None else None
        if name in KINDS and Path(item.path).is_relative_to(HERE):
            unknown = _required(item) - FEATURES.keys()
            assert not unknown, f"{item.nodeid}: unknown features {sorted(unknown)}"
            if not _required(item) <= KINDS[name].features:
                drop.append(item)
                continue
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    config.stash[_DESELECTED] = Counter(item.callspec.params["target"] for item in drop)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    # pytest's own tally says only "N deselected": say which of them are this
    # suite's by design, so any others (-m, -k) still stand out.
    dropped = config.stash.get(_DESELECTED, Counter())
    if dropped:
        per_target = ", ".join(f"{name} {count}" for name, count in sorted(dropped.items()))
        terminalreporter.write_line(
            f"conformance: {dropped.total()} deselected on purpose, tests of optional API "
            f"parts or spec points their target lacks ({per_target}; "
            "FEATURES in tests/conformance/conftest.py)"
        )


@pytest.fixture(scope="session")
def conformance_tokens(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TokenServer, dict[str, str]]]:
    """One token server for the whole run, with the suite's users."""
    passwords = {user: f"{user}-{secrets.token_urlsafe(12)}" for user in USERS}
    with TokenServer(tmp_path_factory.mktemp("conformance-tokens")) as tokens:
        for user, groups in USERS.items():
            tokens.add_user(user, passwords[user], *groups)
        yield tokens, passwords


@pytest.fixture(scope="module")
def target(
    request: pytest.FixtureRequest,
    conformance_tokens: tuple[TokenServer, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Target]:
    name: str = request.param
    kind = KINDS[name]
    tokens, passwords = conformance_tokens
    extra = {"swift": request.getfixturevalue("swift")} if kind.on_swift else {}
    with kind.start(tokens, tmp_path_factory.mktemp(name), **extra) as url:
        running = Target(name, url.rstrip("/"), tokens, kind.features, passwords)
        try:
            yield running
        finally:
            running.close()


@pytest.fixture
def alice(target: Target) -> RegistryClient:
    return target.registry("alice")


@pytest.fixture
def admin(target: Target) -> RegistryClient:
    return target.registry("admin")


@pytest.fixture
def raw(target: Target) -> httpx.Client:
    return target.raw()


_repo_counter = itertools.count(1)


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A fresh repository in alice's namespace, named after the test."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.originalname.lower().removeprefix("test_"))
    return f"alice/{slug.strip('-')[:60]}-{next(_repo_counter)}"
