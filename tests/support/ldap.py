"""A real OpenLDAP server for LDAP-login tests, and a server that never answers.

`Slapd` runs the system slapd from its own slapd.conf in a temp dir, with a
fixed little directory (people, groups, a service account), memberOf kept up
to date for groupOfNames, and ACLs like a locked-down site: nobody reads
passwords, anonymous clients may only bind, the service account reads
everything and a user reads their own entry. Tests add their own users and
groups through its methods, bound as the rootdn with ldap3.

`SilentServer` accepts TCP connections and never sends a byte, for client
timeouts without any LDAP server at all.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import os
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPNoSuchObjectResult
from ldap3.utils.conv import escape_filter_chars

from tests.support.certs import write_self_signed
from tests.support.peers import LOOPBACK, Peer, free_port, pid_alive, require_binary, short_tempdir
from tokenserver.authn.ldap import LDAPBackend
from tokenserver.config import LDAPConfig

__all__ = ["EMPTY_GROUP_MEMBER", "SilentServer", "Slapd", "escape_dn_value", "ssha"]

SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
MODULE_DIR = Path("/usr/lib/ldap")
# mdb maps its whole file up front; a test directory needs very little.
MDB_MAXSIZE = 16 * 1024 * 1024

BASE_DN = "dc=example,dc=test"
ADMIN_DN = f"cn=admin,{BASE_DN}"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
SERVICES_DN = f"ou=services,{BASE_DN}"
SERVICE_DN = f"cn=tokenserver,{SERVICES_DN}"
# groupOfNames must have a member: an empty group lists this DN, which no entry has.
EMPTY_GROUP_MEMBER = f"cn=nobody,{BASE_DN}"

# RFC 4514 section 2.4: characters escaped anywhere in an attribute value of a DN.
DN_SPECIALS = frozenset('\\,+"<>;=')
STATE_STOPPED = "T"
SIGNAL_WAIT = 5.0
CLIENT_TIMEOUT = 5


def escape_dn_value(value: str) -> str:
    """`value` escaped for use as an RDN value (RFC 4514); `*` and `(` need no escaping there."""
    if not value:
        raise ValueError("an RDN value cannot be empty")
    escaped = "".join(
        "\\00" if char == "\0" else "\\" + char if char in DN_SPECIALS else char for char in value
    )
    if escaped[0] in "# ":
        escaped = "\\" + escaped
    if len(value) > 1 and value[-1] == " ":
        escaped = escaped[:-1] + "\\ "
    return escaped


def ssha(password: str) -> str:
    """`password` as a salted SHA-1 `{SSHA}` userPassword value, as slappasswd makes it."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - {SSHA} is SHA-1
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def process_state(pid: int) -> str | None:
    """The one-letter state of `pid` from /proc (R, S, T, …), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def wait_state(pid: int, stopped: bool, timeout: float = SIGNAL_WAIT) -> None:
    """Wait until SIGSTOP or SIGCONT has taken effect, so callers never race the kernel."""
    deadline = time.monotonic() + timeout
    while (process_state(pid) == STATE_STOPPED) != stopped:
        if time.monotonic() > deadline or not pid_alive(pid):
            raise RuntimeError(f"process {pid} did not {'stop' if stopped else 'continue'}")
        time.sleep(0.01)


class Slapd(Peer):
    """OpenLDAP's slapd on a free loopback port with suffix dc=example,dc=test.

    With `tls=True` it also serves ldaps:// on a second port and StartTLS on
    the ldap:// port, with a self-signed certificate for 127.0.0.1 that is
    `ca_file`. Without `tmpdir` it makes a short one in /tmp and removes it on
    `stop()`; a restart on the same directory keeps the data.
    """

    name = "slapd"
    base_dn = BASE_DN
    admin_dn = ADMIN_DN
    people_dn = PEOPLE_DN
    groups_dn = GROUPS_DN
    service_dn = SERVICE_DN
    empty_group_member = EMPTY_GROUP_MEMBER

    def __init__(self, tmpdir: str | Path | None = None, *, tls: bool = False) -> None:
        self.binary = require_binary("slapd")
        self.owns_dir = tmpdir is None
        super().__init__(short_tempdir("ld") if tmpdir is None else tmpdir)
        self.tls = tls
        self.port = free_port()
        self.ldaps_port = free_port() if tls else None
        self.config_path = self.workdir / "slapd.conf"
        self.data_dir = self.workdir / "data"
        self.cert_file = self.workdir / "tls.crt"
        self.key_file = self.workdir / "tls.key"
        self.admin_password = f"admin-{secrets.token_hex(8)}"
        self.service_password = f"service-{secrets.token_hex(8)}"
        self.is_paused = False

    @property
    def url(self) -> str:
        return f"ldap://{LOOPBACK}:{self.port}"

    @property
    def ldaps_url(self) -> str | None:
        return None if self.ldaps_port is None else f"ldaps://{LOOPBACK}:{self.ldaps_port}"

    @property
    def ca_file(self) -> Path | None:
        """The self-signed server certificate, which clients trust as their CA."""
        return self.cert_file if self.tls else None

    def user_dn(self, uid: str) -> str:
        return f"uid={escape_dn_value(uid)},{PEOPLE_DN}"

    def group_dn(self, cn: str) -> str:
        return f"cn={escape_dn_value(cn)},{GROUPS_DN}"

    def config(self) -> str:
        lines = [f'include "{SCHEMA_DIR / schema}.schema"' for schema in SCHEMAS]
        lines += [
            f'modulepath "{MODULE_DIR}"',
            "moduleload back_mdb",
            "moduleload memberof",
            "moduleload refint",
            f'pidfile "{self.workdir / "slapd.pid"}"',
            f'argsfile "{self.workdir / "slapd.args"}"',
        ]
        if self.tls:
            lines += [
                f'TLSCertificateFile "{self.cert_file}"',
                f'TLSCertificateKeyFile "{self.key_file}"',
            ]
        lines += [
            "",
            "database mdb",
            f"maxsize {MDB_MAXSIZE}",
            f'suffix "{BASE_DN}"',
            f'rootdn "{ADMIN_DN}"',
            f"rootpw {ssha(self.admin_password)}",
            f'directory "{self.data_dir}"',
            # Anonymous clients may bind (that is how users log in) but not search
            # or read this database; the root DSE (a frontend entry) stays readable.
            "require authc",
            "",
            "overlay memberof",
            "memberof-group-oc groupOfNames",
            "memberof-member-ad member",
            "memberof-memberof-ad memberOf",
            "memberof-refint TRUE",
            "",
            # memberof-refint cannot empty a groupOfNames (member is required);
            # refint can, putting the placeholder in, but only after the delete
            # has returned. `delete_user` therefore cleans up its groups itself.
            "overlay refint",
            "refint_attributes member",
            f'refint_nothing "{EMPTY_GROUP_MEMBER}"',
            "",
            "access to attrs=userPassword",
            "  by anonymous auth",
            "  by self =xw",
            "  by * none",
            # A user may search from ou=people and then sees only their own entry.
            f'access to dn.base="{PEOPLE_DN}" attrs=entry',
            f'  by dn.exact="{SERVICE_DN}" read',
            "  by users search",
            "  by * none",
            "access to *",
            f'  by dn.exact="{SERVICE_DN}" read',
            "  by self read",
            "  by * none",
        ]
        return "\n".join(lines) + "\n"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.tls and not self.cert_file.exists():
            write_self_signed(self.workdir, ip=LOOPBACK)
        self.config_path.write_text(self.config())

    def argv(self) -> list[str]:
        urls = [f"{self.url}/"]
        if self.ldaps_url is not None:
            urls.append(f"{self.ldaps_url}/")
        # -d keeps slapd in the foreground, logging to stderr; "stats" logs
        # each connection and operation with its result, not passwords.
        return [self.binary, "-f", str(self.config_path), "-h", " ".join(urls), "-d", "stats"]

    def connection(self, dn: str | None, password: str | None) -> ldap3.Connection:
        """An ldap3 connection bound as `dn` (an anonymous bind when None) that raises on errors."""
        server = ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=CLIENT_TIMEOUT)
        return ldap3.Connection(
            server,
            user=dn,
            password=password,
            auto_bind=ldap3.AUTO_BIND_NO_TLS,
            raise_exceptions=True,
            receive_timeout=CLIENT_TIMEOUT,
        )

    @contextlib.contextmanager
    def _admin(self) -> Iterator[ldap3.Connection]:
        conn = self.connection(ADMIN_DN, self.admin_password)
        try:
            yield conn
        finally:
            conn.unbind()

    def ready(self) -> bool:
        try:
            self.connection(ADMIN_DN, self.admin_password).unbind()
        except LDAPException:
            return False
        return True

    def after_start(self) -> None:
        """Add the base entries and the service account, unless a restart finds them."""
        with self._admin() as conn:
            if self._has_base(conn):
                return
            conn.add(BASE_DN, ["dcObject", "organization"], {"dc": "example", "o": "example"})
            for dn, ou in ((PEOPLE_DN, "people"), (GROUPS_DN, "groups"), (SERVICES_DN, "services")):
                conn.add(dn, ["organizationalUnit"], {"ou": ou})
            conn.add(
                SERVICE_DN,
                ["organizationalRole", "simpleSecurityObject"],
                {"cn": "tokenserver", "userPassword": ssha(self.service_password)},
            )

    @staticmethod
    def _has_base(conn: ldap3.Connection) -> bool:
        try:
            return bool(conn.search(BASE_DN, "(objectClass=*)", ldap3.BASE))
        except LDAPNoSuchObjectResult:
            return False

    def add_user(
        self, uid: str, password: str, *, cn: str | None = None, mail: str | None = None
    ) -> str:
        """An inetOrgPerson under ou=people with an {SSHA} password; returns its DN."""
        dn = self.user_dn(uid)
        attributes = {"uid": uid, "cn": cn or uid, "sn": cn or uid, "userPassword": ssha(password)}
        if mail is not None:
            attributes["mail"] = mail
        with self._admin() as conn:
            conn.add(dn, ["inetOrgPerson"], attributes)
        return dn

    def set_password(self, uid: str, password: str) -> None:
        with self._admin() as conn:
            conn.modify(
                self.user_dn(uid), {"userPassword": [(ldap3.MODIFY_REPLACE, [ssha(password)])]}
            )

    def delete_user(self, uid: str) -> None:
        """Delete the user after taking them out of every group, so no group dangles."""
        dn = self.user_dn(uid)
        with self._admin() as conn:
            conn.search(GROUPS_DN, f"(member={escape_filter_chars(dn)})", attributes=["member"])
            for group in list(conn.entries):
                self._remove_member(conn, group.entry_dn, dn)
            conn.delete(dn)

    def add_group(self, cn: str, members: Sequence[str] = ()) -> str:
        """A groupOfNames under ou=groups with these uids as members; returns its DN.

        With no members the group lists `EMPTY_GROUP_MEMBER` instead, because
        groupOfNames requires one; `add_member` drops it again.
        """
        dn = self.group_dn(cn)
        member_dns = [self.user_dn(uid) for uid in members] or [EMPTY_GROUP_MEMBER]
        with self._admin() as conn:
            conn.add(dn, ["groupOfNames"], {"cn": cn, "member": member_dns})
        return dn

    def add_member(self, group_cn: str, uid: str) -> None:
        group = self.group_dn(group_cn)
        changes = [(ldap3.MODIFY_ADD, [self.user_dn(uid)])]
        with self._admin() as conn:
            if conn.compare(group, "member", EMPTY_GROUP_MEMBER):
                changes.append((ldap3.MODIFY_DELETE, [EMPTY_GROUP_MEMBER]))
            conn.modify(group, {"member": changes})

    def remove_member(self, group_cn: str, uid: str) -> None:
        """Take `uid` out of the group; the last member leaves `EMPTY_GROUP_MEMBER` behind."""
        with self._admin() as conn:
            self._remove_member(conn, self.group_dn(group_cn), self.user_dn(uid))

    @staticmethod
    def _remove_member(conn: ldap3.Connection, group: str, member: str) -> None:
        conn.search(group, "(objectClass=groupOfNames)", ldap3.BASE, attributes=["member"])
        changes = [(ldap3.MODIFY_DELETE, [member])]
        if len(conn.entries[0].member.values) == 1:
            changes.insert(0, (ldap3.MODIFY_ADD, [EMPTY_GROUP_MEMBER]))
        conn.modify(group, {"member": changes})

    def _running_pid(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("slapd is not running")
        return self.proc.pid

    def pause(self) -> None:
        """SIGSTOP slapd: the kernel still accepts TCP connections, but nothing answers."""
        pid = self._running_pid()
        os.kill(pid, signal.SIGSTOP)
        wait_state(pid, stopped=True)
        self.is_paused = True

    def resume(self) -> None:
        pid = self._running_pid()
        os.kill(pid, signal.SIGCONT)
        wait_state(pid, stopped=False)
        self.is_paused = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Paused inside the block and answering again after it, even when the test fails."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def stop(self) -> None:
        # A stopped process only acts on SIGTERM once it runs again.
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
        self.is_paused = False
        super().stop()

    def cleanup(self) -> None:
        if self.owns_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte.

    Unlike a paused slapd it keeps accepting after the listen backlog would
    fill up, so any number of clients connect and then wait for an answer.
    Connections stay open until `stop()` (or the end of the `with` block).
    """

    def __init__(self) -> None:
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self.connections: list[socket.socket] = []
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("SilentServer is not started")
        return f"ldap://{LOOPBACK}:{self.port}"

    def start(self) -> Self:
        # Port 0 straight away: there is no daemon to hand a port to.
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(conn)

    def stop(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=SIGNAL_WAIT)
        if self._listener is not None:
            self._listener.close()
        for conn in self.connections:
            conn.close()
        self.connections.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SecretRecorder(Protocol):
    def add(self, value: str) -> str: ...


