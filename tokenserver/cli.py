"""The `tokenserver` command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from authcore.cli import CommandLine, config_file, run
from authcore.duration import DurationError, parse_seconds
from tokenserver.accounts import AccountError, Accounts, Ended, parse_id
from tokenserver.audit import TOKEN_ACTION, Actor
from tokenserver.config import Config, ConfigError, load_config
from tokenserver.federation.trusts import TrustSpec
from tokenserver.keys import KeysError, generate_key, jwks_document, load_public_keys, write_jwks
from tokenserver.services import Administration, open_administration, rechecker, utcnow
from tokenserver.token_views import CITokenView, PersonalTokenView, TokenView

__all__ = ["main"]

T = TypeVar("T")

TIME = "%Y-%m-%dT%H:%M:%SZ"  # how a listing writes a moment


class CLIError(Exception):
    pass


def _config(args: argparse.Namespace) -> Config:
    return load_config(
        config_file(args.config, "tokenserver", "TOKENSERVER_CONFIG", "tokenserver.yaml")
    )


def _actor() -> Actor:
    """Whoever runs the CLI on the server, by login name (for the audit trail)."""
    try:
        name = os.environ.get("SUDO_USER") or getpass.getuser()
    except (OSError, KeyError):
        name = "unknown"
    return Actor(name[:255], "cli", "local")


def _administration(args: argparse.Namespace) -> AbstractContextManager[Administration]:
    """The services a command works with, over the configured database and backends."""
    return open_administration(_config(args))


def _on_accounts(args: argparse.Namespace, act: Callable[[Accounts], T]) -> T:
    """What `act` does with the accounts service; a change it refuses is the command's error."""
    with _administration(args) as admin:
        try:
            return act(admin.accounts)
        except AccountError as exc:
            raise CLIError(str(exc)) from None


def _read_password(args: argparse.Namespace) -> str:
    if not args.password_stdin:
        raise CLIError("give the password on standard input with --password-stdin")
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


def _show(
    items: Sequence[T],
    as_json: bool,
    record: Callable[[T], dict[str, Any]],
    line: Callable[[T], str],
) -> None:
    """A listing: one JSON array for scripts, or one tab-separated line an item."""
    if as_json:
        print(json.dumps([record(item) for item in items]))
        return
    for item in items:
        print(line(item))


def _ended(ended: Ended) -> str:
    return (
        f"{ended.refresh_tokens} refresh token(s) revoked, {ended.ui_sessions} web session(s) ended"
        + (f", {ended.personal_tokens} personal token(s) revoked" if ended.personal_tokens else "")
    )


def cmd_serve(args: argparse.Namespace) -> None:
    from authcore.jsonlog import configure_logging
    from authcore.serve import serve
    from tokenserver.app import create_app
    from tokenserver.context import KEYS
    from tokenserver.errors import refusal
    from tokenserver.services import migrate

    config = _config(args)
    if args.addr:
        config = config.model_copy(
            update={"server": config.server.model_copy(update={"addr": args.addr})}
        )
        try:
            Config.model_validate(config.model_dump())
        except ValidationError:
            raise CLIError(f"--addr {args.addr!r}: must be HOST:PORT") from None
    configure_logging(config.log.level, KEYS)
    # Read now, so an unreadable password file is a clear message, not a failed start-up.
    config.ldap.bind_password_value()

    serve(
        create_app(config),
        config.server,
        section="server",
        refusal=refusal,
        prepare=(lambda: migrate(config)) if config.server.workers > 1 else None,
    )


def cmd_keys_generate(args: argparse.Namespace) -> None:
    with _administration(args) as admin:
        config = admin.config
        algorithm = args.algorithm or config.token.algorithm
        try:
            cert = generate_key(config.token.keys_dir, algorithm)
        except KeysError:
            admin.trail.record(_actor(), "keys.generate", algorithm, "invalid_request")
            raise
        admin.trail.record(_actor(), "keys.generate", cert.stem, "ok")
    print(cert)


