"""SSO sign-in's pieces without a provider process: the `sso` settings, the ID token's
checks (forged tokens included), where a sign-in may return to, and the groups."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text

from tests.support.migrations import migrate_to
from tests.support.oidc import OIDCIssuer, SigningKey, forged_hs256, forged_none
from tokenserver.authz.patterns import Pattern
from tokenserver.config import Config, ConfigError, load_config
from tokenserver.federation.verify import IssuerKeys
from tokenserver.routes.ui.common import local_path
from tokenserver.sso.id_tokens import IDTokenRules, InvalidIDToken, SignedInPerson, check_id_token
from tokenserver.sso.signin import SSO
from tokenserver.store.db import Database
from tokenserver.store.sso_logins import PendingLogin, SSOLoginStore, TooManyPending
from tokenserver.store.users import SSOPerson, UserExists, UserStore

CLIENT = "registry-auth"
NONCE = "n-0S6_WzA2Mj"
GOOD_SSO = {"issuer": "https://op.example.test", "client_id": CLIENT, "client_secret": "s3"}


def _config(sso: dict[str, Any], **more: Any) -> Config:
    return Config.model_validate({"sso": sso, **more})


# -- settings -------------------------------------------------------------------------


def test_the_defaults_of_the_sso_section() -> None:
    sso = _config(GOOD_SSO).sso
    assert sso is not None
    assert sso.scopes == ["openid", "profile", "email"]
    assert (sso.username_claim, sso.groups_claim) == ("preferred_username", "groups")
    assert sso.claims == {} and sso.admin_groups == [] and sso.recheck == 8 * 3600
    assert sso.display_name == "op.example.test"
    assert sso.client_secret_value() == "s3"
    assert Config().sso is None and Config().ui.password_login is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"issuer": "http://op.example.test"}, "https://"),
        ({"issuer": "https://op.example.test/?x=1"}, "without query"),
        ({"client_secret": None}, "client_secret or client_secret_file"),
        ({"client_secret_file": "/etc/secret"}, "client_secret or client_secret_file"),
        ({"client_id": ""}, "client_id"),
        ({"scopes": "profile email"}, "must include openid"),
        ({"username_claim": "user name"}, "not a claim name"),
        ({"claims": {"email": "/(unclosed/"}}, "email"),
        ({"claims": {"e mail": "*"}}, "not a claim name"),
        ({"admin_groups": ["ops team"]}, "group name"),
        ({"recheck": "10s"}, "1m to 7d"),
        ({"recheck": "soon"}, "recheck"),
        ({"redirect_uri": "javascript:alert(1)"}, "redirect_uri"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_sso_section_is_refused_naming_the_key(change: dict[str, Any], message: str) -> None:
    sso = {k: v for k, v in (GOOD_SSO | change).items() if v is not None}
    with pytest.raises(ValueError, match=message):
        _config(sso)


def test_scopes_as_words_and_recheck_as_a_duration() -> None:
    sso = _config(GOOD_SSO | {"scopes": "openid groups", "recheck": "2h"}).sso
    assert sso is not None and sso.scopes == ["openid", "groups"] and sso.recheck == 7200


def test_the_password_form_goes_only_when_the_provider_comes() -> None:
    with pytest.raises(ValueError, match="no one could sign in"):
        Config.model_validate({"ui": {"password_login": False}})
    assert not _config(GOOD_SSO, ui={"password_login": False}).ui.password_login


def test_sso_people_are_accounts_of_the_database_backend(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    with pytest.raises(ValueError, match="database backend"):
        _config(GOOD_SSO, authn={"order": ["htpasswd"]}, users={"htpasswd": str(htpasswd)})


def test_files_are_relative_to_the_config_and_read_at_start(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-a-file\n")
    path = tmp_path / "c.yaml"
    sso = {k: v for k, v in GOOD_SSO.items() if k != "client_secret"}
    path.write_text(json.dumps({"sso": sso | {"client_secret_file": "secret", "ca_file": "ca"}}))
    config = load_config(path, environ={})
    assert config.sso is not None and config.sso.client_secret_file == tmp_path / "secret"
    assert config.sso.client_secret_value() == "from-a-file"
    with pytest.raises(ConfigError, match=r"sso: ca_file"):
        config.check_trust_files()  # no such CA file


# -- where a sign-in returns to ---------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "https://evil.example/ui/users",
        "//evil.example/ui/users",
        "/ui//evil.example",
        "/ui/\\evil.example",
        "/\\evil.example",
        "/ui/users\r\nSet-Cookie: x=1",
        "/elsewhere",
        "/ui/login/sso",
        "/ui/\u2215evil",
        "/ui/" + "a" * 300,
        "javascript:alert(1)",
    ],
)
def test_a_sign_in_returns_only_to_a_page_of_the_ui(value: str) -> None:
    assert local_path(value) is None


def test_a_page_of_the_ui_is_returned_to() -> None:
    assert local_path("/ui/audit?subject=alice") == "/ui/audit?subject=alice"


# -- groups ------------------------------------------------------------------------------


def test_admin_comes_from_admin_groups_only(tmp_path: Path) -> None:
    sso = _config(GOOD_SSO | {"admin_groups": ["platform"]}).sso
    assert sso is not None
    signin = SSO(sso, None, lambda: None)  # type: ignore[arg-type]

    def groups(*given: str) -> tuple[str, ...]:
        return signin.groups(SignedInPerson("s", "u", tuple(sorted(given)), {}))

    assert groups("platform", "team-a") == ("admin", "platform", "team-a")
    assert groups("admin", "team-a") == ("team-a",)  # a provider group named admin alone: no
    many = groups("platform", *(f"g{i:03}" for i in range(300)))
    assert len(many) == 100 and "admin" in many


# -- the ID token ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCIssuer]:
    with OIDCIssuer(tmp_path_factory.mktemp("op")) as op:
        yield op


def _rules(issuer: OIDCIssuer, **claims: str) -> IDTokenRules:
    return IDTokenRules(
        issuer=issuer.url,
        client_id=CLIENT,
        username_claim="preferred_username",
        groups_claim="groups",
        claims={name: Pattern(source) for name, source in claims.items()},
    )


def _claims(issuer: OIDCIssuer, **more: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": issuer.url,
        "aud": CLIENT,
        "sub": "248289761001",
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
        "preferred_username": "alice",
        "email": "alice@example.com",
        "groups": ["team-a", "admin", "with space", 7, "a/b"],
    } | more


def _check(issuer: OIDCIssuer, token: str, **conditions: str) -> SignedInPerson:
    keys = IssuerKeys(issuer.url, ca_file=issuer.ca_file)
    return check_id_token(token, NONCE, keys, _rules(issuer, **conditions), time.time)


def test_a_good_id_token_names_the_person_and_their_groups(issuer: OIDCIssuer) -> None:
    person = _check(issuer, issuer.sign(_claims(issuer)), email="/@example\\.com$/")
    assert person == SignedInPerson(
        "248289761001", "alice", ("admin", "team-a"), {"email": "alice@example.com"}
    )
    one = _check(issuer, issuer.sign(_claims(issuer, groups="solo", azp=CLIENT)))
    assert one.groups == ("solo",)
    none = _check(issuer, issuer.sign(_claims(issuer, groups=None)))
    assert none.groups == ()


def test_every_wrong_id_token_is_refused(issuer: OIDCIssuer) -> None:
    now = int(time.time())
    good = _claims(issuer)
    without = lambda name: {k: v for k, v in good.items() if k != name}  # noqa: E731
    cases = {
        "foreign issuer": issuer.sign(good | {"iss": "https://other.example"}),
        "foreign audience": issuer.sign(good | {"aud": "someone-else"}),
        "several audiences, no azp": issuer.sign(good | {"aud": [CLIENT, "other"]}),
        "azp of another": issuer.sign(good | {"azp": "other"}),
        "another sign-in's nonce": issuer.sign(good | {"nonce": "replayed"}),
        "no nonce": issuer.sign(without("nonce")),
        "nonce not a string": issuer.sign(good | {"nonce": ["n"]}),
        "expired": issuer.sign(good | {"exp": now - 120}),
        "issued an hour ago": issuer.sign(good | {"iat": now - 3600, "exp": now + 300}),
        "no sub": issuer.sign(without("sub")),
        "sub too long": issuer.sign(good | {"sub": "x" * 256}),
        "no username": issuer.sign(without("preferred_username")),
        "username not a string": issuer.sign(good | {"preferred_username": 1}),
        "condition not met": issuer.sign(good | {"email": "alice@elsewhere.org"}),
        "unknown key": issuer.sign(good, key=SigningKey("RS256")),
        "alg none": forged_none(good),
        "not a jwt": "hunter2",
        "huge": "eyJ" + "a" * 20000 + ".b.c",
    }
    key = issuer.keys[-1]
    for secret in (
        key.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(key.jwk()).encode(),
    ):
        cases[f"HS256 with {secret[:10]!r}"] = forged_hs256(good, secret, key.kid)
    for what, token in cases.items():
        with pytest.raises(InvalidIDToken):
            _check(issuer, token, email="/@example\\.com$/")
            pytest.fail(f"{what} was taken")


# -- the records ---------------------------------------------------------------------------


def test_existing_users_are_local_after_the_upgrade_and_people_are_bound(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        migrate_to(db, "0007")
        with db.engine.begin() as conn:  # a user of 0007, as its columns were
            conn.execute(
                text(
                    "INSERT INTO users (name, name_key, account_id, password_hash, disabled,"
                    " created_at, updated_at) VALUES ('dana', 'dana', 'a1', 'h', 0,"
                    " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                )
            )
        db.migrate()
        users = UserStore(db)
        assert users.get("dana") is not None and users.get("dana").source == "local"  # type: ignore[union-attr]
        alice = SSOPerson("https://op.example", "248289761001")
        assert users.sso_account(alice) is None
        users.add("alice", "$2b$04$" + "y" * 53, ["team-a"], sso=alice)
        assert users.sso_account(alice) == "alice"
        assert users.sso_account(SSOPerson("https://other.example", "248289761001")) is None
        assert users.get("alice").source == "sso"  # type: ignore[union-attr]
        with pytest.raises(UserExists):  # one account per person
            users.add("alice2", "$2b$04$" + "z" * 53, sso=alice)
    finally:
        db.dispose()


def test_a_pending_sign_in_is_taken_once_and_not_after_it_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        db.migrate()
        logins = SSOLoginStore(db)
        now = dt.datetime.now(dt.UTC)
        ten_minutes = dt.timedelta(minutes=10)
        logins.add("state-1", PendingLogin("nonce", "verifier", "/ui/users"), now, ten_minutes)
        logins.add("state-2", PendingLogin("nonce", "verifier", "/ui/users"), now, ten_minutes)
        assert logins.take("state-1", now) == PendingLogin("nonce", "verifier", "/ui/users")
        assert logins.take("state-1", now) is None
        assert logins.take("state-2", now + ten_minutes) is None
        with db.engine.connect() as conn:
            stored = conn.execute(text("SELECT state_hash FROM sso_logins")).scalars().all()
        assert "state-2" not in stored  # only its hash
        monkeypatch.setattr("tokenserver.store.sso_logins.MAX_PENDING", 2)
        logins.add("state-3", PendingLogin("n", "v", "/ui/users"), now, ten_minutes)
        with pytest.raises(TooManyPending):
            logins.add("state-4", PendingLogin("n", "v", "/ui/users"), now, ten_minutes)
    finally:
        db.dispose()


def test_the_sso_section_from_the_environment() -> None:
    environ = {
        "TOKENSERVER_SSO_ISSUER": "https://op.example.test",
        "TOKENSERVER_SSO_CLIENT_ID": CLIENT,
        "TOKENSERVER_SSO_CLIENT_SECRET": "s3",
        "TOKENSERVER_SSO_ADMIN_GROUPS": "[platform]",
        "TOKENSERVER_UI_PASSWORD_LOGIN": "false",
    }
    config = load_config(None, environ=environ)
    assert config.sso is not None and config.sso.admin_groups == ["platform"]
    assert config.ui.password_login is False
