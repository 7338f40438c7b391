"""Asking the OpenID provider about its people again (`sso.recheck`): a person removed at the
provider loses their personal tokens, refresh tokens and web sessions; a person it still has
gets their groups afresh; a person it cannot be asked about is refused once its word lapses.

Against npm's oidc-provider (which rotates its refresh tokens at every use and refuses those
of a person it no longer has, as real providers do) and, for answers no honest provider
gives, the fake provider of the sign-in tests.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import FakeClock, LeakGuard
from tests.support.fake_oidc_provider import FakeProvider
from tests.support.oidc import forged_none
from tests.support.oidc_provider import OIDCProvider
from tokenserver import cli
from tokenserver.audit import Actor
from tokenserver.config import Config
from tokenserver.services import Services, rechecker
from tokenserver.sso.recheck import RECHECK_ACTOR, RecheckReport

CALLBACK = "http://testserver/ui/login/sso/callback"
SERVICE = "registry"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
Start = Callable[[Config], AbstractContextManager[TestClient]]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, real_peer: None) -> Iterator[OIDCProvider]:
    with OIDCProvider(tmp_path_factory.mktemp("op"), redirect_uri=CALLBACK) as op:
        yield op


@pytest.fixture
def sso_config(provider: OIDCProvider, make_config: Callable[..., Config]) -> Config:
    provider.set_person("alice", ["team-a", "ops"])
    provider.set_person("bob", ["team-b"])
    return make_config({"sso": provider.sso_config(admin_groups=["ops"], recheck="1m")})


@pytest.fixture
def app(sso_config: Config, start_client: Start) -> Iterator[TestClient]:
    with start_client(sso_config) as client:
        yield client


def _services(app: TestClient) -> Services:
    svc: Services = app.app.state.services  # type: ignore[attr-defined]
    return svc


def _sign_in(app: TestClient, provider: OIDCProvider, login: str) -> TestClient:
    """A browser signed in through the provider as `login`."""
    browser = TestClient(app.app, follow_redirects=False)
    started = browser.get("/ui/login/sso")
    assert started.status_code == 303, started.text
    done = browser.get(provider.sign_in(started.headers["location"], login))
    assert done.status_code == 200 and "ts_session" in browser.cookies, done.text
    return browser


def _recheck(app: TestClient) -> RecheckReport:
    """A pass over everyone not vouched for since it began (a second later, on the test's
    clock, than whatever came before)."""
    svc = _services(app)
    svc.clock.advance(1)  # type: ignore[attr-defined]  # the tests' FakeClock
    recheck = rechecker(svc)
    assert recheck is not None
    return asyncio.run(recheck.run(Actor("root", "cli", "local"), everyone=True))


def _row(app: TestClient, name: str) -> Any:
    with _services(app).database.engine.connect() as conn:
        return conn.execute(
            text("SELECT sso_refresh, sso_checked_at, sso_recheck_until FROM users WHERE name=:n"),
            {"n": name},
        ).one()


def _personal_token(app: TestClient, owner: str, leak_guard: LeakGuard) -> str:
    _info, secret = _services(app).accounts.create_personal_token(
        Actor("root", "cli", "local"), owner, "laptop", [f"repository:{owner}/*:pull,push"], 86400
    )
    return leak_guard.add(secret)


def _pull(app: TestClient, owner: str, secret: str) -> int:
    answer = app.get(
        "/token",
        params={"service": SERVICE, "scope": f"repository:{owner}/app:pull"},
        auth=(owner, secret),
    )
    return answer.status_code


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def _device_refresh_token(app: TestClient, browser: TestClient, leak_guard: LeakGuard) -> str:
    """A refresh token of the browser's person, through the device flow they approve."""
    client = "docker-credential-tokenserver"
    codes = app.post("/device/code", data={"client_id": client}).json()
    leak_guard.add(codes["device_code"])
    path = f"/ui/device?user_code={codes['user_code']}"
    shown = browser.get(path)
    assert shown.status_code == 200, shown.text
    decided = browser.post(
        "/ui/device",
        data={"user_code": codes["user_code"], "decision": "approve", "csrf": _csrf(shown.text)},
    )
    assert decided.status_code == 200, decided.text
    granted = app.post(
        "/token",
        data={"grant_type": DEVICE_GRANT, "device_code": codes["device_code"], "client_id": client},
    )
    assert granted.status_code == 200, granted.text
    return leak_guard.add(granted.json()["refresh_token"])