def cmd_keys_jwks(args: argparse.Namespace) -> None:
    config = _config(args)
    keys_dir, algorithm = config.token.keys_dir, config.token.algorithm
    if args.output:
        try:
            print(write_jwks(keys_dir, Path(args.output), algorithm))
        except OSError as exc:
            raise CLIError(f"--output {args.output}: {exc.strerror}") from None
    else:
        print(json.dumps(jwks_document(load_public_keys(keys_dir, algorithm)), indent=2))


def cmd_user_add(args: argparse.Namespace) -> None:
    password = _read_password(args)
    _on_accounts(
        args, lambda accounts: accounts.create_user(_actor(), args.name, password, args.group or ())
    )
    print(f"user {args.name} added")


def cmd_user_passwd(args: argparse.Namespace) -> None:
    password = _read_password(args)
    ended = _on_accounts(
        args, lambda accounts: accounts.set_password(_actor(), args.name, password)
    )
    print(f"password of {args.name} changed; {_ended(ended)}")


def cmd_user_del(args: argparse.Namespace) -> None:
    ended = _on_accounts(args, lambda accounts: accounts.delete_user(_actor(), args.name))
    print(f"user {args.name} deleted; {_ended(ended)}")


def cmd_user_disable(args: argparse.Namespace) -> None:
    _on_accounts(args, lambda accounts: accounts.set_disabled(_actor(), args.name, args.disable))
    print(f"user {args.name} {'disabled' if args.disable else 'enabled'}")


def cmd_user_groups(args: argparse.Namespace) -> None:
    user = _on_accounts(
        args, lambda accounts: accounts.set_groups(_actor(), args.name, args.group or ())
    )
    print(f"groups of {args.name}: {' '.join(user.groups)}")


def cmd_user_list(args: argparse.Namespace) -> None:
    users = _on_accounts(args, lambda accounts: accounts.list_users())
    _show(
        users,
        args.json,
        lambda u: {
            "name": u.name,
            "groups": list(u.groups),
            "disabled": u.disabled,
            "source": u.source,
        },
        lambda u: (
            f"{u.name}\t{','.join(u.groups)}"
            + (" (disabled)" if u.disabled else "")
            + (f" ({u.source})" if u.source != "local" else "")
        ),
    )


def cmd_refresh_list(args: argparse.Namespace) -> None:
    tokens = _on_accounts(args, lambda accounts: accounts.list_refresh_tokens(args.user))
    for t in tokens:
        state = "revoked" if t.revoked_at else "live"
        print(
            f"{t.id}\t{t.subject}\t{t.service}\t{t.client_id}\t"
            f"{t.created_at:{TIME}}\t{t.expires_at:{TIME}}\t{state}"
        )


def cmd_refresh_revoke(args: argparse.Namespace) -> None:
    count = _on_accounts(args, lambda accounts: accounts.revoke_refresh_tokens(_actor(), args.user))
    print(f"revoked {count} refresh token(s) of {args.user}")


def cmd_ui_session_list(args: argparse.Namespace) -> None:
    sessions = _on_accounts(args, lambda accounts: accounts.list_ui_sessions(args.user))
    _show(
        sessions,
        args.json,
        lambda s: {
            "id": s.id,
            "user": s.subject,
            "backend": s.backend,
            "created_at": s.created_at.isoformat(),
            "expires_at": s.expires_at.isoformat(),
        },
        lambda s: f"{s.id}\t{s.subject}\t{s.backend}\t{s.created_at:{TIME}}\t{s.expires_at:{TIME}}",
    )


def cmd_ui_session_end(args: argparse.Namespace) -> None:
    if (args.id is None) == (args.user is None):
        raise CLIError("give a session ID or --user U (one of them)")
    if args.user is not None:
        count = _on_accounts(args, lambda accounts: accounts.end_ui_sessions(_actor(), args.user))
        print(f"ended {count} web session(s) of {args.user}")
        return
    try:
        session_id = parse_id(args.id, "web session")
    except AccountError as exc:
        raise CLIError(str(exc)) from None
    _on_accounts(args, lambda accounts: accounts.end_ui_session(_actor(), session_id))
    print(f"web session {session_id} ended")


