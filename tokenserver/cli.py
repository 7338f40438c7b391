"""The `tokenserver` command line."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from pydantic import ValidationError

from authcore.cli import run
from authcore.settings import find_config
from tokenserver import durations
from tokenserver.accounts import AccountError, Accounts, parse_id
from tokenserver.audit import TOKEN_ACTION, Actor
from tokenserver.config import Config, ConfigError, load_config
from tokenserver.federation.trusts import TrustSpec
from tokenserver.keys import KeysError, generate_key, jwks_document, load_public_keys, write_jwks
from tokenserver.services import Administration, open_administration, utcnow

__all__ = ["main"]


class CLIError(Exception):
    pass


def _config(args: argparse.Namespace) -> Config:
    path, dev = find_config(args.config, "TOKENSERVER_CONFIG", "tokenserver.yaml")
    if dev:
        print(f"tokenserver: using the dev configuration {path}", file=sys.stderr)
    return load_config(path)


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


@contextmanager
def _accounts(args: argparse.Namespace) -> Iterator[Accounts]:
    """The accounts service; a change it refuses is the command's error."""
    with _administration(args) as admin:
        try:
            yield admin.accounts
        except AccountError as exc:
            raise CLIError(str(exc)) from None


def _read_password(args: argparse.Namespace) -> str:
    if not args.password_stdin:
        raise CLIError("give the password on standard input with --password-stdin")
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


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
    with _accounts(args) as accounts:
        accounts.create_user(_actor(), args.name, password, args.group or ())
    print(f"user {args.name} added")


def cmd_user_passwd(args: argparse.Namespace) -> None:
    password = _read_password(args)
    with _accounts(args) as accounts:
        ended = accounts.set_password(_actor(), args.name, password)
    print(
        f"password of {args.name} changed; {ended.refresh_tokens} refresh token(s) revoked,"
        f" {ended.ui_sessions} web session(s) ended"
    )


def cmd_user_del(args: argparse.Namespace) -> None:
    with _accounts(args) as accounts:
        ended = accounts.delete_user(_actor(), args.name)
    print(
        f"user {args.name} deleted; {ended.refresh_tokens} refresh token(s) revoked,"
        f" {ended.ui_sessions} web session(s) ended"
    )


def cmd_user_disable(args: argparse.Namespace) -> None:
    with _accounts(args) as accounts:
        accounts.set_disabled(_actor(), args.name, args.disable)
    print(f"user {args.name} {'disabled' if args.disable else 'enabled'}")


def cmd_user_groups(args: argparse.Namespace) -> None:
    with _accounts(args) as accounts:
        user = accounts.set_groups(_actor(), args.name, args.group or ())
    print(f"groups of {args.name}: {' '.join(user.groups)}")


def cmd_user_list(args: argparse.Namespace) -> None:
    with _accounts(args) as accounts:
        users = accounts.list_users()
    if args.json:
        print(
            json.dumps(
                [{"name": u.name, "groups": list(u.groups), "disabled": u.disabled} for u in users]
            )
        )
        return
    for u in users:
        flags = " (disabled)" if u.disabled else ""
        print(f"{u.name}\t{','.join(u.groups)}{flags}")


def cmd_refresh_list(args: argparse.Namespace) -> None:
    with _accounts(args) as accounts:
        tokens = accounts.list_refresh_tokens(args.user)
    for t in tokens:
        state = "revoked" if t.revoked_at else "live"
        print(
            f"{t.id}\t{t.subject}\t{t.service}\t{t.client_id}\t"
            f"{t.created_at:%Y-%m-%dT%H:%M:%SZ}\t{t.expires_at:%Y-%m-%dT%H:%M:%SZ}\t{state}"
        )


def cmd_refresh_revoke(args: argparse.Namespace) -> None:
    with _accounts(args) as accounts:
        count = accounts.revoke_refresh_tokens(_actor(), args.user)
    print(f"revoked {count} refresh token(s) of {args.user}")


def cmd_ui_session_list(args: argparse.Namespace) -> None:
    with _accounts(args) as accounts:
        sessions = accounts.list_ui_sessions(args.user)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": s.id,
                        "user": s.subject,
                        "backend": s.backend,
                        "created_at": s.created_at.isoformat(),
                        "expires_at": s.expires_at.isoformat(),
                    }
                    for s in sessions
                ]
            )
        )
        return
    for s in sessions:
        print(
            f"{s.id}\t{s.subject}\t{s.backend}\t"
            f"{s.created_at:%Y-%m-%dT%H:%M:%SZ}\t{s.expires_at:%Y-%m-%dT%H:%M:%SZ}"
        )


def cmd_ui_session_end(args: argparse.Namespace) -> None:
    if (args.id is None) == (args.user is None):
        raise CLIError("give a session ID or --user U (one of them)")
    if args.user is not None:
        with _accounts(args) as accounts:
            count = accounts.end_ui_sessions(_actor(), args.user)
        print(f"ended {count} web session(s) of {args.user}")
        return
    try:
        session_id = parse_id(args.id, "web session")
    except AccountError as exc:
        raise CLIError(str(exc)) from None
    with _accounts(args) as accounts:
        accounts.end_ui_session(_actor(), session_id)
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
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "requested": str(d.requested),
                        "granted": sorted(d.actions),
                        "rule": d.rule,
                        "reason": d.reason,
                    }
                    for d in decisions
                ]
            )
        )
        return
    width = max((len(str(d.requested)) for d in decisions), default=0)
    for d in decisions:
        granted = ",".join(sorted(d.actions)) or "denied"
        print(f"{d.requested!s:<{width}}  ->  {granted:<16}  {d.reason}")


def parse_duration(text: str) -> int:
    try:
        return durations.parse_duration(text)
    except durations.DurationError as exc:
        raise CLIError(str(exc)) from None


def cmd_ci_create(args: argparse.Namespace) -> None:
    ttl = parse_duration(args.ttl)
    with _accounts(args) as accounts:
        _info, secret = accounts.create_ci_token(
            _actor(), args.name, args.scope, ttl, args.description or ""
        )
    # Only the secret on stdout, so `$(tokenserver ci-token create ...)` captures it.
    print(secret)


def cmd_ci_list(args: argparse.Namespace) -> None:
    now = utcnow()
    with _accounts(args) as accounts:
        tokens = accounts.list_ci_tokens()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": t.name,
                        "scopes": [str(p) for p in t.scopes.patterns],
                        "description": t.description,
                        "expires_at": t.expires_at.isoformat(),
                        "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                        "last_used_ip": t.last_used_ip,
                        "state": t.state(now),
                    }
                    for t in tokens
                ]
            )
        )
        return
    for t in tokens:
        used = f"{t.last_used_at:%Y-%m-%dT%H:%M:%SZ} {t.last_used_ip}" if t.last_used_at else "-"
        print(
            f"{t.name}\t{t.scopes}\t{t.expires_at:%Y-%m-%dT%H:%M:%SZ}\t{t.state(now)}\t{used}"
            f"\t{t.description}"
        )


def cmd_ci_revoke(args: argparse.Namespace) -> None:
    with _accounts(args) as accounts:
        accounts.revoke_ci_token(_actor(), args.name)
    print(f"CI token {args.name} revoked")


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
        max_age=parse_duration(args.max_age),
    )
    with _accounts(args) as accounts:
        accounts.create_trust(_actor(), spec)
    print(f"trust {args.name} added: log in as {args.name} with an ID token from {args.issuer}")


def cmd_trust_list(args: argparse.Namespace) -> None:
    with _accounts(args) as accounts:
        trusts = accounts.list_trusts()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": spec.name,
                        "issuer": spec.issuer,
                        "audience": spec.audience,
                        "scopes": list(spec.scopes),
                        "claims": dict(spec.claims),
                        "max_age": spec.max_age,
                        "source": source,
                    }
                    for spec, source in trusts
                ]
            )
        )
        return
    for spec, source in trusts:
        claims = ",".join(f"{k}={v}" for k, v in sorted(spec.claims.items())) or "-"
        print(
            f"{spec.name}\t{spec.issuer}\taud={spec.audience}\t{' '.join(spec.scopes)}"
            f"\t{claims}\t{source}"
        )


def cmd_trust_del(args: argparse.Namespace) -> None:
    with _accounts(args) as accounts:
        accounts.delete_trust(_actor(), args.name)
    print(f"trust {args.name} deleted")


def cmd_audit_tail(args: argparse.Namespace) -> None:
    since = utcnow() - dt.timedelta(seconds=parse_duration(args.since))
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
                f"{r.at:%Y-%m-%dT%H:%M:%SZ}\t{r.outcome}\t{r.subject or '-'}\t{r.kind or '-'}"
                f"\t{r.client_ip}\t{r.service}\trequested={r.requested or '-'}"
                f"\tgranted={r.granted or '-'}" + (f"\t{r.detail}" if r.detail else "")
            )
        else:
            print(
                f"{r.at:%Y-%m-%dT%H:%M:%SZ}\t{r.outcome}\t{r.subject or '-'}\t{r.via}"
                f"\t{r.client_ip or '-'}\t{r.action}\ttarget={r.target or '-'}"
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenserver", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML configuration file (or $TOKENSERVER_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the token server")
    serve.add_argument("--addr", help="listen address HOST:PORT (overrides server.addr)")
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys", required=True)
    gen = keys.add_parser("generate", parents=[common], help="create a new signing key")
    gen.add_argument("--algorithm", help="ES256 (default), ES384, ES512, RS256, RS384, RS512")
    gen.set_defaults(func=cmd_keys_generate)
    jwks = keys.add_parser(
        "jwks",
        parents=[common],
        help="the public keys as a JWKS, each under the kid our tokens carry "
        "(for a registry's auth.token.jwks)",
    )
    jwks.add_argument("--output", help="write it to this file (atomically) instead of stdout")
    jwks.set_defaults(func=cmd_keys_jwks)

    user = sub.add_parser("user", help="the server's own users").add_subparsers(
        dest="user", required=True
    )
    add = user.add_parser("add", parents=[common], help="add a user")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true")
    add.add_argument("--group", action="append", help="a group (repeatable)")
    add.set_defaults(func=cmd_user_add)
    passwd = user.add_parser("passwd", parents=[common], help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(func=cmd_user_passwd)
    delete = user.add_parser("del", parents=[common], help="delete a user")
    delete.add_argument("name")
    delete.set_defaults(func=cmd_user_del)
    for verb, flag in (("disable", True), ("enable", False)):
        p = user.add_parser(verb, parents=[common], help=f"{verb} a user")
        p.add_argument("name")
        p.set_defaults(func=cmd_user_disable, disable=flag)
    groups = user.add_parser("groups", parents=[common], help="replace a user's groups")
    groups.add_argument("name")
    groups.add_argument("--group", action="append", help="a group (repeatable)")
    groups.set_defaults(func=cmd_user_groups)
    lst = user.add_parser("list", parents=[common], help="list users")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_user_list)

    refresh = sub.add_parser("refresh-token", help="refresh tokens").add_subparsers(
        dest="refresh", required=True
    )
    rlist = refresh.add_parser("list", parents=[common], help="list refresh tokens")
    rlist.add_argument("--user")
    rlist.set_defaults(func=cmd_refresh_list)
    revoke = refresh.add_parser("revoke", parents=[common], help="revoke a user's refresh tokens")
    revoke.add_argument("--user", required=True)
    revoke.set_defaults(func=cmd_refresh_revoke)

    sessions = sub.add_parser("ui-session", help="sessions of the admin web page").add_subparsers(
        dest="ui_session", required=True
    )
    slist = sessions.add_parser("list", parents=[common], help="live web sessions")
    slist.add_argument("--user", help="only this user's (any spelling of the name)")
    slist.add_argument("--json", action="store_true")
    slist.set_defaults(func=cmd_ui_session_list)
    send = sessions.add_parser(
        "end", parents=[common], help="end one web session, or all of a user's, everywhere"
    )
    send.add_argument("id", nargs="?", help="the session's id (from `ui-session list`)")
    send.add_argument("--user", help="every session of this user (any spelling of the name)")
    send.set_defaults(func=cmd_ui_session_end)

    policy = sub.add_parser("policy", help="access rules").add_subparsers(
        dest="policy", required=True
    )
    check = policy.add_parser(
        "check", parents=[common], help="show what a user would be granted, and by which rule"
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
    check.set_defaults(func=cmd_policy_check)

    ci = sub.add_parser("ci-token", help="CI tokens (robot accounts)").add_subparsers(
        dest="ci", required=True
    )
    create = ci.add_parser("create", parents=[common], help="create a token; prints its secret")
    create.add_argument("name")
    create.add_argument(
        "--scope", action="append", required=True, help="e.g. repository:team/*:pull (repeatable)"
    )
    create.add_argument("--ttl", required=True, help="lifetime: 30d, 12h, 90m or seconds")
    create.add_argument("--description")
    create.set_defaults(func=cmd_ci_create)
    cilist = ci.add_parser("list", parents=[common], help="list tokens (never their secrets)")
    cilist.add_argument("--json", action="store_true")
    cilist.set_defaults(func=cmd_ci_list)
    cirevoke = ci.add_parser("revoke", parents=[common], help="revoke a token")
    cirevoke.add_argument("name")
    cirevoke.set_defaults(func=cmd_ci_revoke)

    trust = sub.add_parser(
        "trust", help="federation trusts (keyless CI with OIDC ID tokens)"
    ).add_subparsers(dest="trust", required=True)
    tadd = trust.add_parser("add", parents=[common], help="trust an issuer's ID tokens")
    tadd.add_argument("name", help="the username pipelines log in with")
    tadd.add_argument("--issuer", required=True, help="the tokens' iss, an https:// URL")
    tadd.add_argument("--audience", required=True, help="the aud the tokens must carry")
    tadd.add_argument(
        "--scope", action="append", required=True, help="e.g. repository:team/app:pull,push"
    )
    tadd.add_argument("--claim", action="append", help="CLAIM=PATTERN, all must match (repeatable)")
    tadd.add_argument("--jwks-uri", help="the issuer's JWKS (default: by discovery)")
    tadd.add_argument("--jwks-file", help="a local JWKS instead of fetching one")
    tadd.add_argument("--ca-file", help="PEM CAs for the issuer's HTTPS")
    tadd.add_argument("--max-age", default="1h", help="oldest iat accepted (default 1h)")
    tadd.set_defaults(func=cmd_trust_add)
    tlist = trust.add_parser("list", parents=[common], help="list trusts")
    tlist.add_argument("--json", action="store_true")
    tlist.set_defaults(func=cmd_trust_list)
    tdel = trust.add_parser("del", parents=[common], help="delete a trust")
    tdel.add_argument("name")
    tdel.set_defaults(func=cmd_trust_del)

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit", required=True
    )
    tail = audit.add_parser(
        "tail", parents=[common], help="recent token requests and admin acts, oldest first"
    )
    tail.add_argument("--since", default="1h", help="how far back: 1h, 30m, 7d (default 1h)")
    tail.add_argument("--subject")
    tail.add_argument("--outcome")
    tail.add_argument("--action", help="token, user.create, ci_token.revoke, ...")
    tail.add_argument("--limit", type=int, default=1000)
    tail.add_argument("--json", action="store_true")
    tail.set_defaults(func=cmd_audit_tail)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv, (CLIError, ConfigError, KeysError))


if __name__ == "__main__":
    sys.exit(main())