def _refresh(app: TestClient, refresh_token: str) -> int:
    answer = app.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "service": SERVICE,
            "client_id": "docker",
        },
    )
    return answer.status_code


def _trail(app: TestClient) -> list[tuple[str, str, str]]:
    svc = _services(app)
    svc.audit.flush(2.0)
    rows = svc.audit_reader.query(action="sso.recheck", limit=100)
    return [(r.subject, r.target, r.outcome) for r in rows]


def test_a_person_removed_at_the_provider_loses_everything_they_hold(
    app: TestClient, provider: OIDCProvider, leak_guard: LeakGuard
) -> None:
    browser = _sign_in(app, provider, "alice")
    sealed, checked, _lease = _row(app, "alice")
    assert sealed and checked is not None  # the provider's refresh token, kept sealed
    secret = _personal_token(app, "alice", leak_guard)
    refresh_token = _device_refresh_token(app, browser, leak_guard)
    assert _pull(app, "alice", secret) == 200 and _refresh(app, refresh_token) == 200

    # Still there, groups changed at the provider: read afresh without her.
    provider.set_person("alice", ["team-c"])
    assert _recheck(app) == RecheckReport(rechecked=1)
    assert _services(app).accounts.get_user("alice").groups == ("team-c",)
    # No longer an admin there: the admin's web session she had is ended.
    ended = browser.get("/ui/users")
    assert ended.status_code == 303 and ended.headers["location"].startswith("/ui/login")
    browser = _sign_in(app, provider, "alice")
    assert _pull(app, "alice", secret) == 200 and _refresh(app, refresh_token) == 200

    # Gone from the provider: at the next recheck everything of hers ends.
    provider.remove_person("alice")
    assert _recheck(app) == RecheckReport(ended=1)
    assert _pull(app, "alice", secret) == 401
    assert _refresh(app, refresh_token) == 400
    assert browser.get("/ui/me").status_code == 303
    assert _row(app, "alice") == (None, None, None)
    assert ("root", "alice", "bad_credentials") in _trail(app)
    # Nothing left to ask about her; nor does her account sign in through anyone else.
    assert _recheck(app) == RecheckReport()

    # Back at the provider, she signs in to the same account; what was ended stays ended.
    provider.set_person("alice", ["team-a"])
    _sign_in(app, provider, "alice")
    assert _services(app).accounts.get_user("alice").groups == ("team-a",)
    assert _pull(app, "alice", secret) == 401 and _refresh(app, refresh_token) == 400


def test_a_person_the_provider_cannot_be_asked_about_lapses_until_they_sign_in_again(
    app: TestClient, provider: OIDCProvider, clock: FakeClock, leak_guard: LeakGuard
) -> None:
    _sign_in(app, provider, "bob")
    secret = _personal_token(app, "bob", leak_guard)
    with _services(app).database.engine.begin() as conn:  # as if it gave no refresh token
        conn.execute(text("UPDATE users SET sso_refresh = NULL WHERE name = 'bob'"))
    clock.advance(58)
    assert _recheck(app) == RecheckReport()  # nothing to ask it with
    assert _pull(app, "bob", secret) == 200
    clock.advance(3)  # more than `recheck` (1m) since the provider vouched for him
    assert _pull(app, "bob", secret) == 401
    # Refused, not revoked: his next sign-in through the provider brings it back.
    _sign_in(app, provider, "bob")
    assert _pull(app, "bob", secret) == 200
    assert _services(app).accounts.list_personal_tokens("bob")[0].revoked_at is None