def cmd_policy_check(args: argparse.Namespace) -> None:
    from authcore.identity import Identity, Kind
    from authcore.scope import ScopeError, parse_scopes
    from tokenserver.authz.acl import ACLPolicy
    from tokenserver.authz.acl_file import read_acl_file
    from tokenserver.authz.policy import Requester
    from tokenserver.services import build_policy

    config = _config(args)
    policy = ACLPolicy(read_acl_file(args.acl_file)) if args.acl_file else build_policy(config)
    try:
        requested = parse_scopes(args.scope)
    except ScopeError as exc:
        raise CLIError(f"--scope: {exc}") from None
    kind: Kind = "anonymous" if args.anonymous else args.kind
    if args.trust and kind != "federated":
        raise CLIError("--trust is for --kind federated")
    identity = Identity(
        "" if args.anonymous else args.user,
        kind,
        frozenset(args.group or ()),
        attributes=(("trust", args.trust),) if args.trust else (),
    )
    if not args.anonymous and not args.user:
        raise CLIError("give --user NAME (or --anonymous)")
    service = args.service or config.token.services[0]
    decisions = policy.explain(Requester(identity, service, args.ip), requested)
    width = max((len(str(d.requested)) for d in decisions), default=0)
    _show(
        decisions,
        args.json,
        lambda d: {
            "requested": str(d.requested),
            "granted": sorted(d.actions),
            "rule": d.rule,
            "reason": d.reason,
        },
        lambda d: (
            f"{d.requested!s:<{width}}  ->  {','.join(sorted(d.actions)) or 'denied':<16}"
            f"  {d.reason}"
        ),
    )


def _seconds(text: str) -> int:
    """A lifetime or look-back given on the command line, in seconds; a CLI error if none."""
    try:
        return parse_seconds(text)
    except DurationError as exc:
        raise CLIError(str(exc)) from None


def cmd_ci_create(args: argparse.Namespace) -> None:
    ttl = _seconds(args.ttl)
    _info, secret = _on_accounts(
        args,
        lambda accounts: accounts.create_ci_token(
            _actor(), args.name, args.scope, ttl, args.description or ""
        ),
    )
    # Only the secret on stdout, so `$(tokenserver ci-token create ...)` captures it.
    print(secret)


def _show_tokens(
    tokens: Sequence[Any], as_json: bool, view: type[TokenView], line: Callable[[Any, str], str]
) -> None:
    """Tokens with scopes of their own, as `view` shows them, or a line each: `line` makes
    it of the token and its fields in common (scopes, expiry, state, last use)."""
    now = utcnow()

    def common(t: Any) -> str:
        used = f"{t.last_used_at:{TIME}} {t.last_used_ip}" if t.last_used_at else "-"
        return f"{t.scopes}\t{t.expires_at:{TIME}}\t{t.state(now)}\t{used}"

    _show(
        tokens,
        as_json,
        lambda t: view.of(t, now).model_dump(mode="json"),
        lambda t: line(t, common(t)),
    )


def cmd_ci_list(args: argparse.Namespace) -> None:
    tokens = _on_accounts(args, lambda accounts: accounts.list_ci_tokens())
    _show_tokens(
        tokens, args.json, CITokenView, lambda t, common: f"{t.name}\t{common}\t{t.description}"
    )


def cmd_ci_revoke(args: argparse.Namespace) -> None:
    _on_accounts(args, lambda accounts: accounts.revoke_ci_token(_actor(), args.name))
    print(f"CI token {args.name} revoked")


def cmd_pat_create(args: argparse.Namespace) -> None:
    ttl = _seconds(args.ttl)
    _info, secret = _on_accounts(
        args,
        lambda accounts: accounts.create_personal_token(
            _actor(), args.user, args.name, args.scope, ttl
        ),
    )
    # Only the secret on stdout, as `ci-token create` prints it.
    print(secret)


def cmd_pat_list(args: argparse.Namespace) -> None:
    tokens = _on_accounts(args, lambda accounts: accounts.list_personal_tokens(args.user))
    _show_tokens(
        tokens, args.json, PersonalTokenView, lambda t, common: f"{t.owner}\t{t.name}\t{common}"
    )


