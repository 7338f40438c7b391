"""Keyless CI: ID tokens from a local OIDC issuer (GitHub, GitLab and Kubernetes shapes) log in.

The issuer serves its discovery document and JWKS over HTTPS on 127.0.0.1
with a certificate of its own; the token server trusts it through the
trust's `ca_file`. Every refusal is the protocol's 4xx, never a 500.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from tests.conftest import FakeClock, LeakGuard
from tests.support.oidc import OIDCIssuer, SigningKey
from tests.support.tokenserver import TokenServer
from tests.support.trickle import TricklingServer
from tokenserver.config import Config
from tokenserver.store.audit import AuditStore
from tokenserver.store.db import Database

SERVICE = "registry"
AUDIENCE = "https://registry.example"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
StartClient = Callable[[Config], AbstractContextManager[TestClient]]


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCIssuer]:
    with OIDCIssuer(tmp_path_factory.mktemp("oidc")) as running:
        yield running


@pytest.fixture(scope="module")
def other_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCIssuer]:
    with OIDCIssuer(tmp_path_factory.mktemp("oidc-other"), path="/other") as running:
        yield running


def trusts(issuer: OIDCIssuer) -> list[dict[str, Any]]:
    common = {"issuer": issuer.url, "audience": AUDIENCE, "ca_file": str(issuer.ca_file)}
    return [
        common
        | {
            "name": "gha-team-app",
            "scopes": ["repository:team/app:pull,push"],
            "claims": {"repository": "team/app", "ref": "refs/heads/main"},
        },
        common
        | {
            "name": "gitlab-group",
            "scopes": ["repository:group/*:pull,push"],
            "claims": {"project_path": "group/*", "ref_protected": "true"},
            "max_age": 600,
        },
        common
        | {
            "name": "k8s-builder",
            "scopes": ["repository:ci/*:pull"],
            "claims": {"sub": "system:serviceaccount:ci:builder"},
        },
    ]


@pytest.fixture
def fed_config(make_config: Callable[..., Config], issuer: OIDCIssuer) -> Config:
    return make_config({"federation": trusts(issuer)})


@pytest.fixture
def fed(fed_config: Config, start_client: StartClient) -> Iterator[TestClient]:
    with start_client(fed_config) as client:
        yield client


@pytest.fixture
def sign(issuer: OIDCIssuer, clock: FakeClock, leak_guard: LeakGuard) -> Callable[..., str]:
    """An ID token of one platform's shape, issued now by the server's clock."""

    def make(shape: str = "github_actions", *, key: SigningKey | None = None, **kw: Any) -> str:
        kw.setdefault("issued", clock.now.timestamp())
        if shape == "github_actions":
            kw.setdefault("repository", "team/app")
        claims = getattr(issuer, shape)(kw.pop("audience", AUDIENCE), **kw)
        return leak_guard.add(issuer.sign(claims, key=key))

    return make


def login(client: TestClient, name: str, password: str, *scopes: str, **params: str) -> Any:
    return client.get(
        "/token",
        params={"service": SERVICE, "scope": list(scopes), **params},
        auth=(name, password),
    )


def exchange(client: TestClient, token: str, *scopes: str, **extra: str) -> Any:
    form = {
        "grant_type": EXCHANGE,
        "subject_token": token,
        "subject_token_type": ID_TOKEN,
        "service": SERVICE,
        "scope": " ".join(scopes),
    }
    return client.post("/token", data=form | extra)


def access(response: Any, decode: Callable[[str], dict[str, Any]]) -> dict[str, list[str]]:
    assert response.status_code == 200, response.text
    claims = decode(response.json()["token"])
    return {f"{a['type']}:{a['name']}": a["actions"] for a in claims["access"]}


def token_rows(client: TestClient, database: Database, subject: str) -> list[Any]:
    assert client.app.state.services.audit.flush(5)  # type: ignore[attr-defined]
    return [r for r in AuditStore(database).query(subject=subject) if r.action == "token"]


# -- each platform's shape ---------------------------------------------------------


def test_github_actions_token_logs_in_within_its_trust(
    fed: TestClient,
    sign: Callable[..., str],
    decode_token: Callable[[str], dict[str, Any]],
    database: Database,
) -> None:
    token = sign()
    got = login(
        fed,
        "gha-team-app",
        token,
        "repository:team/app:pull,push,delete",
        "repository:team/other:pull",
        "admin:api:*",
        offline_token="true",
    )
    assert access(got, decode_token) == {"repository:team/app": ["pull", "push"]}
    subject = "gha-team-app:repo:team/app:ref:refs/heads/main"
    assert decode_token(got.json()["token"])["sub"] == subject
    assert "refresh_token" not in got.json()
    # docker sends the same password with every token request: the ID token
    # stays good until it expires.
    assert login(fed, "gha-team-app", token, "repository:team/app:pull").status_code == 200
    # The OAuth2 password grant takes it as well.
    form = {"grant_type": "password", "username": "gha-team-app", "password": token,
            "service": SERVICE, "client_id": "ci", "scope": "repository:team/app:pull",
            "access_type": "offline"}  # fmt: skip
    posted = fed.post("/token", data=form)
    assert posted.status_code == 200, posted.text
    assert posted.json()["scope"] == "repository:team/app:pull"
    assert "refresh_token" not in posted.json()

    rows = token_rows(fed, database, subject)
    assert len(rows) == 3 and {r.kind for r in rows} == {"federated"}
    detail = json.loads(rows[0].detail)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert detail == {
        "trust": "gha-team-app",
        "iss": claims["iss"],
        "sub": claims["sub"],
        "jti": claims["jti"],
        "claim:ref": "refs/heads/main",
        "claim:repository": "team/app",
    }
    assert token not in rows[0].detail and token.split(".")[2] not in rows[0].detail


def test_an_id_token_is_good_until_it_expires_or_passes_max_age(
    fed: TestClient, sign: Callable[..., str], clock: FakeClock
) -> None:
    github = sign(lifetime=300)  # the trust's max_age is 1 h: expiry comes first
    gitlab = sign("gitlab_ci", project_path="group/lib", lifetime=7200)  # max_age 600 s
    for _ in range(3):
        assert login(fed, "gha-team-app", github, "repository:team/app:pull").status_code == 200
        assert login(fed, "gitlab-group", gitlab, "repository:group/lib:pull").status_code == 200
    clock.advance(300 + 61)  # past exp and the leeway
    assert login(fed, "gha-team-app", github, "repository:team/app:pull").status_code == 401
    assert login(fed, "gitlab-group", gitlab, "repository:group/lib:pull").status_code == 200
    clock.advance(600 - 361 + 1)  # past max_age
    assert login(fed, "gitlab-group", gitlab, "repository:group/lib:pull").status_code == 401
    assert exchange(fed, gitlab, "repository:group/lib:pull").status_code == 400


def test_gitlab_and_kubernetes_tokens_log_in(
    fed: TestClient, sign: Callable[..., str], decode_token: Callable[[str], dict[str, Any]]
) -> None:
    gitlab = sign("gitlab_ci", project_path="group/lib")
    got = login(fed, "gitlab-group", gitlab, "repository:group/lib:push", "repository:x/y:pull")
    assert access(got, decode_token) == {"repository:group/lib": ["push"]}
    claims = decode_token(got.json()["token"])
    assert claims["sub"] == "gitlab-group:project_path:group/lib:ref_type:branch:ref:main"

    k8s = sign("kubernetes")
    got = login(fed, "k8s-builder", k8s, "repository:ci/tools:pull,push")
    assert access(got, decode_token) == {"repository:ci/tools": ["pull"]}


def test_token_exchange_answers_like_the_other_grants(
    fed: TestClient, sign: Callable[..., str], decode_token: Callable[[str], dict[str, Any]]
) -> None:
    got = exchange(fed, sign(), "repository:team/app:pull,push", "repository:team/other:pull")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["token_type"] == "Bearer" and body["scope"] == "repository:team/app:pull,push"
    assert "refresh_token" not in body
    assert got.headers["cache-control"] == "no-store"
    assert decode_token(body["access_token"])["sub"].startswith("gha-team-app:repo:team/app:")
    # The `jwt` token type is as good, and the trust is found by the token's issuer.
    gitlab = sign("gitlab_ci", project_path="group/lib")
    got = exchange(
        fed,
        gitlab,
        "repository:group/lib:pull",
        subject_token_type="urn:ietf:params:oauth:token-type:jwt",
    )
    assert got.status_code == 200, got.text
    assert decode_token(got.json()["access_token"])["sub"].startswith("gitlab-group:")


# -- refusals ------------------------------------------------------------------------


def _part(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any], kid: str) -> str:
    return f"{_part({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{_part(claims)}."


def _hmac_signed(claims: dict[str, Any], kid: str, secret: bytes) -> str:
    """The algorithm-confusion forgery: HS256 keyed with what the issuer publishes."""
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_part(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_part(mac)}"


def test_every_wrong_token_is_refused(
    fed: TestClient,
    sign: Callable[..., str],
    issuer: OIDCIssuer,
    other_issuer: OIDCIssuer,
    clock: FakeClock,
    leak_guard: LeakGuard,
) -> None:
    now = clock.now.timestamp()
    key = issuer.keys[-1]
    good = issuer.github_actions(AUDIENCE, repository="team/app", issued=now)
    other_claims = other_issuer.github_actions(AUDIENCE, repository="team/app", issued=now)
    public_jwk = json.dumps(key.jwk()).encode()
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cases = {
        "wrong audience": sign(audience="https://elsewhere.example"),
        "wrong issuer": leak_guard.add(other_issuer.sign(other_claims)),
        "claims of another issuer": leak_guard.add(issuer.sign(good | {"iss": other_issuer.url})),
        "expired": sign(issued=now - 400, lifetime=300),
        "future nbf": leak_guard.add(issuer.sign(good | {"nbf": now + 600})),
        "too old": sign(issued=now - 4000, lifetime=7200),
        "alg none": leak_guard.add(_unsigned(good, key.kid)),
        "HS256 with the JWKS": leak_guard.add(_hmac_signed(good, key.kid, public_jwk)),
        "HS256 with the public key": leak_guard.add(_hmac_signed(good, key.kid, public_pem)),
        "wrong branch": sign(ref="refs/heads/feature"),
        "wrong repository": sign(repository="team/other"),
        "another trust's token": sign("gitlab_ci", project_path="group/lib"),
        "unknown kid": sign(key=SigningKey("RS256")),
        "no sub": leak_guard.add(issuer.sign({k: v for k, v in good.items() if k != "sub"})),
        "sub not a string": leak_guard.add(issuer.sign(good | {"sub": 7})),
        "claim not a string": leak_guard.add(issuer.sign(good | {"ref": ["refs/heads/main"]})),
        "signature of another token": leak_guard.add(
            ".".join([*sign().split(".")[:2], sign(ref="refs/heads/x").split(".")[2]])
        ),
        "a plain password": "hunter2-hunter2",
        "JWT-shaped garbage": "eyJ.eyJ.x",
        "huge": "eyJ" + "A" * 20_000 + ".eyJ.x",
        "non-ASCII": "eyJ\u00e9\u4e2d.eyJ\u00e9.\u00e9",
    }
    for why, token in cases.items():
        got = login(fed, "gha-team-app", token, "repository:team/app:pull")
        assert got.status_code == 401, (why, got.status_code, got.text)
        assert got.headers["www-authenticate"].startswith("Basic "), why
        # An exchange names no trust: another trust's token is that trust's login.
        if why not in ("a plain password", "huge", "non-ASCII", "another trust's token"):
            ex = exchange(fed, token, "repository:team/app:pull")
            assert ex.status_code == 400, (why, ex.text)
            assert ex.json()["error"] == "invalid_request", why
    # The trust was never locked out by the failures: they count against the address only.
    assert login(fed, "gha-team-app", sign(), "repository:team/app:pull").status_code == 200


def test_a_trusts_name_is_nobody_elses(
    fed: TestClient,
    sign: Callable[..., str],
    add_user: Callable[..., str],
    leak_guard: LeakGuard,
) -> None:
    admin = ("root", add_user("root", groups=("admin",)))
    for name in ("gha-team-app", "GHA-Team-App"):
        made = fed.post("/admin/v1/users", json={"name": name, "password": "p" * 16}, auth=admin)
        assert made.status_code == 409, made.text
        ci = fed.post(
            "/admin/v1/ci-tokens",
            json={"name": name, "scopes": ["repository:team/app:pull"], "ttl": 3600},
            auth=admin,
        )
        assert ci.status_code == 409, ci.text
    add_user("alice")
    clash = fed.post(
        "/admin/v1/federation-trusts",
        json={
            "name": "Alice",
            "issuer": "https://127.0.0.1:9/x",
            "audience": AUDIENCE,
            "scopes": ["repository:a/b:pull"],
        },
        auth=admin,
    )
    assert clash.status_code == 409, clash.text
    # An ID token under a user's name is that user's wrong password.
    assert login(fed, "alice", sign(), "repository:alice/x:pull").status_code == 401


def test_a_rotated_key_is_picked_up_at_most_once_a_minute(
    fed: TestClient, sign: Callable[..., str], issuer: OIDCIssuer, clock: FakeClock
) -> None:
    assert login(fed, "gha-team-app", sign(), "repository:team/app:pull").status_code == 200
    fetches = issuer.jwks_fetches
    old = issuer.keys[-1]
    new = issuer.rotate()
    try:
        # Forged and fresh key ids alike: no fetch within the minute.
        for _ in range(20):
            refused = login(fed, "gha-team-app", sign(key=SigningKey()), "repository:team/app:pull")
            assert refused.status_code == 401
        assert (
            login(fed, "gha-team-app", sign(key=new), "repository:team/app:pull").status_code == 401
        )
        assert issuer.jwks_fetches == fetches
        clock.advance(61)
        picked = login(fed, "gha-team-app", sign(key=new), "repository:team/app:pull")
        assert picked.status_code == 200, picked.text
        assert issuer.jwks_fetches == fetches + 1
        # The old key is gone from the set, so its tokens are too.
        assert (
            login(fed, "gha-team-app", sign(key=old), "repository:team/app:pull").status_code == 401
        )
    finally:
        with issuer._lock:
            issuer.keys = [old, new]


def test_an_unreachable_issuer_is_a_503_not_a_wrong_password(
    make_config: Callable[..., Config],
    start_client: StartClient,
    sign: Callable[..., str],
    issuer: OIDCIssuer,
) -> None:
    trust = trusts(issuer)[0] | {"jwks_uri": "https://127.0.0.1:9/jwks"}
    with start_client(make_config({"federation": [trust]})) as client:
        got = login(client, "gha-team-app", sign(), "repository:team/app:pull")
        assert got.status_code == 503, got.text
        ex = exchange(client, sign(), "repository:team/app:pull")
        assert ex.status_code == 503, ex.text


# The README's deadline for a whole fetch of an issuer's keys.
FETCH_DEADLINE = 5.0


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.peers
def test_a_trickling_jwks_is_a_503_in_time_and_passwords_still_log_in(tmp_path: Path) -> None:
    """A `jwks_uri` that sends a byte a second, far within any per-read timeout.

    Against a real server process, with its real worker threads: 45 ID-token
    logins (Basic and token exchange) at once, all needing that key set. They
    get their 503 within a few times the deadline, from one fetch; a password
    login sent meanwhile is answered, and answered while the trickle still goes.
    """
    with TricklingServer(tmp_path / "trickle", interval=1.0, limit=40) as jwks:
        issuer = f"https://127.0.0.1:{jwks.port}"
        trust = {
            "name": "gha-slow",
            "issuer": issuer,
            "audience": AUDIENCE,
            "jwks_uri": jwks.url,
            "ca_file": str(jwks.ca_file),
            "scopes": ["repository:team/app:pull"],
        }
        server = TokenServer(
            tmp_path / "ts", extra={"federation": [trust], "users": {"bcrypt_cost": 4}}
        )
        server.add_user("alice", "alice-pw-1")
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": AUDIENCE,
            "sub": "repo:team/app",
            "iat": now,
            "exp": now + 300,
        }
        key = SigningKey()
        id_token = jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid})

        def id_login(i: int) -> tuple[int, float, str | None]:
            started = time.monotonic()
            with httpx.Client(base_url=server.url, timeout=4 * FETCH_DEADLINE) as client:
                if i % 5 == 0:  # token exchange, which names no trust
                    got = client.post(
                        "/token",
                        data={
                            "grant_type": EXCHANGE,
                            "subject_token": id_token,
                            "subject_token_type": ID_TOKEN,
                            "service": SERVICE,
                            "scope": "repository:team/app:pull",
                        },
                    )
                else:
                    got = client.get(
                        "/token",
                        params={"service": SERVICE, "scope": "repository:team/app:pull"},
                        auth=("gha-slow", id_token),
                    )
            return got.status_code, time.monotonic() - started, got.headers.get("retry-after")

        with server, concurrent.futures.ThreadPoolExecutor(45) as pool:
            logins = [pool.submit(id_login, i) for i in range(45)]
            assert _wait_for(lambda: jwks.trickling > 0, 10), "the keys were never asked for"
            password = httpx.get(
                f"{server.url}/token",
                params={"service": SERVICE, "scope": "repository:alice/app:pull"},
                auth=("alice", "alice-pw-1"),
                timeout=2 * FETCH_DEADLINE,
            )
            assert password.status_code == 200, password.text
            assert jwks.trickling > 0, "answered only once the fetch was over"
            answers = [login.result() for login in logins]
            for status, elapsed, retry_after in answers:
                assert status == 503 and retry_after, (status, retry_after)
                assert elapsed < 3 * FETCH_DEADLINE, elapsed
            # One fetch for all of them, ended by its deadline, not by the trickle.
            assert jwks.connections == 1
            assert _wait_for(lambda: jwks.trickling == 0, 3 * FETCH_DEADLINE)
            # Within the minute the failure stands: at once, and no new fetch.
            assert id_login(1)[0] == 503
            assert jwks.connections == 1


def test_a_ca_file_gone_since_the_trust_was_made_is_a_503(
    fed: TestClient,
    sign: Callable[..., str],
    add_user: Callable[..., str],
    issuer: OIDCIssuer,
    tmp_path: Path,
) -> None:
    admin = ("root", add_user("root", groups=("admin",)))
    ca_file = tmp_path / "issuer-ca.pem"
    shutil.copy(issuer.ca_file, ca_file)
    body = {
        "name": "gha-moved",
        "issuer": issuer.url,
        "audience": AUDIENCE,
        "scopes": ["repository:team/app:pull"],
        "ca_file": str(ca_file),
    }
    assert fed.post("/admin/v1/federation-trusts", json=body, auth=admin).status_code == 201
    ca_file.write_text("moved\n")  # spoilt after it was checked
    got = login(fed, "gha-moved", sign(), "repository:team/app:pull")
    assert got.status_code == 503, got.text
    ca_file.unlink()
    got = login(fed, "gha-moved", sign(), "repository:team/app:pull")
    assert got.status_code == 503, got.text
    shutil.copy(issuer.ca_file, ca_file)
    got = login(fed, "gha-moved", sign(), "repository:team/app:pull")
    assert got.status_code == 200, got.text


def test_trusts_through_the_admin_api_count_at_once(
    fed: TestClient,
    sign: Callable[..., str],
    add_user: Callable[..., str],
    issuer: OIDCIssuer,
    decode_token: Callable[[str], dict[str, Any]],
    database: Database,
) -> None:
    admin = ("root", add_user("root", groups=("admin",)))
    body = {
        "name": "gha-web",
        "issuer": issuer.url,
        "audience": AUDIENCE,
        "scopes": ["repository:team/web:pull,push"],
        "claims": {"repository": "team/web"},
        "ca_file": str(issuer.ca_file),
    }
    token = sign(repository="team/web")
    assert login(fed, "gha-web", token, "repository:team/web:push").status_code == 401
    made = fed.post("/admin/v1/federation-trusts", json=body, auth=admin)
    assert made.status_code == 201, made.text
    listed = fed.get("/admin/v1/federation-trusts", auth=admin).json()
    sources = {t["name"]: t["source"] for t in listed}
    assert sources["gha-web"] == "database" and sources["gha-team-app"] == "config"
    got = login(fed, "gha-web", token, "repository:team/web:push")
    assert access(got, decode_token) == {"repository:team/web": ["push"]}
    assert fed.delete("/admin/v1/federation-trusts/gha-web", auth=admin).status_code == 204
    assert login(fed, "gha-web", token, "repository:team/web:push").status_code == 401
    # A configured trust is the configuration's to change.
    assert fed.delete("/admin/v1/federation-trusts/gha-team-app", auth=admin).status_code == 400
    for bad in (
        body | {"scopes": ["admin:api:*"]},
        body | {"issuer": "http://127.0.0.1:1/"},
        body | {"claims": {"ref": "[unclosed"}},
        body | {"claims": {"ref": "/a{99999999999}/"}},
        body | {"claims": {"ref": "/" + "(" * 500 + "a" + ")" * 500 + "/"}},
        body | {"ca_file": str(issuer.ca_file) + ".missing"},
        body | {"ca_file": __file__},
        body | {"max_age": 10},
        body | {"name": "a b"},
        body | {"audience": ""},
    ):
        refused = fed.post("/admin/v1/federation-trusts", json=bad, auth=admin)
        assert refused.status_code == 400, (bad, refused.text)
    actions = {r.action for r in AuditStore(database).query(subject="root")}
    assert {"trust.create", "trust.delete"} <= actions


def test_malformed_exchanges_are_oauth_errors(fed: TestClient, sign: Callable[..., str]) -> None:
    token = sign()
    for form, error in (
        ({"grant_type": EXCHANGE, "service": SERVICE, "subject_token_type": ID_TOKEN},
         "invalid_request"),
        ({"grant_type": EXCHANGE, "service": SERVICE, "subject_token": token}, "invalid_request"),
        ({"grant_type": EXCHANGE, "service": SERVICE, "subject_token": token,
          "subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "invalid_request"),
        ({"grant_type": EXCHANGE, "service": SERVICE, "subject_token": token,
          "subject_token_type": ID_TOKEN, "actor_token": token}, "invalid_request"),
        ({"grant_type": EXCHANGE, "service": "other", "subject_token": token,
          "subject_token_type": ID_TOKEN}, "invalid_request"),
        ({"grant_type": EXCHANGE + "x", "service": SERVICE}, "unsupported_grant_type"),
    ):  # fmt: skip
        got = fed.post("/token", data=form)
        assert got.status_code == 400, (form, got.text)
        assert got.json()["error"] == error, form