def test_instances_racing_ask_once_and_follow_the_rotated_refresh_token(
    sso_config: Config, start_client: Start, provider: OIDCProvider, clock: FakeClock
) -> None:
    with start_client(sso_config) as one, start_client(sso_config) as two:
        _sign_in(one, provider, "alice")
        checkers = [rechecker(_services(one)), rechecker(_services(two))]

        async def race() -> list[RecheckReport]:
            actor = Actor("root", "cli", "local")
            runs = [c.run(actor, everyone=True) for c in checkers if c for _ in range(3)]
            return await asyncio.gather(*runs)

        clock.advance(1)
        reports = asyncio.run(race())
        # One of six asked; had two used the same refresh token, the provider (which
        # rotates at every use) would have taken it for theft and refused the person.
        assert sum(r.rechecked for r in reports) == 1
        assert sum(r.ended + r.unavailable for r in reports) == 0
        for _ in range(3):  # each time with the token it rotated to the last time
            assert _recheck(two) == RecheckReport(rechecked=1)
        assert _row(one, "alice")[2] is None  # no lease left behind


def test_the_app_rechecks_by_itself_every_quarter_of_recheck(
    app: TestClient, provider: OIDCProvider, clock: FakeClock, leak_guard: LeakGuard
) -> None:
    _sign_in(app, provider, "bob")
    secret = _personal_token(app, "bob", leak_guard)
    provider.remove_person("bob")
    clock.advance(31)  # due: vouched for more than recheck/2 ago
    deadline = time.monotonic() + 40  # a pass every 15 s (recheck/4)
    while _pull(app, "bob", secret) == 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert _pull(app, "bob", secret) == 401
    assert (RECHECK_ACTOR.subject, "bob", "bad_credentials") in _trail(app)