def cmd_pat_revoke(args: argparse.Namespace) -> None:
    _on_accounts(
        args, lambda accounts: accounts.revoke_personal_token(_actor(), args.user, args.name)
    )
    print(f"personal token {args.name} of {args.user} revoked")


def cmd_sso_recheck(args: argparse.Namespace) -> None:
    with _administration(args) as admin:
        recheck = rechecker(admin)
        if recheck is None:
            raise CLIError("no OpenID provider is configured (sso)")
        report = asyncio.run(recheck.run(_actor(), everyone=args.all))
    if args.json:
        print(json.dumps(dataclasses.asdict(report)))
    else:
        print(
            f"rechecked {report.rechecked}, ended {report.ended}, "
            f"provider unavailable for {report.unavailable}"
        )
    if report.unavailable:
        raise CLIError("the provider could not be asked about everyone: run it again later")


def _claims(values: Sequence[str]) -> dict[str, str]:
    claims = {}
    for value in values:
        name, sep, pattern = value.partition("=")
        if not sep or not name:
            raise CLIError(f"--claim {value!r}: expected CLAIM=PATTERN")
        claims[name] = pattern
    return claims


def cmd_trust_add(args: argparse.Namespace) -> None:
    spec = TrustSpec(
        name=args.name,
        issuer=args.issuer,
        audience=args.audience,
        scopes=args.scope,
        claims=_claims(args.claim or ()),
        jwks_uri=args.jwks_uri,
        jwks_file=Path(args.jwks_file).resolve() if args.jwks_file else None,
        ca_file=Path(args.ca_file).resolve() if args.ca_file else None,
        max_age=_seconds(args.max_age),
    )
    _on_accounts(args, lambda accounts: accounts.create_trust(_actor(), spec))
    print(f"trust {args.name} added: log in as {args.name} with an ID token from {args.issuer}")


def cmd_trust_list(args: argparse.Namespace) -> None:
    trusts = _on_accounts(args, lambda accounts: accounts.list_trusts())

    def record(trust: tuple[TrustSpec, str]) -> dict[str, Any]:
        spec, source = trust
        return {
            "name": spec.name,
            "issuer": spec.issuer,
            "audience": spec.audience,
            "scopes": list(spec.scopes),
            "claims": dict(spec.claims),
            "max_age": spec.max_age,
            "source": source,
        }

    def line(trust: tuple[TrustSpec, str]) -> str:
        spec, source = trust
        claims = ",".join(f"{k}={v}" for k, v in sorted(spec.claims.items())) or "-"
        return (
            f"{spec.name}\t{spec.issuer}\taud={spec.audience}\t{' '.join(spec.scopes)}"
            f"\t{claims}\t{source}"
        )

    _show(trusts, args.json, record, line)


def cmd_trust_del(args: argparse.Namespace) -> None:
    _on_accounts(args, lambda accounts: accounts.delete_trust(_actor(), args.name))
    print(f"trust {args.name} deleted")


def cmd_audit_tail(args: argparse.Namespace) -> None:
    since = utcnow() - dt.timedelta(seconds=_seconds(args.since))
    with _administration(args) as admin:
        records = admin.audit_reader.query(
            subject=args.subject,
            outcome=args.outcome,
            action=args.action,
            since=since,
            limit=args.limit,
        )
    for r in reversed(records):  # oldest first, as a tail reads
        if args.json:
            print(json.dumps({**dataclasses.asdict(r), "at": r.at.isoformat()}))
        elif r.action == TOKEN_ACTION:
            print(
                f"{r.at:{TIME}}\t{r.outcome}\t{r.subject or '-'}\t{r.kind or '-'}"
                f"\t{r.client_ip}\t{r.service}\trequested={r.requested or '-'}"
                f"\tgranted={r.granted or '-'}" + (f"\t{r.detail}" if r.detail else "")
            )
        else:
            print(
                f"{r.at:{TIME}}\t{r.outcome}\t{r.subject or '-'}\t{r.via}"
                f"\t{r.client_ip or '-'}\t{r.action}\ttarget={r.target or '-'}"
            )


