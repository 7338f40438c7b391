"""LDAP logins against a real slapd: the backend itself, then through GET /token.

Every test adds its own uniquely named users, so the session's slapd is shared.
"""

from __future__ import annotations

import base64
import concurrent.futures
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from fastapi.testclient import TestClient

from tests.conftest import LeakGuard
from tests.support.ldap import LdapDirectory as Directory
from tests.support.ldap import SilentServer, Slapd
from tokenserver.authn.base import BackendUnavailable, BadCredentials
from tokenserver.authn.cache import CredentialCache
from tokenserver.authn.chain import Authenticator
from tokenserver.authn.ldap import LDAPBackend, escape_filter_value
from tokenserver.config import Config
from tokenserver.secret import Secret

pytestmark = pytest.mark.e2e  # a real slapd

SERVICE = "registry"
StartClient = Callable[[Config], AbstractContextManager[TestClient]]


@pytest.fixture
def backend(directory: Directory) -> Iterator[LDAPBackend]:
    b = directory.backend()
    yield b
    b.close()


def _login(b: LDAPBackend, username: str, password: str) -> frozenset[str]:
    """What the chain does: lookup, then the bind; the groups on success."""
    account = b.lookup(username)
    if account is None:
        raise BadCredentials("unknown user")
    if not b.check(account, Secret(password)):
        raise BadCredentials("wrong password")
    return account.groups


# -- the backend ------------------------------------------------------------


def test_login_and_groups_from_member_of(directory: Directory, backend: LDAPBackend) -> None:
    uid, password = directory.user("dev")
    devs = directory.group("developers", uid)
    ops = directory.group("ops", uid)
    directory.group("others", directory.user("other")[0])
    assert _login(backend, uid, password) == {devs, ops}


def test_groups_from_a_group_search(directory: Directory) -> None:
    uid, password = directory.user("searcher")
    devs = directory.group("developers", uid)
    b = directory.backend(
        group_filter="(&(objectClass=groupOfNames)(member={dn}))",
        group_base_dn=directory.slapd.groups_dn,
    )
    try:
        assert _login(b, uid, password) == {devs}
    finally:
        b.close()


def test_wrong_password_unknown_user_and_empty_password(
    directory: Directory, backend: LDAPBackend
) -> None:
    uid, password = directory.user("pw")
    account = backend.lookup(uid)
    assert account is not None
    assert backend.check(account, Secret(password + "x")) is None
    assert backend.check(account, Secret("")) is None  # an anonymous bind is not a login
    assert backend.check(account, Secret("x" * 10_000)) is None
    assert backend.lookup(directory.name("nobody")) is None
    assert backend.check(account, Secret(password)) == account


@pytest.mark.parametrize(
    "probe",
    ["*", "{uid}*", "*{tail}", "{uid})(uid=*", "*)(|(uid=*", "{uid}\\", "{uid}\x00", "(uid=*)"],
)
def test_injection_does_not_widen_the_search(
    directory: Directory, backend: LDAPBackend, probe: str
) -> None:
    uid, password = directory.user("victim")
    username = probe.format(uid=uid, tail=uid[2:])
    account = backend.lookup(username)
    assert account is None
    # And the password of the real user does not log the probe in either.
    with pytest.raises(BadCredentials):
        _login(backend, username, password)


@pytest.mark.parametrize("base", ["a*b", "x(y)", "back\\slash", "jörg", "nul-free.name"])
def test_names_with_special_characters_log_in_as_themselves(
    directory: Directory, backend: LDAPBackend, base: str
) -> None:
    uid, password = directory.user(directory.name(base), exact=True)
    assert backend.lookup(uid) is not None
    assert _login(backend, uid, password) == frozenset()
    if "*" in uid:
        assert backend.lookup(uid.replace("b", "", 1)) is None


def test_unusable_names_are_not_asked(backend: LDAPBackend) -> None:
    for name in ["", " padded", "padded ", "tab\tname", "nul\x00", "x" * 257]:
        assert backend.lookup(name) is None


def test_escape_filter_value() -> None:
    assert escape_filter_value("a*(b)\\\x00ö") == "a\\2a\\28b\\29\\5c\\00ö"