def test_the_cli_rechecks_everyone_at_once(
    app: TestClient,
    provider: OIDCProvider,
    config_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _sign_in(app, provider, "alice")
    _sign_in(app, provider, "bob")
    provider.remove_person("bob")
    assert cli.main(["sso", "recheck", "--all", "--json", "--config", str(config_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"rechecked": 1, "ended": 1, "unavailable": 0}
    assert cli.main(["sso", "recheck", "--config", str(config_path)]) == 0
    assert "rechecked 0, ended 0" in capsys.readouterr().out  # nobody due yet


def test_the_cli_says_when_no_provider_is_configured(
    config: Config, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sso", "recheck", "--config", str(config_path)]) != 0
    assert "no OpenID provider" in capsys.readouterr().err


# -- answers no honest provider gives ---------------------------------------------------------


def _fake_sign_in(app: TestClient, fake: FakeProvider, refresh_token: str) -> None:
    browser = TestClient(app.app, follow_redirects=False)
    location = browser.get("/ui/login/sso").headers["location"]
    sent = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    body = {"id_token": fake.sign(fake.id_token(sent["nonce"])), "refresh_token": refresh_token}
    fake.answer = lambda _nonce: (200, json.dumps(body).encode(), 0.0)
    callback = browser.get("/ui/login/sso/callback", params={"code": "c", "state": sent["state"]})
    assert callback.status_code == 200, callback.text


def _json(status: int, body: dict[str, Any]) -> Callable[[FakeProvider], tuple[int, bytes, float]]:
    return lambda _fake: (status, json.dumps(body).encode(), 0.0)


def _refresh_claims(fake: FakeProvider, **change: Any) -> dict[str, Any]:
    """An ID token's claims as a provider answers them to a refresh: no nonce."""
    claims = {k: v for k, v in fake.id_token("").items() if k != "nonce"}
    return {k: v for k, v in (claims | change).items() if v is not None}


def _refreshed(**change: Any) -> Callable[[FakeProvider], tuple[int, bytes, float]]:
    def answer(fake: FakeProvider) -> tuple[int, bytes, float]:
        token = fake.sign(_refresh_claims(fake, **change))
        return 200, json.dumps({"id_token": token, "refresh_token": "rt-next"}).encode(), 0.0

    return answer


# What the provider answers the refresh; what becomes of the person; their groups after.
ANSWERS: dict[str, tuple[Callable[[FakeProvider], tuple[int, bytes, float]], str, Any]] = {
    "refused: invalid_grant": (_json(400, {"error": "invalid_grant"}), "ended", None),
    "refused this client": (
        _json(401, {"error": "invalid_client"}),
        "unavailable",
        ("admin", "ops"),
    ),
    "unauthorized_client": (
        _json(400, {"error": "unauthorized_client"}),
        "unavailable",
        ("admin", "ops"),
    ),
    "a 400 of no JSON": (lambda _f: (400, b"<html>", 0.0), "unavailable", ("admin", "ops")),
    "a 500": (lambda _f: (500, b"", 0.0), "unavailable", ("admin", "ops")),
    "a 429": (_json(429, {"error": "slow_down"}), "unavailable", ("admin", "ops")),
    "huge": (lambda _f: (200, b"{" + b" " * 400_000 + b"}", 0.0), "unavailable", ("admin", "ops")),
    "not JSON": (lambda _f: (200, b"\xff\xfe\x00", 0.0), "unavailable", ("admin", "ops")),
    "a JSON array": (lambda _f: (200, b"[1, 2]", 0.0), "unavailable", ("admin", "ops")),
    "no ID token": (_json(200, {"refresh_token": "rt-next"}), "rechecked", ("admin", "ops")),
    "fewer groups": (_refreshed(groups=["dev"]), "rechecked", ("dev",)),
    "another subject": (_refreshed(sub="fake-2"), "ended", None),
    "a foreign issuer": (_refreshed(iss="https://evil.example"), "ended", None),
    "alg none": (
        lambda f: (200, json.dumps({"id_token": forged_none(_refresh_claims(f))}).encode(), 0.0),
        "ended",
        None,
    ),
    "an ID token of no subject": (_refreshed(sub=None), "ended", None),
}


@pytest.mark.parametrize("what", list(ANSWERS))
def test_what_the_provider_answers_a_refresh_decides_only_what_it_can(
    fake_app: TestClient,
    fake: FakeProvider,
    what: str,
    leak_guard: LeakGuard,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refresh_token = leak_guard.add("rt-first-" + "x" * 20)
    _fake_sign_in(fake_app, fake, refresh_token)
    secret = _personal_token(fake_app, "faker", leak_guard)
    answer, fate, groups = ANSWERS[what]
    fake.answer = lambda _nonce: answer(fake)
    report = _recheck(fake_app)
    assert dataclass_fields(report) == {fate: 1}, (what, report)
    if fate == "ended":
        assert _pull(fake_app, "faker", secret) == 401
        assert _row(fake_app, "faker")[0] is None
    else:
        # An answer it cannot use is the provider's trouble, not the person's.
        assert _pull(fake_app, "faker", secret) == 200
        assert _services(fake_app).accounts.get_user("faker").groups == groups
        assert _row(fake_app, "faker")[2] is None  # the lease is given back
    logged = "\n".join(r.getMessage() + repr(vars(r)) for r in caplog.records)
    assert not leak_guard.found_in(logged)
    assert "rt-next" not in logged


def dataclass_fields(report: RecheckReport) -> dict[str, int]:
    return {k: v for k, v in vars(report).items() if v}


def test_a_refresh_token_sealed_for_another_person_or_key_opens_to_nothing(
    fake_app: TestClient, fake: FakeProvider, make_config: Callable[..., Config]
) -> None:
    from tokenserver.sso.sealed import MAX_REFRESH_TOKEN, Sealer

    sealer = Sealer("fake-secret")
    sealed = sealer.seal("rt-1", "person-a")
    assert sealed is not None and "rt-1" not in sealed
    assert sealer.open(sealed, "person-a") == "rt-1"
    assert sealer.open(sealed, "person-b") is None
    assert Sealer("another-secret").open(sealed, "person-a") is None
    for garbage in ("", "!!!", "A" * 10, sealed[:-4] + "AAAA"):
        assert sealer.open(garbage, "person-a") is None
    assert sealer.seal("r" * (MAX_REFRESH_TOKEN + 1), "person-a") is None
    assert sealer.seal("r\u00e9", "person-a") is None
    # A stored token the server cannot open (the client secret changed, or the row was
    # copied from another person): the provider is not asked, nothing ends.
    _fake_sign_in(fake_app, fake, "rt-first")
    other = sealer.seal("rt-first", "someone-else")
    with _services(fake_app).database.engine.begin() as conn:
        conn.execute(text("UPDATE users SET sso_refresh = :s WHERE name = 'faker'"), {"s": other})
    fake.answer = lambda _nonce: (400, b'{"error": "invalid_grant"}', 0.0)
    assert _recheck(fake_app) == RecheckReport(unavailable=1)
    assert _services(fake_app).accounts.get_user("faker").groups == ("admin", "ops")