def _keys_commands(cli: CommandLine) -> None:
    keys = cli.group("keys", "signing keys", "keys")
    gen = cli.command("generate", cmd_keys_generate, "create a new signing key", keys)
    gen.add_argument("--algorithm", help="ES256 (default), ES384, ES512, RS256, RS384, RS512")
    jwks = cli.command(
        "jwks",
        cmd_keys_jwks,
        "the public keys as a JWKS, each under the kid our tokens carry "
        "(for a registry's auth.token.jwks)",
        keys,
    )
    jwks.add_argument("--output", help="write it to this file (atomically) instead of stdout")


def _user_commands(cli: CommandLine) -> None:
    user = cli.group("user", "the server's own users", "user")
    add = cli.command("add", cmd_user_add, "add a user", user)
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true")
    add.add_argument("--group", action="append", help="a group (repeatable)")
    passwd = cli.command("passwd", cmd_user_passwd, "set a user's password", user)
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    cli.command("del", cmd_user_del, "delete a user", user).add_argument("name")
    for verb, flag in (("disable", True), ("enable", False)):
        toggle = cli.command(verb, cmd_user_disable, f"{verb} a user", user)
        toggle.add_argument("name")
        toggle.set_defaults(disable=flag)
    groups = cli.command("groups", cmd_user_groups, "replace a user's groups", user)
    groups.add_argument("name")
    groups.add_argument("--group", action="append", help="a group (repeatable)")
    cli.command("list", cmd_user_list, "list users", user).add_argument(
        "--json", action="store_true"
    )


def _session_commands(cli: CommandLine) -> None:
    refresh = cli.group("refresh-token", "refresh tokens", "refresh")
    cli.command("list", cmd_refresh_list, "list refresh tokens", refresh).add_argument("--user")
    revoke = cli.command("revoke", cmd_refresh_revoke, "revoke a user's refresh tokens", refresh)
    revoke.add_argument("--user", required=True)

    sessions = cli.group("ui-session", "sessions of the admin web page", "ui_session")
    slist = cli.command("list", cmd_ui_session_list, "live web sessions", sessions)
    slist.add_argument("--user", help="only this user's (any spelling of the name)")
    slist.add_argument("--json", action="store_true")
    end = cli.command(
        "end",
        cmd_ui_session_end,
        "end one web session, or all of a user's, everywhere",
        sessions,
    )
    end.add_argument("id", nargs="?", help="the session's id (from `ui-session list`)")
    end.add_argument("--user", help="every session of this user (any spelling of the name)")


def _policy_commands(cli: CommandLine) -> None:
    policy = cli.group("policy", "access rules", "policy")
    check = cli.command(
        "check", cmd_policy_check, "show what a user would be granted, and by which rule", policy
    )
    check.add_argument("--user", help="the account name")
    check.add_argument("--anonymous", action="store_true", help="ask as an anonymous client")
    check.add_argument("--group", action="append", help="a group of the user (repeatable)")
    check.add_argument("--kind", choices=("user", "ci", "federated"), default="user")
    check.add_argument("--trust", help="the trust of a --kind federated identity")
    check.add_argument("--scope", action="append", required=True, help="a scope (repeatable)")
    check.add_argument("--service", help="the service asked for (default: the first configured)")
    check.add_argument("--ip", help="the client address, for `ip` rules")
    check.add_argument("--acl-file", type=Path, help="check these rules instead of the configured")
    check.add_argument("--json", action="store_true")


def _ci_token_commands(cli: CommandLine) -> None:
    ci = cli.group("ci-token", "CI tokens (robot accounts)", "ci")
    create = cli.command("create", cmd_ci_create, "create a token; prints its secret", ci)
    create.add_argument("name")
    create.add_argument(
        "--scope", action="append", required=True, help="e.g. repository:team/*:pull (repeatable)"
    )
    create.add_argument("--ttl", required=True, help="lifetime: 30d, 12h, 1h30m or seconds")
    create.add_argument("--description")
    listing = cli.command("list", cmd_ci_list, "list tokens (never their secrets)", ci)
    listing.add_argument("--json", action="store_true")
    cli.command("revoke", cmd_ci_revoke, "revoke a token", ci).add_argument("name")