def test_starttls_and_ldaps_with_a_ca_file(directory: Directory) -> None:
    uid, password = directory.user("tls")
    slapd = directory.slapd
    assert slapd.ldaps_url is not None
    for overrides in (
        {"start_tls": True, "ca_file": slapd.ca_file},
        {"url": slapd.ldaps_url, "ca_file": slapd.ca_file},
    ):
        b = directory.backend(**overrides)
        try:
            _login(b, uid, password)
        finally:
            b.close()


def test_tls_to_an_untrusted_certificate_is_unavailable(
    directory: Directory, tmp_path: Path
) -> None:
    from tests.support.certs import write_self_signed

    other_ca, _ = write_self_signed(tmp_path)
    assert directory.slapd.ldaps_url is not None
    b = directory.backend(url=directory.slapd.ldaps_url, ca_file=other_ca)
    try:
        with pytest.raises(BackendUnavailable):
            b.lookup(directory.user("untrusted")[0])
    finally:
        b.close()


def test_refused_service_account_is_unavailable_and_not_logged(
    directory: Directory, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = directory.leak_guard.add(f"wrong-service-pw-{secrets.token_hex(4)}")
    b = directory.backend(bind_password=wrong)
    try:
        with pytest.raises(BackendUnavailable):
            b.lookup(directory.user("svc")[0])
    finally:
        b.close()
    assert any("service bind refused" in r.getMessage() for r in caplog.records)


def test_server_down_is_unavailable(directory: Directory) -> None:
    from tests.support.peers import free_port

    b = directory.backend(url=f"ldap://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(BackendUnavailable):
            b.lookup("anyone")
    finally:
        b.close()


def test_a_server_that_never_answers_times_out(directory: Directory) -> None:
    with SilentServer() as silent:
        b = directory.backend(url=silent.url, timeout=1)
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                b.lookup("anyone")
            # Bounded by the timeout, not by TCP or the test's own limit.
            assert time.monotonic() - started < 10
        finally:
            b.close()


def test_lookups_are_cached_briefly(directory: Directory) -> None:
    now = [1000.0]
    b = LDAPBackend(directory.settings(cache_ttl=30), clock=lambda: now[0])
    try:
        uid, password = directory.user("cached")
        assert _login(b, uid, password) == frozenset()
        team = directory.group("late", uid)
        assert _login(b, uid, password) == frozenset()  # still the cached groups
        now[0] += 31
        assert _login(b, uid, password) == {team}
    finally:
        b.close()


def test_concurrent_logins_share_a_small_pool(directory: Directory) -> None:
    users = [directory.user(f"pool{i}") for i in range(6)]
    b = directory.backend(pool_size=2, cache_ttl=0)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda u: _login(b, *u), users * 4))
        assert results == [frozenset()] * 24
    finally:
        b.close()


# -- through the token endpoint ---------------------------------------------


def _basic(user: str, password: str) -> dict[str, str]:
    raw = f"{user}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _ldap_config(make_config: Callable[..., Config], directory: Directory, **extra: Any) -> Config:
    settings = directory.settings()
    ldap = {
        "url": settings.url,
        "bind_dn": settings.bind_dn,
        "bind_password": directory.slapd.service_password,
        "base_dn": settings.base_dn,
        "timeout": 2,
        **extra.pop("ldap", {}),
    }
    return make_config({"ldap": ldap, **extra})


RULES = [
    {"match": {"account": "/.+/", "name": "${account}/*"}, "actions": ["*"]},
    {"match": {"name": "team/*", "labels": {"groups": "{devs}"}}, "actions": ["pull", "push"]},
    {"match": {"name": "team/*", "labels": {"groups": "{ci}"}}, "actions": ["pull"]},
]


def _rules(devs: str, ci: str) -> list[dict[str, Any]]:
    out = []
    for rule in RULES:
        labels = rule["match"].get("labels")
        match = dict(rule["match"])
        if labels:
            match["labels"] = {"groups": labels["groups"].format(devs=devs, ci=ci)}
        out.append({"match": match, "actions": rule["actions"]})
    return out


