"""Authentication: credential cache, backend chain, database and htpasswd backends, Secret."""

from __future__ import annotations

import datetime as dt
import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from authcore.identity import ScopeLimit
from tests.conftest import LeakGuard
from tokenserver.authn.base import Account, BackendUnavailable, BadCredentials
from tokenserver.authn.cache import CredentialCache
from tokenserver.authn.chain import Authenticator
from tokenserver.authn.ci_tokens import CITokenBackend
from tokenserver.authn.database import DatabaseBackend
from tokenserver.authn.federated import FederatedBackend
from tokenserver.authn.htpasswd import HtpasswdBackend
from tokenserver.federation.trusts import TrustSpec
from tokenserver.federation.verify import Trusts
from tokenserver.passwords import (
    MAX_PASSWORD_BYTES,
    PasswordRejected,
    hash_password,
    is_bcrypt,
    verify_password,
)
from tokenserver.secret import Secret
from tokenserver.store.ci_tokens import CITokenStore
from tokenserver.store.db import Database
from tokenserver.store.trusts import TrustStore
from tokenserver.store.users import UserStore

ROUNDS = 4


class Ticker:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class CountingBackend:
    """Wraps a backend and counts the expensive checks (bcrypt)."""

    def __init__(self, inner: object, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or inner.name  # type: ignore[attr-defined]
        self.checks = 0
        self.lookups = 0

    def lookup(self, username: str) -> Account | None:
        self.lookups += 1
        return self.inner.lookup(username)  # type: ignore[attr-defined, no-any-return]

    def account(self, subject: str) -> Account | None:
        return self.inner.account(subject)  # type: ignore[attr-defined, no-any-return]

    @property
    def remember_checks(self) -> bool:
        return self.inner.remember_checks  # type: ignore[attr-defined, no-any-return]

    @property
    def checks_bcrypt(self) -> bool:
        return self.inner.checks_bcrypt  # type: ignore[attr-defined, no-any-return]

    def wants(self, password: Secret) -> bool:
        return self.inner.wants(password)  # type: ignore[attr-defined, no-any-return]

    def check(self, account: Account, password: Secret) -> Account | None:
        self.checks += 1
        return self.inner.check(account, password)  # type: ignore[attr-defined, no-any-return]


class DictBackend:
    """Users in memory: name -> (bcrypt hash, disabled)."""

    def __init__(self, name: str, users: dict[str, str], disabled: frozenset[str] = frozenset()):
        self.name = name
        self.users = users
        self.disabled = disabled

    def lookup(self, username: str) -> Account | None:
        hashed = self.users.get(username)
        if hashed is None:
            return None
        return Account(username, frozenset({self.name}), hashed, username in self.disabled)

    def account(self, subject: str) -> Account | None:
        return self.lookup(subject)

    remember_checks = True
    checks_bcrypt = True

    def wants(self, password: Secret) -> bool:
        return True

    def check(self, account: Account, password: Secret) -> Account | None:
        return account if verify_password(password.reveal(), account.fingerprint) else None


def _hash(password: str) -> str:
    return hash_password(password, rounds=ROUNDS)


# ---- Secret -----------------------------------------------------------------


def test_secret_never_shows_its_value() -> None:
    s = Secret("hunter2-very-secret")
    for text in (repr(s), str(s), f"{s}", f"{s!r}", f"{s:>30}", "%s" % s, format(s, "")):  # noqa: UP031
        assert "hunter2" not in text
    assert "hunter2" not in repr([s, {"p": s}])
    assert s.reveal() == "hunter2-very-secret"
    assert s == Secret("hunter2-very-secret")
    assert s != Secret("other")
    assert bool(s) and not Secret("")
    with pytest.raises(TypeError):
        hash(s)


def test_secret_in_a_log_record_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("test").info("password is %s", Secret("hunter2-very-secret"))
    assert "hunter2" not in caplog.text


# ---- passwords --------------------------------------------------------------


def test_password_hashing_rules() -> None:
    hashed = _hash("correct horse")
    assert is_bcrypt(hashed)
    assert verify_password("correct horse", hashed)
    assert not verify_password("correct horsE", hashed)
    assert not verify_password("", hashed)
    assert not verify_password("x", "not a hash")
    assert not is_bcrypt("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")
    for bad, reason in (
        ("", "empty"),
        ("x" * (MAX_PASSWORD_BYTES + 1), "longer"),
        ("a\x00b", "NUL"),
    ):
        with pytest.raises(PasswordRejected, match=reason) as info:
            _hash(bad)
        assert bad not in str(info.value) or bad == ""
    # 72 bytes counted in UTF-8, not characters.
    with pytest.raises(PasswordRejected):
        _hash("é" * 37)
    assert verify_password("é" * 36, _hash("é" * 36))


def test_a_password_longer_than_72_bytes_never_matches() -> None:
    hashed = _hash("a" * 72)
    assert verify_password("a" * 72, hashed)
    assert not verify_password("a" * 73, hashed)


# ---- the cache --------------------------------------------------------------


def test_cache_hit_and_ttl_expiry() -> None:
    clock = Ticker()
    cache = CredentialCache(ttl=60, clock=clock)
    pw = Secret("pw-abc")
    assert not cache.hit("db", "alice", pw, "fp1")
    cache.remember("db", "alice", pw, "fp1")
    assert cache.hit("db", "alice", pw, "fp1")
    assert not cache.hit("db", "alice", Secret("pw-abd"), "fp1")
    assert not cache.hit("db", "bob", pw, "fp1")
    assert not cache.hit("ldap", "alice", pw, "fp1")
    clock.t += 59.9
    assert cache.hit("db", "alice", pw, "fp1")
    clock.t += 0.1
    assert not cache.hit("db", "alice", pw, "fp1")
    assert len(cache) == 0  # the expired entry is gone


def test_cache_fingerprint_mismatch_invalidates() -> None:
    cache = CredentialCache(ttl=60, clock=Ticker())
    pw = Secret("pw-abc")
    cache.remember("db", "alice", pw, "fp1")
    assert not cache.hit("db", "alice", pw, "fp2")
    # Dropped, not merely skipped: the old fingerprint no longer hits either.
    assert not cache.hit("db", "alice", pw, "fp1")


def test_cache_ttl_zero_disables() -> None:
    cache = CredentialCache(ttl=0, clock=Ticker())
    cache.remember("db", "alice", Secret("pw"), "fp")
    assert len(cache) == 0
    assert not cache.hit("db", "alice", Secret("pw"), "fp")


def test_cache_is_bounded_and_evicts_oldest() -> None:
    cache = CredentialCache(ttl=60, max_entries=2, clock=Ticker())
    for name in ("a", "b", "c"):
        cache.remember("db", name, Secret("pw"), "fp")
    assert len(cache) == 2
    assert not cache.hit("db", "a", Secret("pw"), "fp")
    assert cache.hit("db", "c", Secret("pw"), "fp")


def test_cache_never_stores_the_password() -> None:
    password = "pw-UNIQUE-needle-5150"
    cache = CredentialCache(ttl=60, clock=Ticker())
    cache.remember("db", "alice", Secret(password), "$2b$04$fingerprint")
    raw = password.encode()
    assert len(cache._remembered._entries) == 1
    for key, value in cache._remembered._entries.items():
        assert raw not in key
        assert password not in repr(value)
    dumped = pickle.dumps(dict(cache._remembered._entries))
    assert raw not in dumped
    assert password not in repr(cache._remembered._entries)
    # The key is keyed (HMAC): a second cache derives a different one.
    other = CredentialCache(ttl=60, clock=Ticker())
    other.remember("db", "alice", Secret(password), "$2b$04$fingerprint")
    assert set(other._remembered._entries) != set(cache._remembered._entries)


# ---- the chain --------------------------------------------------------------


def test_unknown_user_in_the_first_backend_moves_on() -> None:
    first = CountingBackend(DictBackend("first", {"bob": _hash("bob-pw")}))
    second = CountingBackend(DictBackend("second", {"alice": _hash("alice-pw")}))
    auth = Authenticator([first, second], CredentialCache(60))
    identity = auth.authenticate("alice", Secret("alice-pw"))
    assert (identity.subject, identity.kind, identity.backend) == ("alice", "user", "second")
    assert identity.groups == frozenset({"second"})
    assert (first.lookups, first.checks, second.checks) == (1, 0, 1)


def test_wrong_password_in_the_first_backend_stops_the_chain() -> None:
    first = CountingBackend(DictBackend("first", {"alice": _hash("first-pw")}))
    second = CountingBackend(DictBackend("second", {"alice": _hash("second-pw")}))
    auth = Authenticator([first, second], CredentialCache(60))
    with pytest.raises(BadCredentials):
        auth.authenticate("alice", Secret("second-pw"))
    assert second.lookups == 0 and second.checks == 0
    assert auth.authenticate("alice", Secret("first-pw")).backend == "first"


def test_unknown_everywhere_is_bad_credentials() -> None:
    auth = Authenticator([DictBackend("a", {}), DictBackend("b", {})], CredentialCache(60))
    with pytest.raises(BadCredentials):
        auth.authenticate("nobody", Secret("pw"))
    assert auth.find("nobody") is None


def test_unknown_user_costs_a_bcrypt_check_at_the_default_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = Authenticator([DictBackend("a", {})], CredentialCache(60))
    checked: list[str] = []

    def spy(password: str, hashed: str) -> bool:
        checked.append(hashed)
        return verify_password(password, hashed)

    monkeypatch.setattr("tokenserver.authn.chain.verify_password", spy)
    with pytest.raises(BadCredentials):
        auth.authenticate("nobody", Secret("pw"))
    assert len(checked) == 1
    # Same bcrypt cost as a password set with the default (`tokenserver user add`),
    # so "no such user" does not answer measurably faster than "wrong password".
    default_cost = hash_password("x").split("$")[2]
    assert checked[0].split("$")[2] == default_cost


def test_disabled_user_is_refused_even_with_a_warm_cache() -> None:
    backend = DictBackend("db", {"alice": _hash("alice-pw")})
    counting = CountingBackend(backend)
    auth = Authenticator([counting], CredentialCache(60))
    auth.authenticate("alice", Secret("alice-pw"))
    backend.disabled = frozenset({"alice"})
    with pytest.raises(BadCredentials):
        auth.authenticate("alice", Secret("alice-pw"))
    assert auth.find("alice") is None


def test_disabled_in_the_first_backend_does_not_fall_through() -> None:
    first = DictBackend("first", {"alice": _hash("pw")}, disabled=frozenset({"alice"}))
    second = DictBackend("second", {"alice": _hash("pw")})
    auth = Authenticator([first, second], CredentialCache(60))
    with pytest.raises(BadCredentials):
        auth.authenticate("alice", Secret("pw"))
    assert auth.find("alice") is None


@pytest.fixture
def db_users(users: UserStore) -> UserStore:
    users.add("alice", _hash("alice-pw"), ["dev", "admin"])
    return users


def test_warm_path_skips_bcrypt(db_users: UserStore, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = CountingBackend(DatabaseBackend(db_users))
    auth = Authenticator([backend], CredentialCache(60))
    bcrypt_calls = 0
    real_verify = verify_password

    def counting_verify(password: str, hashed: str) -> bool:
        nonlocal bcrypt_calls
        bcrypt_calls += 1
        return real_verify(password, hashed)

    monkeypatch.setattr("tokenserver.authn.hashed.verify_password", counting_verify)
    for _ in range(5):
        identity = auth.authenticate("alice", Secret("alice-pw"))
        assert identity.groups == frozenset({"dev", "admin"})
    assert backend.checks == 1
    assert bcrypt_calls == 1
    # A wrong password is not answered from the cache.
    with pytest.raises(BadCredentials):
        auth.authenticate("alice", Secret("alice-pw-wrong"))
    assert backend.checks == 2


def test_password_change_invalidates_the_cache(db_users: UserStore) -> None:
    backend = CountingBackend(DatabaseBackend(db_users))
    auth = Authenticator([backend], CredentialCache(60))
    auth.authenticate("alice", Secret("alice-pw"))
    db_users.set_password("alice", _hash("new-pw"))
    with pytest.raises(BadCredentials):
        auth.authenticate("alice", Secret("alice-pw"))
    assert auth.authenticate("alice", Secret("new-pw")).subject == "alice"
    # Even re-setting the same password yields a new salt, hence a new fingerprint.
    checks = backend.checks
    db_users.set_password("alice", _hash("new-pw"))
    auth.authenticate("alice", Secret("new-pw"))
    assert backend.checks == checks + 1


def test_deletion_and_disable_invalidate_the_cache(db_users: UserStore) -> None:
    auth = Authenticator([DatabaseBackend(db_users)], CredentialCache(60))
    auth.authenticate("alice", Secret("alice-pw"))
    db_users.set_disabled("alice", True)
    with pytest.raises(BadCredentials):
        auth.authenticate("alice", Secret("alice-pw"))
    db_users.set_disabled("alice", False)
    assert auth.authenticate("alice", Secret("alice-pw")).subject == "alice"
    db_users.delete("alice")
    with pytest.raises(BadCredentials):
        auth.authenticate("alice", Secret("alice-pw"))
    # A new user of the same name with another password does not inherit the entry.
    db_users.add("alice", _hash("fresh-pw"))
    with pytest.raises(BadCredentials):
        auth.authenticate("alice", Secret("alice-pw"))


def test_database_backend_lookup(db_users: UserStore) -> None:
    backend = DatabaseBackend(db_users)
    account = backend.lookup("alice")
    assert account is not None
    assert account.groups == frozenset({"dev", "admin"})
    assert not account.disabled
    assert backend.lookup("nobody") is None
    assert backend.check(account, Secret("alice-pw"))
    assert not backend.check(account, Secret("nope"))


# ---- htpasswd ---------------------------------------------------------------


def _write_htpasswd(path: Path, lines: list[str], bump: int) -> None:
    path.write_text("\n".join(lines) + "\n")
    # Make the change visible even on a coarse-mtime filesystem.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_htpasswd_reads_bcrypt_and_ignores_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "users.htpasswd"
    _write_htpasswd(
        path,
        [
            "# comment",
            f"alice:{_hash('alice-pw')}",
            "apache:$2y$" + _hash("apache-pw")[4:],  # `htpasswd -B` writes $2y$
            "sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
            "md5:$apr1$abcdefgh$0123456789abcdefghijkl",
            "crypt:rqXexS6ZhobKA",
            "plain:plaintext",
            "no-separator",
            f":{_hash('x')}",
            "",
        ],
        bump=0,
    )
    backend = HtpasswdBackend(path)
    account = backend.lookup("alice")
    assert account is not None and account.name == "alice"
    assert backend.check(account, Secret("alice-pw"))
    assert not backend.check(account, Secret("wrong"))
    apache = backend.lookup("apache")
    assert apache is not None and backend.check(apache, Secret("apache-pw"))
    for name in ("sha", "md5", "crypt", "plain", "no-separator", ""):
        assert backend.lookup(name) is None


def test_htpasswd_rereads_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "users.htpasswd"
    _write_htpasswd(path, [f"alice:{_hash('alice-pw')}"], bump=0)
    backend = CountingBackend(HtpasswdBackend(path))
    auth = Authenticator([backend], CredentialCache(60))
    assert auth.authenticate("alice", Secret("alice-pw")).backend == "htpasswd"
    assert backend.lookup("bob") is None

    _write_htpasswd(path, [f"alice:{_hash('alice-new')}", f"bob:{_hash('bob-pw')}"], bump=1)
    assert auth.authenticate("bob", Secret("bob-pw")).subject == "bob"
    with pytest.raises(BadCredentials):  # the cached old password is worthless now
        auth.authenticate("alice", Secret("alice-pw"))
    assert auth.authenticate("alice", Secret("alice-new")).subject == "alice"

    _write_htpasswd(path, [f"bob:{_hash('bob-pw')}"], bump=2)
    with pytest.raises(BadCredentials):
        auth.authenticate("alice", Secret("alice-new"))


def test_htpasswd_missing_file_is_unavailable(tmp_path: Path) -> None:
    backend = HtpasswdBackend(tmp_path / "absent")
    with pytest.raises(BackendUnavailable):
        backend.lookup("alice")


def test_htpasswd_unreadable_content_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "users.htpasswd"
    path.write_bytes(b"caf\xe9:" + _hash("pw").encode() + b"\n")
    with pytest.raises(BackendUnavailable):
        HtpasswdBackend(path).lookup("alice")


def test_htpasswd_then_database_chain(tmp_path: Path, db_users: UserStore) -> None:
    path = tmp_path / "users.htpasswd"
    _write_htpasswd(path, [f"bob:{_hash('bob-pw')}", f"alice:{_hash('shadow-pw')}"], bump=0)
    auth = Authenticator([HtpasswdBackend(path), DatabaseBackend(db_users)], CredentialCache(60))
    assert auth.authenticate("bob", Secret("bob-pw")).backend == "htpasswd"
    # alice is in both: htpasswd comes first and her database password does not count.
    with pytest.raises(BadCredentials):
        auth.authenticate("alice", Secret("alice-pw"))
    found = auth.find("alice")
    assert found is not None and found[0] == "htpasswd"


def test_user_factory_adds_database_users(add_user: Callable[..., str], users: UserStore) -> None:
    password = add_user("carol", groups=("g",))
    info = users.get("carol")
    assert info is not None and info.groups == ("g",)
    assert verify_password(password, info.password_hash)


def test_database_rows_remembered_for_the_warm_path_only(
    db_users: UserStore, database: Database
) -> None:
    ticks = Ticker()
    backend = DatabaseBackend(db_users, ttl=30, clock=ticks)
    auth = Authenticator([backend], CredentialCache(60))
    assert auth.remembered("alice", Secret("alice-pw")) is None  # nothing read yet
    auth.authenticate("alice", Secret("alice-pw"))
    identity = auth.remembered("alice", Secret("alice-pw"))
    assert identity is not None and identity.groups == frozenset({"dev", "admin"})
    assert auth.remembered("alice", Secret("wrong")) is None  # never proves a new password

    # Changed behind this process's back (another instance: its own store): the
    # remembered row stands until the TTL, the blocking path reads afresh at once.
    UserStore(database).set_password("alice", _hash("alice-pw-2"))
    assert auth.remembered("alice", Secret("alice-pw")) is not None
    assert auth.authenticate("alice", Secret("alice-pw-2")).subject == "alice"
    assert auth.remembered("alice", Secret("alice-pw")) is None  # the lookup refreshed it
    auth.authenticate("alice", Secret("alice-pw-2"))
    UserStore(database).set_disabled("alice", True)
    assert auth.remembered("alice", Secret("alice-pw-2")) is not None
    ticks.t += 30
    assert auth.remembered("alice", Secret("alice-pw-2")) is None

    # Changed through this process's own store: forgotten at once.
    UserStore(database).set_disabled("alice", False)
    auth.authenticate("alice", Secret("alice-pw-2"))
    assert auth.remembered("alice", Secret("alice-pw-2")) is not None
    db_users.set_disabled("alice", True)
    assert auth.remembered("alice", Secret("alice-pw-2")) is None
    with pytest.raises(BadCredentials):
        auth.authenticate("alice", Secret("alice-pw-2"))
    assert auth.remembered("alice", Secret("alice-pw-2")) is None  # disabled: never from memory
    db_users.set_disabled("alice", False)
    auth.authenticate("alice", Secret("alice-pw-2"))
    db_users.delete("alice")
    assert auth.remembered("alice", Secret("alice-pw-2")) is None


def test_remembered_never_answers_for_ci_tokens_or_unknown_names(
    db_users: UserStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"carol:{_hash('carol-pw')}\n")
    auth = Authenticator(
        [HtpasswdBackend(htpasswd), DatabaseBackend(db_users, ttl=30)], CredentialCache(60)
    )
    auth.authenticate("carol", Secret("carol-pw"))
    assert auth.remembered("carol", Secret("carol-pw")) is not None
    htpasswd.write_text("")  # removed from the file: seen once the last stat is old enough
    os.utime(htpasswd, ns=(1, 1))
    monkeypatch.setattr("tokenserver.authn.htpasswd.STAT_EVERY", 0.0)
    assert auth.remembered("carol", Secret("carol-pw")) is None
    with pytest.raises(BadCredentials):
        auth.authenticate("nobody", Secret("pw"))
    assert auth.remembered("nobody", Secret("pw")) is None


# ---- equal work on every refusal ----------------------------------------------


def _bcrypt_costs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The cost of every bcrypt computation from now on, whoever asks for it.

    Counted where passlib hands the work to the bcrypt library, so the test
    sees the work done, not which of the server's functions did it.
    """
    costs: list[int] = []
    real = bcrypt.hashpw

    def counting(password: bytes, salt: bytes) -> bytes:
        costs.append(int(salt.split(b"$")[2]))
        return real(password, salt)

    monkeypatch.setattr(bcrypt, "hashpw", counting)
    return costs


def _refusal_costs(auth: Authenticator, costs: list[int], name: str, password: str) -> list[int]:
    costs.clear()
    with pytest.raises(BadCredentials):
        auth.authenticate(name, Secret(password))
    return list(costs)


def test_every_ci_token_refusal_costs_one_bcrypt_check_and_a_right_secret_none(
    database: Database, db_users: UserStore, leak_guard: LeakGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    clock = [now]
    store = CITokenStore(database)
    scopes = ScopeLimit.parse(["repository:team/*:pull"])
    _, live = store.create("ci-live", scopes, now + dt.timedelta(days=1), now)
    _, short = store.create("ci-short", scopes, now + dt.timedelta(hours=1), now)
    _, gone = store.create("ci-gone", scopes, now + dt.timedelta(days=1), now)
    store.revoke("ci-gone", now)
    for secret in (live, short, gone):
        leak_guard.add(secret)
    # A wrong secret of the right shape, so the CI backend is asked about it.
    wrong = live[:-1] + ("A" if live[-1] != "A" else "B")
    auth = Authenticator(
        [CITokenBackend(store, lambda: clock[0]), DatabaseBackend(db_users)],
        CredentialCache(60),
        bcrypt_cost=ROUNDS,
    )
    costs = _bcrypt_costs(monkeypatch)

    assert auth.authenticate("ci-live", Secret(live)).subject == "ci-live"
    assert costs == []  # the right secret stays a SHA-256: nothing added to the good path
    one_check = [ROUNDS]
    assert _refusal_costs(auth, costs, "ci-nobody", wrong) == one_check  # the decoy, as before
    assert _refusal_costs(auth, costs, "ci-live", wrong) == one_check
    assert _refusal_costs(auth, costs, "ci-gone", gone) == one_check
    assert _refusal_costs(auth, costs, "alice", wrong) == one_check  # a user's wrong password
    clock[0] = now + dt.timedelta(hours=2)
    assert _refusal_costs(auth, costs, "ci-short", short) == one_check
    assert auth.authenticate("ci-live", Secret(live)).subject == "ci-live"
    assert costs == one_check  # still only the refusal's


def test_a_refused_id_token_to_a_trust_costs_what_an_unknown_name_does(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    trust = TrustSpec("gh", "https://issuer.example", "registry", ["repository:a/*:pull"],
                      jwks_file=jwks)  # fmt: skip
    trusts = Trusts([trust], TrustStore(database), lambda: dt.datetime.now(dt.UTC))
    federated = FederatedBackend(trusts)
    auth = Authenticator(
        [federated, DatabaseBackend(UserStore(database))], CredentialCache(60), bcrypt_cost=ROUNDS
    )
    costs = _bcrypt_costs(monkeypatch)
    # Short enough for bcrypt to be asked (72 bytes), shaped enough for the trusts.
    short = "eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl"
    assert federated.wants(Secret(short))
    assert _refusal_costs(auth, costs, "gx", short) == [ROUNDS]
    assert _refusal_costs(auth, costs, "gh", short) == [ROUNDS]
    # A longer one is never bcrypt's to check, for a trust's name or any other.
    long = short + "x" * 80
    assert _refusal_costs(auth, costs, "gx", long) == []
    assert _refusal_costs(auth, costs, "gh", long) == []