def _personal_token_commands(cli: CommandLine) -> None:
    pat = cli.group("personal-token", "people's own tokens, made for them", "pat")
    create = cli.command(
        "create", cmd_pat_create, "create a token for a person; prints its secret", pat
    )
    create.add_argument("name")
    create.add_argument("--user", required=True, help="the person it is for (their own name)")
    create.add_argument(
        "--scope", action="append", required=True, help="e.g. repository:alice/*:pull (repeatable)"
    )
    create.add_argument("--ttl", required=True, help="lifetime: 30d, 12h, 1h30m or seconds")
    listing = cli.command("list", cmd_pat_list, "list tokens (never their secrets)", pat)
    listing.add_argument("--user", help="only this person's (any spelling of the name)")
    listing.add_argument("--json", action="store_true")
    revoke = cli.command("revoke", cmd_pat_revoke, "revoke a person's token", pat)
    revoke.add_argument("name")
    revoke.add_argument("--user", required=True, help="the person whose token it is")


def _sso_commands(cli: CommandLine) -> None:
    sso = cli.group("sso", "people of the OpenID provider", "sso")
    recheck = cli.command(
        "recheck",
        cmd_sso_recheck,
        "ask the provider about its people now; end the access of those it no longer has",
        sso,
    )
    recheck.add_argument(
        "--all", action="store_true", help="everyone it can be asked about, not only those due"
    )
    recheck.add_argument("--json", action="store_true")


def _trust_commands(cli: CommandLine) -> None:
    trust = cli.group("trust", "federation trusts (keyless CI with OIDC ID tokens)", "trust")
    add = cli.command("add", cmd_trust_add, "trust an issuer's ID tokens", trust)
    add.add_argument("name", help="the username pipelines log in with")
    add.add_argument("--issuer", required=True, help="the tokens' iss, an https:// URL")
    add.add_argument("--audience", required=True, help="the aud the tokens must carry")
    add.add_argument(
        "--scope", action="append", required=True, help="e.g. repository:team/app:pull,push"
    )
    add.add_argument("--claim", action="append", help="CLAIM=PATTERN, all must match (repeatable)")
    add.add_argument("--jwks-uri", help="the issuer's JWKS (default: by discovery)")
    add.add_argument("--jwks-file", help="a local JWKS instead of fetching one")
    add.add_argument("--ca-file", help="PEM CAs for the issuer's HTTPS")
    add.add_argument("--max-age", default="1h", help="oldest iat accepted (default 1h)")
    cli.command("list", cmd_trust_list, "list trusts", trust).add_argument(
        "--json", action="store_true"
    )
    cli.command("del", cmd_trust_del, "delete a trust", trust).add_argument("name")


def _audit_commands(cli: CommandLine) -> None:
    audit = cli.group("audit", "the audit trail", "audit")
    tail = cli.command(
        "tail", cmd_audit_tail, "recent token requests and admin acts, oldest first", audit
    )
    tail.add_argument("--since", default="1h", help="how far back: 1h, 30m, 7d (default 1h)")
    tail.add_argument("--subject")
    tail.add_argument("--outcome")
    tail.add_argument("--action", help="token, user.create, ci_token.revoke, ...")
    tail.add_argument("--limit", type=int, default=1000)
    tail.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    cli = CommandLine("tokenserver", __doc__, "TOKENSERVER_CONFIG")
    serve = cli.command("serve", cmd_serve, "run the token server")
    serve.add_argument("--addr", help="listen address HOST:PORT (overrides server.addr)")
    for add_commands in (
        _keys_commands,
        _user_commands,
        _session_commands,
        _policy_commands,
        _ci_token_commands,
        _personal_token_commands,
        _sso_commands,
        _trust_commands,
        _audit_commands,
    ):
        add_commands(cli)
    return cli.parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv, (CLIError, ConfigError, KeysError))


if __name__ == "__main__":
    sys.exit(main())