def _scope(response: Any, decode: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    access: list[dict[str, Any]] = decode(response.json()["token"])["access"]
    return access


def test_group_rules_through_get_token(
    make_config: Callable[..., Config],
    directory: Directory,
    start_client: StartClient,
    decode_token: Callable[[str], dict[str, Any]],
) -> None:
    dev, dev_pw = directory.user("dev")
    bot, bot_pw = directory.user("bot")
    devs = directory.group("developers", dev)
    ci = directory.group("ci", bot)
    config = _ldap_config(make_config, directory, acl=_rules(devs, ci))
    with start_client(config) as client:
        url = f"/token?service={SERVICE}&scope=repository:team/app:pull,push"
        granted = _scope(client.get(url, headers=_basic(dev, dev_pw)), decode_token)
        assert granted == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
        granted = _scope(client.get(url, headers=_basic(bot, bot_pw)), decode_token)
        assert granted == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
        wrong = client.get(url, headers=_basic(dev, bot_pw))
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        empty = client.get(url, headers=_basic(dev, ""))
        assert empty.status_code == 401


def test_a_refused_bind_costs_what_an_unknown_name_does(
    directory: Directory, backend: LDAPBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid, password = directory.user("timing")
    auth = Authenticator([backend], CredentialCache(0), bcrypt_cost=4)
    costs: list[int] = []
    real = bcrypt.hashpw

    def counting(secret: bytes, salt: bytes) -> bytes:
        costs.append(int(salt.split(b"$")[2]))
        return real(secret, salt)

    # Counted where the work is done: whichever check runs, it is one bcrypt.
    monkeypatch.setattr(bcrypt, "hashpw", counting)
    for name in (directory.name("nobody"), uid):
        costs.clear()
        with pytest.raises(BadCredentials):
            auth.authenticate(name, Secret(password + "x"))
        assert costs == [4], name
    costs.clear()
    assert auth.authenticate(uid, Secret(password)).subject == uid
    assert costs == []  # a right password is the bind alone


def test_chain_order_no_such_user_moves_on_wrong_password_stops(
    make_config: Callable[..., Config],
    directory: Directory,
    start_client: StartClient,
    add_user: Callable[..., str],
) -> None:
    ldap_user, ldap_pw = directory.user("both")
    db_pw = add_user(ldap_user)  # the same name in the database, another password
    db_only = directory.name("dbonly")
    db_only_pw = add_user(db_only)
    config = _ldap_config(make_config, directory, authn={"order": ["ldap", "database"]})
    with start_client(config) as client:
        url = f"/token?service={SERVICE}"
        assert client.get(url, headers=_basic(ldap_user, ldap_pw)).status_code == 200
        # LDAP knows the name and refuses the password: the database is not asked.
        assert client.get(url, headers=_basic(ldap_user, db_pw)).status_code == 401
        assert client.get(url, headers=_basic(db_only, db_only_pw)).status_code == 200
    config = _ldap_config(make_config, directory, authn={"order": ["database", "ldap"]})
    with start_client(config) as client:
        assert client.get(url, headers=_basic(ldap_user, db_pw)).status_code == 200
        assert client.get(url, headers=_basic(ldap_user, ldap_pw)).status_code == 401


def test_directory_down_is_503_json_not_401(
    make_config: Callable[..., Config],
    directory: Directory,
    start_client: StartClient,
    add_user: Callable[..., str],
) -> None:
    from tests.support.peers import free_port

    db_user = directory.name("dbuser")
    db_pw = add_user(db_user)
    config = _ldap_config(
        make_config,
        directory,
        ldap={"url": f"ldap://127.0.0.1:{free_port()}"},
        authn={"order": ["database", "ldap"]},
    )
    with start_client(config) as client:
        url = f"/token?service={SERVICE}"
        response = client.get(url, headers=_basic("someone", "pw"))
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
        assert response.headers["retry-after"]
        # Users the chain finds before the directory are not affected.
        assert client.get(url, headers=_basic(db_user, db_pw)).status_code == 200


@pytest.mark.peers
def test_paused_directory_times_out_then_recovers_and_warm_path_skips_it(
    make_config: Callable[..., Config],
    leak_guard: LeakGuard,
    start_client: StartClient,
    tmp_path: Path,
) -> None:
    with Slapd(tmp_path / "slapd") as own:
        directory = Directory(own, leak_guard)
        uid, password = directory.user("warm")
        other, other_pw = directory.user("cold")
        config = _ldap_config(make_config, directory, ldap={"timeout": 1})
        with start_client(config) as client:
            url = f"/token?service={SERVICE}"
            assert client.get(url, headers=_basic(uid, password)).status_code == 200
            own.pause()
            try:
                # Cached lookup and cached password check: no directory needed.
                assert client.get(url, headers=_basic(uid, password)).status_code == 200
                started = time.monotonic()
                response = client.get(url, headers=_basic(other, other_pw))
                assert response.status_code == 503, response.text
                assert time.monotonic() - started < 10
            finally:
                own.resume()
            assert client.get(url, headers=_basic(other, other_pw)).status_code == 200


def test_secrets_stay_out_of_logs(
    make_config: Callable[..., Config],
    directory: Directory,
    start_client: StartClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    uid, password = directory.user("quiet")
    config = _ldap_config(make_config, directory)
    with start_client(config) as client:
        url = f"/token?service={SERVICE}"
        assert client.get(url, headers=_basic(uid, password)).status_code == 200
        assert client.get(url, headers=_basic(uid, password + "!")).status_code == 401
    # The autouse leak guard checks every record for the passwords registered above.
    assert any(r.getMessage() == "request" for r in caplog.records)


def test_a_filter_matching_two_entries_refuses_the_login(directory: Directory) -> None:
    uid, _ = directory.user("twin")
    directory.slapd.add_user(directory.name("other"), "irrelevant-pw", cn=uid)
    b = directory.backend(user_filter="(|(uid={username})(cn={username}))")
    try:
        with pytest.raises(BadCredentials):
            b.lookup(uid)
    finally:
        b.close()


# -- one account, one name ----------------------------------------------------


def _token_claims(
    client: TestClient,
    decode: Callable[[str], dict[str, Any]],
    user: str,
    password: str,
    scope: str,
) -> dict[str, Any]:
    response = client.get(
        f"/token?service={SERVICE}&scope={scope}&account={user}", headers=_basic(user, password)
    )
    assert response.status_code == 200, response.text
    return decode(response.json()["token"])


def test_a_case_variant_login_gets_the_directorys_name_and_its_rules(
    make_config: Callable[..., Config],
    directory: Directory,
    start_client: StartClient,
    decode_token: Callable[[str], dict[str, Any]],
) -> None:
    mallory, password = directory.user("mallory")
    rules = [
        {"match": {"account": mallory}, "actions": []},
        {"match": {"account": "/.+/", "name": "${account}/*"}, "actions": ["*"]},
    ]
    config = _ldap_config(make_config, directory, acl=rules)
    with start_client(config) as client:
        for typed in (mallory, mallory.upper(), mallory.capitalize()):
            claims = _token_claims(
                client, decode_token, typed, password, f"repository:{typed}/app:pull"
            )
            # The directory matched the variant; the subject is its own spelling,
            # so the deny rule for that account applies to every variant.
            assert claims["sub"] == mallory
            assert claims["access"] == []


def test_the_subject_comes_from_username_attribute_whatever_the_filter_matched(
    make_config: Callable[..., Config],
    directory: Directory,
    start_client: StartClient,
    decode_token: Callable[[str], dict[str, Any]],
) -> None:
    mail = f"{directory.name('carol')}@example.test"
    carol, password = directory.user("carol", mail=mail)
    config = _ldap_config(
        make_config,
        directory,
        ldap={"user_filter": "(mail={username})", "username_attribute": "uid"},
    )
    with start_client(config) as client:
        claims = _token_claims(
            client, decode_token, mail.upper(), password, f"repository:{carol}/app:pull"
        )
        assert claims["sub"] == carol
        assert claims["access"] == [
            {"type": "repository", "name": f"{carol}/app", "actions": ["pull"]}
        ]
        # A refresh token is bound to the directory's name, not the typed one.
        login = client.get(
            f"/token?service={SERVICE}&offline_token=true", headers=_basic(mail, password)
        )
        assert login.status_code == 200
        refreshed = client.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": login.json()["refresh_token"],
                "service": SERVICE,
                "client_id": "test",
                "scope": f"repository:{carol}/app:push",
            },
        )
        assert refreshed.status_code == 200, refreshed.text
        assert decode_token(refreshed.json()["access_token"])["sub"] == carol


def test_an_entry_without_the_login_attribute_cannot_log_in(
    make_config: Callable[..., Config], directory: Directory, start_client: StartClient
) -> None:
    mail = f"{directory.name('dora')}@example.test"
    _uid, password = directory.user("dora", mail=mail)
    config = _ldap_config(
        make_config,
        directory,
        ldap={"user_filter": "(mail={username})", "username_attribute": "employeeNumber"},
    )
    with start_client(config) as client:
        answer = client.get(f"/token?service={SERVICE}", headers=_basic(mail, password))
        assert answer.status_code == 401


def test_case_variants_share_one_throttle_counter(
    make_config: Callable[..., Config],
    directory: Directory,
    start_client: StartClient,
    add_user: Callable[..., str],
) -> None:
    ldap_user, ldap_pw = directory.user("victim")
    db_user = directory.name("dbvictim")
    db_pw = add_user(db_user)
    config = _ldap_config(
        make_config, directory, throttle={"account_failures": 3, "address_failures": 1000}
    )
    with start_client(config) as client:
        for user, password in ((ldap_user, ldap_pw), (db_user, db_pw)):
            variants = [user, user.upper(), user.capitalize()]
            statuses = [
                client.get(f"/token?service={SERVICE}", headers=_basic(v, "wrong")).status_code
                for v in variants
            ]
            assert statuses == [401, 401, 401]
            # Three failures spread over three spellings: every spelling is throttled,
            # even with the right password (which is not checked at all).
            for variant in variants:
                answer = client.get(f"/token?service={SERVICE}", headers=_basic(variant, password))
                assert answer.status_code == 429, (user, variant)
                assert int(answer.headers["retry-after"]) > 0


def test_a_personal_token_of_an_ldap_person_follows_their_groups_and_ends_with_them(
    make_config: Callable[..., Config],
    directory: Directory,
    start_client: StartClient,
    add_user: Callable[..., str],
    leak_guard: LeakGuard,
    decode_token: Callable[[str], dict[str, Any]],
) -> None:
    dev, _dev_pw = directory.user("dev")
    devs = directory.group("developers", dev)
    root = ("root", add_user("root", groups=("admin",)))
    rules = [{"match": {"labels": {"groups": "admin"}}, "actions": ["*"]}, *_rules(devs, "none")]
    config = _ldap_config(make_config, directory, acl=rules, ldap={"cache_ttl": 0})
    with start_client(config) as client:
        made = client.post(
            "/admin/v1/personal-tokens",
            json={"user": dev, "name": "laptop", "scopes": ["repository:team/*:pull,push"],
                  "ttl": 3600},
            auth=root,
        )  # fmt: skip
        assert made.status_code == 201 and made.json()["owner"] == dev, made.text
        secret = leak_guard.add(made.json()["secret"])
        url = f"/token?service={SERVICE}&scope=repository:team/app:pull,push,delete"
        answer = client.get(url, headers=_basic(dev, secret))
        assert _scope(answer, decode_token) == [
            {"type": "repository", "name": "team/app", "actions": ["pull", "push"]}
        ]
        assert decode_token(answer.json()["token"])["sub"] == dev
        # Out of the group at the directory: out of it in the token too.
        directory.slapd.remove_member(devs, dev)
        assert _scope(client.get(url, headers=_basic(dev, secret)), decode_token) == []
        # Gone from the directory: the token proves nothing.
        directory.slapd.delete_user(dev)
        assert client.get(url, headers=_basic(dev, secret)).status_code == 401
