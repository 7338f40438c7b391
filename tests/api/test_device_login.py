"""docker login through the browser: RFC 8628's device authorization grant.

The protocol (pending, slow_down raising the interval, denied, expired, a
spent code, a wrong user code, a second decision), the page (signed in
first, and back; CSRF), two app instances on one database, hostile input,
10 000 guessed user codes and races: one refresh token at most. The real app,
lifespan and all, on a clock the test moves.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import FakeClock, LeakGuard
from tokenserver.config import Config
from tokenserver.device import normalise_user_code
from tokenserver.services import Services
from tokenserver.store.db import Database

SERVICE = "registry"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT = "docker-credential-tokenserver"
ROOT_PW, OPS_PW = "root-pw-1", "ops-pw-1"
USER_CODE = re.compile(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}")


@pytest.fixture
def admins(add_user: Callable[..., str], leak_guard: LeakGuard) -> None:
    add_user("root", ROOT_PW, ("admin",))
    add_user("ops", OPS_PW, ("admin",))


def _services(client: TestClient) -> Services:
    svc: Services = client.app.state.services  # type: ignore[attr-defined]
    return svc


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def _codes(client: TestClient, leak_guard: LeakGuard, **form: str) -> dict[str, Any]:
    answer = client.post("/device/code", data={"client_id": CLIENT, **form})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    # The user code is in the test client's own log lines (httpx logs its URLs):
    # the server's are checked for it where it matters (`_server_records`).
    leak_guard.add(body["device_code"])
    return body


def _poll(client: TestClient, device_code: str, client_id: str = CLIENT, **form: str) -> Any:
    return client.post(
        "/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client_id}
        | form,
    )


def _server_records(caplog: pytest.LogCaptureFixture) -> str:
    """What the server logged (not the test client, httpx, which logs its URLs)."""
    return "\n".join(
        r.getMessage() + repr(vars(r)) for r in caplog.records if not r.name.startswith("httpx")
    )


def _error(answer: httpx.Response) -> str:
    assert answer.status_code == 400, answer.text
    return str(answer.json()["error"])


class Person:
    """One browser signed in to the page, with its own cookies."""

    def __init__(self, client: TestClient, user: str, password: str) -> None:
        self.http = TestClient(client.app, follow_redirects=False)
        login = self.http.get("/ui/login")
        answer = self.http.post(
            "/ui/login",
            data={"username": user, "password": password, "csrf": _csrf(login.text)},
        )
        assert answer.status_code == 303, answer.text

    def look(self, user_code: str) -> httpx.Response:
        return self.http.get("/ui/device", params={"user_code": user_code})

    def decide(self, user_code: str, decision: str = "approve") -> httpx.Response:
        csrf = _csrf(self.http.get("/ui/device").text)
        return self.http.post(
            "/ui/device", data={"user_code": user_code, "decision": decision, "csrf": csrf}
        )


def _device_rows(database: Database) -> list[Any]:
    with database.engine.connect() as conn:
        return list(conn.execute(text("SELECT * FROM device_codes")).mappings())


def _refresh_tokens(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM refresh_tokens")).scalar_one())


# -- the protocol ------------------------------------------------------------------


def test_a_device_is_approved_on_the_page_and_gets_a_refresh_token(
    client: TestClient,
    admins: None,
    clock: FakeClock,
    leak_guard: LeakGuard,
    database: Database,
    decode_token: Callable[[str], dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock.advance(-60)  # the polls' waits stay in the past: tokens are checked by real time
    codes = _codes(client, leak_guard, scope="repository:root/app:pull")
    assert USER_CODE.fullmatch(codes["user_code"]), codes
    assert len(codes["device_code"]) >= 43
    assert codes["verification_uri"] == "http://testserver/device"
    assert codes["verification_uri_complete"] == (
        f"http://testserver/device?user_code={codes['user_code']}"
    )
    assert (codes["expires_in"], codes["interval"]) == (600, 5)
    # Neither code is in the table as itself.
    (row,) = _device_rows(database)
    stored = " ".join(str(v) for v in row.values())
    assert codes["device_code"] not in stored
    assert normalise_user_code(codes["user_code"]) not in stored

    assert _error(_poll(client, codes["device_code"])) == "authorization_pending"

    # The link leads to the page, the page to the sign-in, the sign-in back to the page.
    browser = TestClient(client.app, follow_redirects=False)
    to_page = browser.get(codes["verification_uri_complete"].removeprefix("http://testserver"))
    assert to_page.status_code == 303
    page_path = to_page.headers["location"]
    assert page_path == f"/ui/device?user_code={codes['user_code']}"
    to_login = browser.get(page_path)
    assert to_login.status_code == 303
    assert to_login.headers["location"] == "/ui/login?" + urlencode({"return_to": page_path})
    login = browser.get(to_login.headers["location"])
    assert f'name="return_to" value="{page_path}"' in login.text
    signed_in = browser.post(
        "/ui/login",
        data={
            "username": "root",
            "password": ROOT_PW,
            "csrf": _csrf(login.text),
            "return_to": page_path,
        },
    )
    assert signed_in.status_code == 303 and signed_in.headers["location"] == page_path
    shown = browser.get(page_path)
    assert shown.status_code == 200, shown.text
    assert CLIENT in shown.text and "testclient" in shown.text
    assert clock.now.strftime("%Y-%m-%d %H:%M:%SZ") in shown.text
    assert f'name="user_code" id="user_code" value="{codes["user_code"]}"' in shown.text

    decided = browser.post(
        "/ui/device",
        data={"user_code": codes["user_code"], "decision": "approve", "csrf": _csrf(shown.text)},
    )
    assert decided.status_code == 200 and "Approved" in decided.text, decided.text

    clock.advance(5)
    granted = _poll(client, codes["device_code"])
    assert granted.status_code == 200, granted.text
    body = granted.json()
    refresh_token = leak_guard.add(body["refresh_token"])
    claims = decode_token(body["access_token"])
    assert claims["sub"] == "root"
    assert claims["access"] == [{"type": "repository", "name": "root/app", "actions": ["pull"]}]

    # docker's refresh grant exchanges it for a registry token.
    refreshed = client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "service": SERVICE,
            "client_id": "docker",
            "scope": "repository:root/other:push,pull",
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    access = decode_token(refreshed.json()["access_token"])["access"]
    assert access == [{"type": "repository", "name": "root/other", "actions": ["pull", "push"]}]

    # Spent: the same code gives nothing again.
    clock.advance(5)
    assert _error(_poll(client, codes["device_code"])) == "invalid_grant"
    assert _refresh_tokens(database) == 1

    # The trail: who approved which client, and the polls; never a code.
    _services(client).audit.flush()
    trail = _services(client).audit_reader.query(limit=1000)
    (approval,) = [r for r in trail if r.action == "device.approve"]
    assert (approval.subject, approval.target, approval.outcome) == ("root", CLIENT, "ok")
    polls = [r.outcome for r in trail if r.via == "device_code"]
    assert sorted(polls) == ["bad_credentials", "granted", "pending"]
    for secret in (codes["user_code"], normalise_user_code(codes["user_code"]) or "-"):
        assert secret not in repr(trail)
        assert secret not in _server_records(caplog)
    assert not leak_guard.found_in(repr(trail))


def test_polling_too_early_slows_the_device_down_by_5_seconds_each_time(
    client: TestClient, clock: FakeClock, leak_guard: LeakGuard
) -> None:
    code = _codes(client, leak_guard)["device_code"]
    assert _error(_poll(client, code)) == "authorization_pending"  # next poll at +5
    slow = _poll(client, code)
    assert _error(slow) == "slow_down"  # the interval is now 10
    assert "10 s" in slow.json()["error_description"]
    clock.advance(10)
    assert _error(_poll(client, code)) == "authorization_pending"
    clock.advance(9)
    assert _error(_poll(client, code)) == "slow_down"  # now 15, from here
    clock.advance(14)
    assert _error(_poll(client, code)) == "slow_down"  # now 20
    clock.advance(20)
    assert _error(_poll(client, code)) == "authorization_pending"


def test_a_denied_device_gets_access_denied_for_good(
    client: TestClient, admins: None, clock: FakeClock, leak_guard: LeakGuard
) -> None:
    codes = _codes(client, leak_guard)
    person = Person(client, "ops", OPS_PW)
    denied = person.decide(codes["user_code"], "deny")
    assert denied.status_code == 200 and "Denied" in denied.text
    for _ in range(2):
        assert _error(_poll(client, codes["device_code"])) == "access_denied"
        clock.advance(5)
    # Decided is decided: approving it now is refused.
    assert person.decide(codes["user_code"]).status_code == 409
    trail = _services(client).audit_reader.query(subject="ops")
    assert [(r.action, r.target, r.outcome) for r in trail if r.action.startswith("device.")] == [
        ("device.approve", CLIENT, "conflict"),
        ("device.deny", CLIENT, "ok"),
    ]


def test_an_expired_code_is_expired_token_and_unknown_on_the_page(
    client: TestClient, admins: None, clock: FakeClock, leak_guard: LeakGuard
) -> None:
    codes = _codes(client, leak_guard)
    person = Person(client, "root", ROOT_PW)
    clock.advance(601)
    assert _error(_poll(client, codes["device_code"])) == "expired_token"
    assert person.look(codes["user_code"]).status_code == 404
    assert person.decide(codes["user_code"]).status_code == 404


def test_a_wrong_user_code_finds_nothing_and_decides_nothing(
    client: TestClient, admins: None, clock: FakeClock, leak_guard: LeakGuard
) -> None:
    codes = _codes(client, leak_guard)
    person = Person(client, "root", ROOT_PW)
    wrong = "BBBB-BBBB" if codes["user_code"] != "BBBB-BBBB" else "CCCC-CCCC"
    looked = person.look(wrong)
    assert looked.status_code == 404 and "no request has this code" in looked.text
    assert person.decide(wrong).status_code == 404
    assert _error(_poll(client, codes["device_code"])) == "authorization_pending"
    # Typed as people type it: lower case, no dash, spaces.
    typed = codes["user_code"].replace("-", " ").lower()
    assert person.look(typed).status_code == 200
    assert person.decide(typed).status_code == 200
    clock.advance(5)
    assert _poll(client, codes["device_code"]).status_code == 200


def test_a_second_approval_is_refused_and_keeps_the_first_binding(
    client: TestClient,
    admins: None,
    clock: FakeClock,
    leak_guard: LeakGuard,
    decode_token: Callable[[str], dict[str, Any]],
) -> None:
    clock.advance(-60)
    codes = _codes(client, leak_guard)
    assert Person(client, "root", ROOT_PW).decide(codes["user_code"]).status_code == 200
    ops = Person(client, "ops", OPS_PW)
    assert ops.look(codes["user_code"]).status_code == 409
    assert ops.decide(codes["user_code"]).status_code == 409
    assert ops.decide(codes["user_code"], "deny").status_code == 409
    granted = _poll(client, codes["device_code"])
    assert granted.status_code == 200, granted.text
    leak_guard.add(granted.json()["refresh_token"])
    assert decode_token(granted.json()["access_token"])["sub"] == "root"


def test_the_code_is_bound_to_its_client_service_and_account(
    client: TestClient,
    admins: None,
    clock: FakeClock,
    leak_guard: LeakGuard,
) -> None:
    codes = _codes(client, leak_guard)
    Person(client, "root", ROOT_PW).decide(codes["user_code"])
    # Another client, or another service, cannot redeem it (and does not spend it).
    assert _error(_poll(client, codes["device_code"], "someone-else")) == "invalid_grant"
    assert _error(_poll(client, codes["device_code"], service="other")) == "invalid_request"
    # The approver deleted meanwhile: nothing for the device.
    assert client.delete("/admin/v1/users/root", auth=("ops", OPS_PW)).status_code == 204
    assert _error(_poll(client, codes["device_code"])) == "invalid_grant"


def test_device_code_requests_are_checked(client: TestClient) -> None:
    assert client.post("/device/code", data={}).json()["error"] == "invalid_request"
    for form in (
        {"client_id": "x" * 256},
        {"client_id": "caf\u00e9"},
        {"client_id": "tab\there"},
        {"client_id": CLIENT, "service": "not-ours"},
        {"client_id": CLIENT, "scope": "repository:"},
    ):
        answer = client.post("/device/code", data=form)
        assert answer.status_code == 400, (form, answer.text)
        assert answer.json()["error"] == "invalid_request"
    nul = client.post(
        "/device/code",
        content=b"client_id=a%00b",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert nul.status_code == 400
    json_body = client.post("/device/code", json={"client_id": CLIENT})
    assert json_body.status_code == 400
    huge = client.post("/device/code", data={"client_id": "x" * 70_000})
    assert huge.status_code == 413


# -- several instances, one database ---------------------------------------------------


def test_two_instances_share_the_codes(
    config: Config,
    start_client: Callable[[Config], AbstractContextManager[TestClient]],
    admins: None,
    clock: FakeClock,
    leak_guard: LeakGuard,
) -> None:
    with start_client(config) as first, start_client(config) as second:
        codes = _codes(first, leak_guard)
        assert _error(_poll(second, codes["device_code"])) == "authorization_pending"
        clock.advance(5)
        assert Person(second, "root", ROOT_PW).decide(codes["user_code"]).status_code == 200
        granted = _poll(first, codes["device_code"])
        assert granted.status_code == 200, granted.text
        leak_guard.add(granted.json()["refresh_token"])
        clock.advance(5)
        assert _error(_poll(second, codes["device_code"])) == "invalid_grant"


def test_racing_polls_and_approvals_give_one_refresh_token(
    config: Config,
    start_client: Callable[[Config], AbstractContextManager[TestClient]],
    admins: None,
    clock: FakeClock,
    leak_guard: LeakGuard,
    database: Database,
) -> None:
    with start_client(config) as first, start_client(config) as second:
        codes = _codes(first, leak_guard)
        people = [Person(first, "root", ROOT_PW), Person(second, "ops", OPS_PW)]
        pages = [p.http.get("/ui/device").text for p in people]
        decisions: list[int] = []
        polls: list[httpx.Response] = []
        start = threading.Barrier(6)

        def approve(index: int) -> None:
            person = people[index]
            form = {"user_code": codes["user_code"], "decision": "approve"}
            start.wait()
            answer = person.http.post("/ui/device", data=form | {"csrf": _csrf(pages[index])})
            decisions.append(answer.status_code)

        def poll(client: TestClient) -> None:
            start.wait()
            for _ in range(20):
                polls.append(_poll(client, codes["device_code"]))
                clock.advance(5)

        threads = [threading.Thread(target=approve, args=(i,)) for i in (0, 1)]
        threads += [threading.Thread(target=poll, args=(c,)) for c in (first, second) * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(decisions) == [200, 409]
    granted = [p for p in polls if p.status_code == 200]
    assert len(granted) <= 1
    for answer in polls:
        assert answer.status_code in (200, 400), answer.text
        if answer.status_code == 200:
            leak_guard.add(answer.json()["refresh_token"])
    assert _refresh_tokens(database) == len(granted)


# -- hostile input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "device_code",
    ["x" * 10_000, "abc\u00e9\u4e2d", "\U0001f600" * 100, "rt_" + "A" * 43, " "],
)
def test_hostile_device_codes_are_invalid_grant(client: TestClient, device_code: str) -> None:
    answer = _poll(client, device_code)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] in ("invalid_grant", "invalid_request")


def test_nul_and_oversized_polls_are_refused(client: TestClient, leak_guard: LeakGuard) -> None:
    form = {"grant_type": DEVICE_GRANT, "client_id": CLIENT}
    nul = client.post(
        "/token",
        content=urlencode(form | {"device_code": "a\x00b"}).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert nul.status_code == 400
    assert _poll(client, "x" * 70_000).status_code == 413
    assert _error(client.post("/token", data=form)) == "invalid_request"
    code = _codes(client, leak_guard)["device_code"]
    assert _error(_poll(client, code, client_id="")) == "invalid_request"
    assert _error(_poll(client, code, client_id="a\u00e9")) == "invalid_grant"


@pytest.mark.parametrize(
    "typed",
    [
        "x" * 30_000,  # near what a client sends at all
        "\u0131" * 8,  # dotless i: "I" once upper-cased
        "\uff22" * 8,  # full-width B
        "BBBB\x00BBBB",
        "BBBB-BBB\u00df",
        "../../etc",
        "<script>alert(1)</script>",
    ],
)
def test_hostile_user_codes_are_not_found_never_500(
    client: TestClient, admins: None, typed: str
) -> None:
    person = Person(client, "root", ROOT_PW)
    looked = person.http.get("/ui/device?" + urlencode({"user_code": typed}))
    assert looked.status_code == 404, looked.text[:300]
    assert "<script>" not in looked.text
    redirected = person.http.get("/device?" + urlencode({"user_code": typed}))
    assert redirected.status_code == 303
    assert redirected.headers["location"].startswith("/ui/device?user_code=")
    # A NUL in a form is refused before anything reads it.
    assert person.decide(typed[:1000]).status_code == (400 if "\x00" in typed else 404)


def test_approving_needs_the_session_and_its_csrf_token(
    client: TestClient, admins: None, leak_guard: LeakGuard
) -> None:
    codes = _codes(client, leak_guard)
    form = {"user_code": codes["user_code"], "decision": "approve"}
    nobody = TestClient(client.app, follow_redirects=False)
    assert nobody.post("/ui/device", data=form | {"csrf": "x"}).status_code == 401
    root, ops = Person(client, "root", ROOT_PW), Person(client, "ops", OPS_PW)
    assert root.http.post("/ui/device", data=form).status_code == 403
    assert root.http.post("/ui/device", data=form | {"csrf": "forged"}).status_code == 403
    others = _csrf(ops.http.get("/ui/device").text)
    assert root.http.post("/ui/device", data=form | {"csrf": others}).status_code == 403
    assert root.http.post("/ui/device", data=form | {"csrf": others}).status_code == 403
    assert root.decide(codes["user_code"], "maybe").status_code == 400
    assert _error(_poll(client, codes["device_code"])) == "authorization_pending"


@pytest.mark.parametrize(
    "return_to",
    [
        "//evil.example/ui/",
        "https://evil.example/ui/device",
        "/ui/../../evil",
        "/ui/\\\\evil.example",
        "/ui/device\r\nLocation: https://evil.example",
        "/elsewhere",
        "/ui/" + "x" * 2000,
    ],
)
def test_a_sign_in_returns_only_to_a_path_of_the_page(
    client: TestClient, admins: None, return_to: str
) -> None:
    browser = TestClient(client.app, follow_redirects=False)
    login = browser.get("/ui/login", params={"return_to": return_to})
    assert "return_to" not in login.text
    answer = browser.post(
        "/ui/login",
        data={
            "username": "root",
            "password": ROOT_PW,
            "csrf": _csrf(login.text),
            "return_to": return_to,
        },
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/users"


@pytest.mark.slow  # 10 000 requests: about a minute on the 2-core machine
def test_ten_thousand_guessed_user_codes_are_throttled_and_never_hit(
    client: TestClient, admins: None, leak_guard: LeakGuard, config: Config
) -> None:
    codes = _codes(client, leak_guard)
    real = normalise_user_code(codes["user_code"])
    guesser = Person(client, "root", ROOT_PW)
    answers: dict[int, int] = {}
    alphabet = "BCDFGHJKLMNPQRSTVWXZ"
    for n in range(10_000):
        guess = "".join(alphabet[(n // 20**i) % 20] for i in range(8))
        if guess == real:
            continue
        status = guesser.look(guess).status_code
        answers[status] = answers.get(status, 0) + 1
    limit = config.throttle.account_failures
    assert answers == {404: limit, 429: 9_999 - limit} or answers == {
        404: limit,
        429: 10_000 - limit,
    }
    throttled = guesser.look(codes["user_code"])
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    assert guesser.decide(codes["user_code"]).status_code == 429
    assert _error(_poll(client, codes["device_code"])) == "authorization_pending"


def test_other_sessions_of_a_guessing_address_are_throttled_too(
    client: TestClient, admins: None, leak_guard: LeakGuard, config: Config
) -> None:
    codes = _codes(client, leak_guard)
    # Signed in first: past the address's limit its password logins wait too.
    ops = Person(client, "ops", OPS_PW)
    people = [Person(client, "root", ROOT_PW) for _ in range(6)]
    statuses = [p.look("BBBB-BBBB").status_code for p in people for _ in range(10)]
    # Ten a session; past the address's limit (50 in the window) every session waits.
    assert statuses.count(404) == config.throttle.address_failures
    assert ops.look(codes["user_code"]).status_code == 429


def test_the_page_without_a_code_asks_for_one(client: TestClient, admins: None) -> None:
    page = Person(client, "root", ROOT_PW).http.get("/ui/device")
    assert page.status_code == 200
    assert 'name="user_code"' in page.text and 'id="continue"' in page.text


def test_one_network_may_have_only_so_many_codes_waiting(
    client: TestClient, clock: FakeClock, leak_guard: LeakGuard
) -> None:
    """A flood of requests for codes fills no table: past the cap, 429 and nothing stored."""
    from tokenserver.device import MAX_WAITING_PER_NETWORK, TooManyCodes

    devices = _services(client).devices
    for n in range(MAX_WAITING_PER_NETWORK):
        devices.start(CLIENT, [], None, f"2001:db8:1:2::{n + 1:x}", "flood/1")
    # Another address of that /64 is the same client; the next /64 and IPv4 are others.
    with pytest.raises(TooManyCodes) as refused:
        devices.start(CLIENT, [], None, "2001:db8:1:2:abcd::1", "flood/1")
    assert 0 < refused.value.retry_after <= 601
    devices.start(CLIENT, [], None, "2001:db8:1:3::1", "flood/1")
    for _ in range(MAX_WAITING_PER_NETWORK):
        _codes(client, leak_guard)
    over = client.post("/device/code", data={"client_id": CLIENT})
    assert over.status_code == 429 and over.json()["error"] == "too_many_requests"
    assert int(over.headers["retry-after"]) > 0
    with _services(client).database.session() as s:
        stored = s.execute(text("SELECT count(*) FROM device_codes")).scalar_one()
    assert stored == 2 * MAX_WAITING_PER_NETWORK + 1
    # Codes that have expired wait no more: room again.
    clock.advance(601)
    devices.start(CLIENT, [], None, "2001:db8:1:2::1", "flood/1")
    _codes(client, leak_guard)