_serial = itertools.count()


class LdapDirectory:
    """The shared slapd, with helpers that make unique names and remember secrets."""

    def __init__(self, slapd: Slapd, leak_guard: SecretRecorder) -> None:
        self.slapd = slapd
        self.leak_guard = leak_guard
        self.tag = secrets.token_hex(3)

    def name(self, base: str) -> str:
        return f"{base}-{self.tag}{next(_serial)}"

    def user(self, base: str, *, exact: bool = False, mail: str | None = None) -> tuple[str, str]:
        uid = base if exact else self.name(base)
        password = self.leak_guard.add(f"ldap-pw-{secrets.token_hex(8)}")
        self.slapd.add_user(uid, password, mail=mail)
        return uid, password

    def group(self, base: str, *members: str) -> str:
        cn = self.name(base)
        self.slapd.add_group(cn, list(members))
        return cn

    def settings(self, **overrides: Any) -> LDAPConfig:
        self.leak_guard.add(self.slapd.service_password)
        data: dict[str, Any] = {
            "url": self.slapd.url,
            "bind_dn": self.slapd.service_dn,
            "bind_password": self.slapd.service_password,
            "base_dn": self.slapd.people_dn,
            "timeout": 2,
        }
        data.update(overrides)
        return LDAPConfig.model_validate(data)

    def backend(self, **overrides: Any) -> LDAPBackend:
        return LDAPBackend(self.settings(**overrides))
