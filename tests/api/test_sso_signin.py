"""Signing in to the web page through the OpenID provider: the real app behind the test
client, against npm's oidc-provider (a real provider, started once for the module) and,
for answers no honest provider gives, a fake one of our own.

Every hostile answer is a 4xx page (a 503 when the provider itself fails), never a 500,
and never the code, the state or the client secret in a log record of the server.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from tests.support.fake_oidc_provider import FakeProvider
from tests.support.oidc import forged_hs256, forged_none
from tests.support.oidc_provider import OIDCProvider
from tokenserver.config import Config

CALLBACK = "http://testserver/ui/login/sso/callback"
Start = Callable[[Config], AbstractContextManager[TestClient]]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, real_peer: None) -> Iterator[OIDCProvider]:
    people = {"alice": ["team-a", "ops"], "bob": ["team-b"]}
    with OIDCProvider(tmp_path_factory.mktemp("op"), redirect_uri=CALLBACK, people=people) as op:
        yield op


@pytest.fixture
def app(
    provider: OIDCProvider, make_config: Callable[..., Config], start_client: Start
) -> Iterator[TestClient]:
    provider.set_person("alice", ["team-a", "ops"])
    config = make_config({"sso": provider.sso_config(admin_groups=["ops"], name="Example SSO")})
    with start_client(config) as client:
        yield client


def _browser(app: TestClient) -> TestClient:
    return TestClient(app.app, follow_redirects=False)


def _start(browser: TestClient, query: str = "") -> str:
    answer = browser.get(f"/ui/login/sso{query}")
    assert answer.status_code == 303, answer.text
    assert "ts_sso" in browser.cookies
    return str(answer.headers["location"])


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _onward(html: str) -> str:
    """Where a signed-in page moves the browser on to (its meta refresh)."""
    found = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', html)
    assert found is not None, html[:300]
    return found.group(1)


def _server_records(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        record.getMessage() + repr(vars(record))
        for record in caplog.records
        if record.name.startswith(("tokenserver", "authcore"))
    )


def _audit(app: TestClient) -> list[dict[str, Any]]:
    svc = app.app.state.services  # type: ignore[attr-defined]
    svc.audit.flush(2.0)
    return [
        {"subject": r.subject, "via": r.via, "target": r.target, "outcome": r.outcome}
        for r in svc.audit_reader.query(action="ui.signin", limit=50)
    ]


def test_the_login_page_offers_the_provider(app: TestClient) -> None:
    page = app.get("/ui/login")
    assert 'id="sign-in-sso"' in page.text and "Sign in with Example SSO" in page.text
    assert 'id="password"' in page.text


def test_an_admin_of_the_provider_signs_in_and_lands_on_the_page(
    app: TestClient, provider: OIDCProvider, caplog: pytest.LogCaptureFixture
) -> None:
    browser = _browser(app)
    authorize = _query(_start(browser))
    assert authorize["code_challenge_method"] == "S256" and len(authorize["code_challenge"]) == 43
    assert authorize["scope"] == "openid profile email" and authorize["nonce"]
    back = provider.sign_in(_start(browser), "alice")  # the second start replaces the first state
    done = browser.get(back)
    assert done.status_code == 200 and _onward(done.text) == "/ui/users", done.text
    cookie = browser.cookies.get("ts_session")
    assert cookie
    users = browser.get("/ui/users")
    assert users.status_code == 200 and "alice" in users.text
    account = app.app.state.services.accounts.get_user("alice")  # type: ignore[attr-defined]
    assert account.source == "sso" and account.groups == ("admin", "ops", "team-a")
    own = browser.get("/ui/users/alice").text
    assert 'id="source"' in own and 'id="password"' not in own  # no password to set
    assert "(provider)" in users.text
    rows = _audit(app)
    assert {"subject": "alice", "via": "sso", "target": "alice", "outcome": "ok"} in rows
    # Nothing the browser carried back is in the server's log.
    values = _query(back)
    logged = _server_records(caplog)
    for secret in (values["code"], values["state"], provider.client_secret):
        assert secret not in logged
    # The state is single use: the same answer again signs no one in.
    replay = _browser(app)
    again = replay.get(back, headers={"Cookie": f"ts_sso={values['state']}"})
    assert again.status_code == 400 and "ts_session" not in replay.cookies


def test_a_group_removed_at_the_provider_is_gone_at_the_next_sign_in(
    app: TestClient, provider: OIDCProvider
) -> None:
    first = _browser(app)
    assert first.get(provider.sign_in(_start(first), "alice")).status_code == 200
    accounts = app.app.state.services.accounts  # type: ignore[attr-defined]
    assert "team-a" in accounts.get_user("alice").groups
    provider.set_person("alice", ["ops", "team-c"])
    second = _browser(app)
    assert second.get(provider.sign_in(_start(second), "alice")).status_code == 200
    assert accounts.get_user("alice").groups == ("admin", "ops", "team-c")
    # No longer an admin at the provider: signed in to her own page only, and the
    # sessions she opened as an admin are ended.
    provider.set_person("alice", ["team-c"])
    third = _browser(app)
    signed = third.get(provider.sign_in(_start(third), "alice"))
    assert signed.status_code == 200 and 'content="0;url=/ui/me"' in signed.text
    assert accounts.get_user("alice").groups == ("team-c",)
    ended = first.get("/ui/users")
    assert ended.status_code == 303 and ended.headers["location"].startswith("/ui/login")
    assert third.get("/ui/users").headers["location"] == "/ui/me"
    assert "team-c" in third.get("/ui/me").text


def test_a_person_who_is_not_an_admin_signs_in_to_their_own_page(
    app: TestClient, provider: OIDCProvider
) -> None:
    browser = _browser(app)
    signed = browser.get(provider.sign_in(_start(browser), "bob"))
    assert signed.status_code == 200 and "ts_session" in browser.cookies
    assert 'content="0;url=/ui/me"' in signed.text
    bob = app.app.state.services.accounts.get_user("bob")  # type: ignore[attr-defined]
    assert bob.source == "sso" and bob.groups == ("team-b",)
    assert {"subject": "bob", "via": "sso", "target": "bob", "outcome": "ok"} in _audit(app)
    own = browser.get("/ui/me")
    assert own.status_code == 200 and "team-b" in own.text
    # The admin pages are not his.
    assert browser.get("/ui/users").headers["location"] == "/ui/me"


def test_no_one_else_takes_a_name_nor_a_person_of_the_provider_another_s(
    app: TestClient, provider: OIDCProvider, add_user: Callable[..., str]
) -> None:
    add_user("carol", "carol-pw-1", ("admin",))
    provider.set_person("carol", ["ops"])
    browser = _browser(app)
    taken = browser.get(provider.sign_in(_start(browser), "carol"))
    assert taken.status_code == 409 and "ts_session" not in browser.cookies
    # alice's account is bound to the provider's subject "alice": "mallory" claiming
    # the name alice at the provider does not get it.
    assert browser.get(provider.sign_in(_start(browser), "alice")).status_code == 200
    provider.set_person("mallory", ["ops"], username="alice")
    thief = _browser(app)
    stolen = thief.get(provider.sign_in(_start(thief), "mallory"))
    assert stolen.status_code == 409 and "ts_session" not in thief.cookies
    # A person of the provider has no password to set.
    accounts = app.app.state.services.accounts  # type: ignore[attr-defined]
    from tokenserver.accounts import InvalidValue
    from tokenserver.audit import Actor

    with pytest.raises(InvalidValue, match="no password"):
        accounts.set_password(Actor("root", "cli"), "alice", "new-pw-123")


def test_state_that_is_foreign_missing_or_replayed_is_refused(
    app: TestClient, provider: OIDCProvider
) -> None:
    victim, attacker = _browser(app), _browser(app)
    back = provider.sign_in(_start(attacker), "alice")
    _start(victim)
    # The attacker's answer, pushed into the victim's browser (login CSRF): another state.
    assert victim.get(back).status_code == 400
    cookieless = _browser(app)
    assert cookieless.get(back).status_code == 400
    assert "ts_session" not in victim.cookies and "ts_session" not in cookieless.cookies
    # Unused, the attacker's own answer still works once, then never again.
    assert attacker.get(back).status_code == 200
    again = _browser(app).get(back, headers={"Cookie": f"ts_sso={_query(back)['state']}"})
    assert again.status_code == 400


def test_a_code_reused_or_redeemed_with_another_verifier_is_refused(
    app: TestClient, provider: OIDCProvider
) -> None:
    browser = _browser(app)
    first = provider.sign_in(_start(browser), "alice")
    # PKCE mismatch: code of the first sign-in, state (and so verifier) of a second.
    code = _query(first)["code"]
    state = _query(_start(browser))["state"]
    mismatch = browser.get("/ui/login/sso/callback", params={"code": code, "state": state})
    assert mismatch.status_code == 401 and "ts_session" not in browser.cookies
    # Code reuse: redeemed once in its own sign-in, then offered again in a new one.
    other = _browser(app)
    back = provider.sign_in(_start(other), "alice")
    assert other.get(back).status_code == 200
    state = _query(_start(other))["state"]
    reused = other.get(
        "/ui/login/sso/callback", params={"code": _query(back)["code"], "state": state}
    )
    assert reused.status_code == 401


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?code=abc",
        "?state=abc",
        "?error=access_denied&state=x",
        "?code=" + "a" * 5000 + "&state=x",
        "?code=x&state=" + "s" * 10_000,
        "?code=%00%ff%fe&state=%c0%af",
        "?code=a&code=b&state=c&state=d",
        "?code=x&state=y&iss=https%3A%2F%2Fevil.example",
        "?code[]=x&state[]=y",
    ],
)
def test_malformed_answers_are_a_4xx(app: TestClient, query: str) -> None:
    browser = _browser(app)
    _start(browser)
    answer = browser.get(f"/ui/login/sso/callback{query}")
    assert 400 <= answer.status_code < 500, answer.text
    assert "ts_session" not in browser.cookies


def test_return_to_is_kept_for_local_pages_only(app: TestClient, provider: OIDCProvider) -> None:
    browser = _browser(app)
    done = browser.get(provider.sign_in(_start(browser, "?return_to=/ui/audit"), "alice"))
    assert _onward(done.text) == "/ui/audit"
    for hostile in ("https://evil.example/", "//evil.example/ui/", "/ui/\\evil", "/\\/evil"):
        browser = _browser(app)
        done = browser.get(provider.sign_in(_start(browser, f"?return_to={hostile}"), "alice"))
        assert _onward(done.text) == "/ui/users"


def test_without_sso_the_routes_are_not_there(client: TestClient) -> None:
    assert client.get("/ui/login/sso", follow_redirects=False).status_code == 404
    assert client.get("/ui/login/sso/callback?code=a&state=b").status_code == 404
    assert 'id="sign-in-sso"' not in client.get("/ui/login").text


def test_the_password_form_can_be_switched_off(
    provider: OIDCProvider, make_config: Callable[..., Config], start_client: Start
) -> None:
    config = make_config({"sso": provider.sso_config(), "ui": {"password_login": False}})
    with start_client(config) as client:
        page = client.get("/ui/login")
        assert 'id="sign-in-sso"' in page.text and 'id="password"' not in page.text
        login = client.post("/ui/login", data={"username": "a", "password": "b", "csrf": "c"})
        assert login.status_code == 404


# -- a provider that answers what no honest one does ---------------------------------------


def _answered(app: TestClient, fake: FakeProvider, body: Callable[[str], bytes]) -> int:
    browser = _browser(app)
    sent = _query(_start(browser))
    fake.answer = lambda nonce: (200, body(sent["nonce"]), 0.0)
    callback = browser.get("/ui/login/sso/callback", params={"code": "c", "state": sent["state"]})
    return callback.status_code


def _tokens(fake: FakeProvider) -> dict[str, Callable[[str], str]]:
    key = fake.keys[-1]
    public = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "foreign iss": lambda n: fake.sign(fake.id_token(n, iss="https://evil.example")),
        "foreign aud": lambda n: fake.sign(fake.id_token(n, aud="another-client")),
        "replayed nonce": lambda n: fake.sign(fake.id_token("an-earlier-sign-in")),
        "alg none": lambda n: forged_none(fake.id_token(n)),
        "HS256 keyed with the public key": lambda n: forged_hs256(
            fake.id_token(n), public, key.kid
        ),
        "not a JWT": lambda n: "not-a-jwt",
    }


def test_id_tokens_no_honest_provider_sends_are_refused(
    fake_app: TestClient, fake: FakeProvider
) -> None:
    good = _answered(
        fake_app, fake, lambda n: json.dumps({"id_token": fake.sign(fake.id_token(n))}).encode()
    )
    assert good == 200  # the fake is a provider we trust: its good token signs in
    for what, forge in _tokens(fake).items():
        status = _answered(
            fake_app,
            fake,
            lambda n, f=forge: json.dumps({"id_token": f(n)}).encode(),  # type: ignore[misc]
        )
        assert status == 401, what


def test_a_provider_answering_huge_slow_or_nonsense_is_bounded(
    fake_app: TestClient, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tokenserver.sso.provider.DEADLINE", 1.0)
    cases: dict[str, Callable[[str], tuple[int, bytes, float]]] = {
        "huge": lambda n: (200, b'{"id_token": "' + b"a" * 4 * 1024 * 1024 + b'"}', 0.0),
        "slow": lambda n: (200, json.dumps({"id_token": "x" * 400}).encode(), 0.1),
        "not JSON": lambda n: (200, b"<html>", 0.0),
        "no ID token": lambda n: (200, b'{"access_token": "a"}', 0.0),
        "a 500": lambda n: (500, b"{}", 0.0),
        "refused": lambda n: (400, b'{"error": "invalid_grant"}', 0.0),
    }
    for what, answer in cases.items():
        browser = _browser(fake_app)
        sent = _query(_start(browser))
        fake.answer = answer
        began = time.monotonic()
        callback = browser.get(
            "/ui/login/sso/callback", params={"code": "c", "state": sent["state"]}
        )
        assert callback.status_code in (401, 503), what
        assert time.monotonic() - began < 5, what


def test_the_answer_may_come_back_to_another_instance_once(
    provider: OIDCProvider, make_config: Callable[..., Config], start_client: Start
) -> None:
    """Two apps on one database (two instances behind a balancer): the sign-in begun on
    one is finished on the other, and then on neither again."""
    provider.set_person("alice", ["ops"])
    config = make_config({"sso": provider.sso_config(admin_groups=["ops"])})
    with start_client(config) as first, start_client(config) as second:
        began = _browser(first)
        back = provider.sign_in(_start(began), "alice")
        state = _query(back)["state"]
        elsewhere = _browser(second)
        done = elsewhere.get(back, headers={"Cookie": f"ts_sso={state}"})
        assert done.status_code == 200 and "ts_session" in elsewhere.cookies
        assert elsewhere.get("/ui/users").status_code == 200
        assert began.get(back).status_code == 400  # taken already, on the other instance


def test_a_person_disabled_here_is_refused_whatever_the_provider_says(
    app: TestClient, provider: OIDCProvider
) -> None:
    from tokenserver.audit import Actor

    browser = _browser(app)
    assert browser.get(provider.sign_in(_start(browser), "alice")).status_code == 200
    accounts = app.app.state.services.accounts  # type: ignore[attr-defined]
    accounts.set_disabled(Actor("root", "cli"), "alice", True)
    assert browser.get("/ui/users").status_code == 303  # the session ended with it
    again = _browser(app)
    refused = again.get(provider.sign_in(_start(again), "alice"))
    assert refused.status_code == 403 and "ts_session" not in again.cookies
    assert {"subject": "alice", "via": "sso", "target": "alice", "outcome": "forbidden"} in _audit(
        app
    )
