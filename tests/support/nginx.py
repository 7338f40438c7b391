"""A private nginx as the load balancer in front of several instances of our services.

Everything nginx would write lives in the peer's own directory (pid, logs,
the five temp paths), so it needs no system set-up and no root. Each site is
one listening port proxying to a group of upstreams, configured as the
README's deployment example says a registry needs: no body size limit, HTTP/1.1
to the upstreams, no request or response buffering (uploads and pulls stream),
and a refused connection retried on the next instance.
"""

from __future__ import annotations

import contextlib
import json
import signal
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.peers import LOOPBACK, Peer, free_port, require_binary

__all__ = ["Nginx", "Site"]

# One JSON object per request, with the instance that answered it.
_LOG_FORMAT = (
    '{"time":"$time_iso8601","request":"$request","status":$status,'
    '"upstream":"$upstream_addr","upstream_status":"$upstream_status"}'
)


@dataclass(frozen=True)
class Site:
    """One listening port of the balancer and the instances behind it (host:port)."""

    name: str
    upstreams: tuple[str, ...]
    port: int = 0
    # Send every request of one client address to the same instance while it lives.
    sticky: bool = False

    def with_port(self) -> Site:
        return self if self.port else Site(self.name, self.upstreams, free_port(), self.sticky)


class Nginx(Peer):
    name = "nginx"
    stop_signal = signal.SIGQUIT  # a graceful stop of the master

    def __init__(self, workdir: str | Path, *sites: Site) -> None:
        super().__init__(workdir)
        self.binary = require_binary("/usr/sbin/nginx")
        self.sites = {site.name: site.with_port() for site in sites}
        self.conf_path = self.workdir / "nginx.conf"
        self.access_log = self.workdir / "access.log"

    def url(self, site: str) -> str:
        return f"http://{LOOPBACK}:{self.sites[site].port}"

    def config(self) -> str:
        d = self.workdir
        temp = "\n".join(
            f"    {kind}_temp_path {d / (kind + '_temp')};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        servers = []
        for site in self.sites.values():
            members = "\n".join(
                f"        server {upstream} max_fails=1 fail_timeout=2s;"
                for upstream in site.upstreams
            )
            balance = "\n        hash $remote_addr;" if site.sticky else ""
            servers.append(
                f"""
    upstream {site.name} {{{balance}
{members}
        keepalive 16;
    }}
    server {{
        listen {LOOPBACK}:{site.port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://{site.name};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 2;
        }}
        # An instance that died mid-request (nginx cannot replay a streamed
        # body) closes the client's connection, as the instance itself would
        # have: clients retry a broken connection, but give up on a 502 page.
        error_page 502 504 = @gone;
        location @gone {{
            return 444;
        }}
    }}"""
            )
        return f"""daemon off;
worker_processes 1;
pid {d / "nginx.pid"};
error_log {d / "error.log"} info;
events {{ worker_connections 1024; }}
http {{
    log_format balancer escape=json '{_LOG_FORMAT}';
    access_log {self.access_log} balancer;
{temp}
{"".join(servers)}
}}
"""

    def prepare(self) -> None:
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / f"{kind}_temp").mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config())

    def argv(self) -> list[str]:
        return [self.binary, "-c", str(self.conf_path), "-p", str(self.workdir)]

    def ready(self) -> bool:
        for site in self.sites:
            httpx.get(self.url(site), timeout=1)
        return True

    @staticmethod
    def answered_by(entry: dict[str, object]) -> str:
        """The instance that gave a logged request its answer (the last one nginx tried)."""
        return str(entry["upstream"]).split(",")[-1].strip()

    def served(self) -> list[dict[str, object]]:
        """Every request so far: what was asked, its status and the instance(s) that answered."""
        if not self.access_log.exists():
            return []
        entries = []
        # Read while nginx appends: the last line may be half written.
        for line in self.access_log.read_bytes().decode("utf-8", "replace").splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries
