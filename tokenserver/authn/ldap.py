"""Users from an LDAP directory.

A lookup binds as the service account and searches the user with the
configured filter (the username escaped per RFC 4515, so `*` or `)` cannot
widen the search), then collects the user's groups, each known by its `cn`:
from an attribute of the entry (`memberOf`) or from a group search
(`(&(objectClass=groupOfNames)(member={dn}))`). Lookups are cached for
`ldap.cache_ttl`, so the warm path does not ask the directory on every
request. The password check binds as the found DN; an empty password never
gets that far (a simple bind with no password is anonymous and always
"succeeds").

The account's name is the entry's own value of `ldap.username_attribute`
(`uid`), never the text the client typed: directories match case-insensitively,
and `MALLORY` must not become a subject that rules for `mallory` miss.

Every directory operation is bounded by `ldap.timeout`; a directory that is
down, refuses the service account or does not answer is `BackendUnavailable`
(503 to the client), never a wrong password.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import parse_dn

from authcore.cache import Cache
from tokenserver.authn.base import MISS, Account, BackendUnavailable, BadCredentials, Peeked
from tokenserver.config import LDAPConfig
from tokenserver.secret import Secret

__all__ = ["LDAPBackend", "escape_filter_value"]

log = logging.getLogger(__name__)

MAX_USERNAME_LENGTH = 256
MAX_GROUPS = 1000
MAX_CACHED = 10_000
# Result codes of a user bind that mean "the directory could not answer",
# not "no": busy, unavailable, and the catch-all `other`.
_UNAVAILABLE_CODES = frozenset({51, 52, 80})
_INVALID_CREDENTIALS = 49


def escape_filter_value(value: str) -> str:
    """RFC 4515 escaping of an assertion value: `*`, `(`, `)`, `\\` and NUL."""
    return "".join(f"\\{ord(c):02x}" if c in "*()\\\x00" else c for c in value)


def _acceptable_username(username: str) -> bool:
    return (
        0 < len(username) <= MAX_USERNAME_LENGTH
        and username == username.strip()
        and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in username)
    )


def _cn_of(dn: str) -> str | None:
    try:
        attribute, value, _sep = parse_dn(dn, escape=False, strip=True)[0]
    except (LDAPException, IndexError, ValueError):
        return None
    return value if attribute.lower() == "cn" and value else None


def _casefold_lookup(found: dict[str, object], wanted: list[str]) -> dict[str, object]:
    by_lower = {name.lower(): value for name, value in found.items()}
    return {name: by_lower[name.lower()] for name in wanted if name.lower() in by_lower}


@dataclass(frozen=True)
class _Found:
    dn: str
    name: str
    groups: frozenset[str]


def _own_name(values: list[str], typed: str) -> str | None:
    """The directory's spelling of the login name: the value the typed one folds to, else the only one."""
    usable = [v for v in values if _acceptable_username(v)]
    for value in usable:
        if value.casefold() == typed.casefold():
            return value
    return usable[0] if len(usable) == 1 else None


class _Pool:
    """At most `size` connections, each used by one thread at a time.

    A connection that raised is closed, not returned: its state is unknown.
    """

    def __init__(self, connect: Callable[[], ldap3.Connection], size: int, timeout: float) -> None:
        self._connect = connect
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(size)
        self._idle: queue.LifoQueue[ldap3.Connection] = queue.LifoQueue()

    @contextmanager
    def connection(self) -> Iterator[ldap3.Connection]:
        if not self._slots.acquire(timeout=self._timeout):
            raise BackendUnavailable("every LDAP connection is busy")
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            try:
                yield conn
            except BaseException:
                _close(conn)
                raise
            self._idle.put(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                _close(self._idle.get_nowait())
            except queue.Empty:
                return


def _close(conn: ldap3.Connection) -> None:
    with suppress(LDAPException, OSError):
        conn.unbind()


class LDAPBackend:
    name = "ldap"
    remember_checks = True
    # A bind costs whatever the directory's hashing does, often far less than
    # the decoy an unknown name gets: a refused bind gets the decoy too.
    checks_bcrypt = False

    def __init__(self, config: LDAPConfig, clock: Callable[[], float] = time.monotonic) -> None:
        if config.url is None:
            raise ValueError("ldap.url is not set")
        self._config = config
        self._clock = clock
        self._bind_password = config.bind_password_value()
        self._server = self._make_server(config.url)
        # Searches run as the service account; password checks rebind their
        # connection as the user, so they get a pool of their own.
        self._search_pool = _Pool(self._service_connection, config.pool_size, config.timeout)
        self._check_pool = _Pool(self._check_connection, config.pool_size, config.timeout)
        # None is remembered too: no such entry.
        self._cache: Cache[str, _Found | None] = Cache(
            MAX_CACHED, ttl=config.cache_ttl, clock=clock
        )

    def _make_server(self, url: str) -> ldap3.Server:
        parts = urlsplit(url)
        secure = parts.scheme == "ldaps"
        tls = None
        if secure or self._config.start_tls:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=str(self._config.ca_file) if self._config.ca_file else None,
                version=ssl.PROTOCOL_TLS_CLIENT,
            )
        return ldap3.Server(
            parts.hostname or "",
            port=parts.port or (636 if secure else 389),
            use_ssl=secure,
            tls=tls,
            connect_timeout=self._config.timeout,
            get_info=ldap3.NONE,
        )

    def _open(self, user: str | None, password: str | None) -> ldap3.Connection:
        conn = ldap3.Connection(
            self._server,
            user=user,
            password=password,
            authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
            receive_timeout=self._config.timeout,
            read_only=True,
            raise_exceptions=False,
            auto_referrals=False,
        )
        try:
            conn.open(read_server_info=False)
            if self._config.start_tls and not conn.start_tls(read_server_info=False):
                raise BackendUnavailable(f"LDAP StartTLS refused: {conn.result.get('description')}")
        except LDAPException as exc:
            _close(conn)
            raise BackendUnavailable(
                f"cannot reach the LDAP server: {type(exc).__name__}"
            ) from None
        except BackendUnavailable:
            _close(conn)
            raise
        return conn

    def _service_connection(self) -> ldap3.Connection:
        conn = self._open(self._config.bind_dn, self._bind_password)
        try:
            bound = conn.bind(read_server_info=False)
        except LDAPException as exc:
            _close(conn)
            raise BackendUnavailable(f"LDAP service bind failed: {type(exc).__name__}") from None
        if not bound:
            _close(conn)
            # A refused service account is a configuration problem, not the user's.
            log.error(
                "LDAP service bind refused",
                extra={"bind_dn": self._config.bind_dn, "result": conn.result.get("description")},
            )
            raise BackendUnavailable("LDAP service bind refused")
        return conn

    def _check_connection(self) -> ldap3.Connection:
        return self._open(None, None)

    # -- lookup ---------------------------------------------------------

    def lookup(self, username: str) -> Account | None:
        if not _acceptable_username(username):
            return None
        config = self._config
        search_filter = config.user_filter.replace("{username}", escape_filter_value(username))
        return self._account(self._cached("login", search_filter, username))

    def peek(self, username: str) -> Peeked:
        if not _acceptable_username(username):
            return None
        found = self._cache.get(f"login\x00{username}", MISS)
        return MISS if found is MISS else self._account(found)

    def account(self, subject: str) -> Account | None:
        """The entry whose own login name is `subject`, if the login filter admits it.

        The filter's `{username}` becomes `*`, so its other conditions (object
        classes, group membership) still hold.
        """
        if not _acceptable_username(subject):
            return None
        config = self._config
        search_filter = (
            f"(&{config.user_filter.replace('{username}', '*')}"
            f"({config.username_attribute}={escape_filter_value(subject)}))"
        )
        found = self._cached("subject", search_filter, subject)
        return self._account(found) if found is not None and found.name == subject else None

    @staticmethod
    def _account(found: _Found | None) -> Account | None:
        if found is None:
            return None
        return Account(found.name, found.groups, fingerprint=found.dn)

    def _cached(self, purpose: str, search_filter: str, typed: str) -> _Found | None:
        key = f"{purpose}\x00{typed}"
        now = self._clock()
        cached = self._cache.get(key, MISS)
        if cached is not MISS:
            return cached
        found = self._search(search_filter, typed)
        if self._config.cache_ttl > 0:
            # Good for the ttl from when it was asked, not from when the answer came.
            self._cache.put(key, found, since=now)
        return found

    def _search(self, search_filter: str, username: str) -> _Found | None:
        config = self._config
        wanted = [config.username_attribute]
        if config.group_attribute:
            wanted.append(config.group_attribute)
        try:
            with self._search_pool.connection() as conn:
                entries = self._entries(conn, config.base_dn, search_filter, wanted, 2)
                if not entries:
                    return None
                if len(entries) > 1:
                    log.warning("LDAP user filter matches more than one entry; login refused")
                    raise BadCredentials("ambiguous directory entry")
                dn, attributes = entries[0]
                name = _own_name(attributes.get(config.username_attribute, []), username)
                if name is None:
                    log.warning(
                        "LDAP entry has no usable login name; login refused",
                        extra={"attribute": config.username_attribute},
                    )
                    raise BadCredentials("directory entry without a login name")
                if config.group_filter:
                    groups = self._group_search(conn, dn, name)
                else:
                    values = attributes.get(config.group_attribute or "", [])
                    groups = {cn for v in values[:MAX_GROUPS] if (cn := _cn_of(v))}
        except LDAPException as exc:
            raise BackendUnavailable(f"LDAP search failed: {type(exc).__name__}") from None
        return _Found(dn, name, frozenset(groups))

    def _group_search(self, conn: ldap3.Connection, dn: str, username: str) -> set[str]:
        config = self._config
        assert config.group_filter is not None
        search_filter = config.group_filter.replace("{dn}", escape_filter_value(dn)).replace(
            "{username}", escape_filter_value(username)
        )
        base = config.group_base_dn or config.base_dn
        groups = set()
        for dn_, attributes in self._entries(conn, base, search_filter, ["cn"], MAX_GROUPS):
            cns = attributes.get("cn") or []
            name = cns[0] if cns else _cn_of(dn_)
            if name:
                groups.add(name)
        return groups

    def _entries(
        self,
        conn: ldap3.Connection,
        base: str,
        search_filter: str,
        attributes: list[str],
        limit: int,
    ) -> list[tuple[str, dict[str, list[str]]]]:
        conn.search(
            base,
            search_filter,
            search_scope=ldap3.SUBTREE,
            attributes=attributes,
            size_limit=limit,
            time_limit=self._config.timeout,
        )
        code = conn.result.get("result")
        # 4 is sizeLimitExceeded: the entries up to the limit are there.
        if code not in (0, 4):
            raise BackendUnavailable(f"LDAP search refused: {conn.result.get('description')}")
        entries = []
        for r in conn.response or ():
            if r.get("type") != "searchResEntry":
                continue
            values = {
                # Names as configured, whatever case the directory answers in.
                name: [str(v) for v in (found if isinstance(found, list) else [found])]
                for name, found in _casefold_lookup(r.get("attributes") or {}, attributes).items()
            }
            entries.append((str(r["dn"]), values))
        return entries

    # -- check ----------------------------------------------------------

    def wants(self, password: Secret) -> bool:
        return True

    def check(self, account: Account, password: Secret) -> Account | None:
        secret = password.reveal()
        if not secret:
            # An empty password makes a simple bind anonymous: never a login.
            return None
        try:
            with self._check_pool.connection() as conn:
                ok = conn.rebind(user=account.fingerprint, password=secret, read_server_info=False)
                code = conn.result.get("result")
        except LDAPException as exc:
            raise BackendUnavailable(f"LDAP bind failed: {type(exc).__name__}") from None
        if ok and code == 0:
            return account
        if code in _UNAVAILABLE_CODES:
            raise BackendUnavailable(f"LDAP bind not answered: {conn.result.get('description')}")
        return None

    def close(self) -> None:
        self._search_pool.close()
        self._check_pool.close()
