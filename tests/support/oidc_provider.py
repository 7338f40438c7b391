"""A real OpenID Provider for the SSO tests: npm's `oidc-provider` under Debian's node.

`tests/peers/oidc/provider.mjs` runs it over HTTPS on 127.0.0.1 with a
certificate of its own (its `ca_file`), one confidential client that must
use PKCE, and the people of a JSON file that it reads again at every
sign-in: `set_person` changes someone's groups at the provider.
`scripts/install-peers.sh` installs the package (the exact version of
`package-lock.json`) into `tests/peers/oidc/node_modules`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import ssl
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.support.certs import write_self_signed
from tests.support.peers import LOOPBACK, Peer, free_port, require_binary

__all__ = ["PROVIDER_DIR", "OIDCProvider"]

PROVIDER_DIR = Path(__file__).resolve().parents[1] / "peers" / "oidc"


def _require_package() -> None:
    """Skip (fail in CI) when `npm ci` has not installed the provider."""
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        message = "npm's oidc-provider is not installed (run scripts/install-peers.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


class OIDCProvider(Peer):
    """`with OIDCProvider(dir, redirect_uri=...) as op:`; `op.issuer`, `op.client_id`, ..."""

    name = "oidc-provider"

    def __init__(
        self,
        workdir: Path,
        *,
        redirect_uri: str,
        people: dict[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.node = require_binary("node")
        _require_package()
        self.port = free_port()
        self.issuer = f"https://{LOOPBACK}:{self.port}"
        self.client_id = "registry-auth"
        self.client_secret = secrets.token_urlsafe(24)
        self.redirect_uri = redirect_uri
        self.ca_file, self._key_file = write_self_signed(self.workdir)
        self.people_file = self.workdir / "people.json"
        self._people: dict[str, dict[str, object]] = {}
        for name, groups in (people or {}).items():
            self.set_person(name, groups)
        self._settings = self.workdir / "settings.json"

    def set_person(self, name: str, groups: Sequence[str], username: str | None = None) -> None:
        """Give the person who logs in as `name` these groups at the provider (counted at
        their next sign-in), and `username` as their `preferred_username` (else `name`)."""
        self._people[name] = {
            "groups": list(groups),
            **({"username": username} if username else {}),
        }
        self._write_people()

    def remove_person(self, name: str) -> None:
        """The provider no longer has `name`: it refuses their refresh tokens from now on."""
        self._people[name] = {"gone": True}
        self._write_people()

    def _write_people(self) -> None:
        temporary = self.people_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._people))
        temporary.replace(self.people_file)

    def sign_in(self, authorize_url: str, login: str) -> str:
        """Through the provider's own login form as `login`, in a browser of its own (no
        session there yet): the URL the provider sends the browser back to."""
        with httpx.Client(verify=self._tls(), timeout=10.0) as browser:
            url = authorize_url
            for _ in range(10):
                answer = browser.get(url)
                if answer.is_redirect:
                    url = urljoin(url, answer.headers["location"])
                    if url.startswith(self.redirect_uri):
                        return url
                    continue
                form = re.search(r'<form[^>]*action="([^"]+)"', answer.text)
                assert form is not None, answer.text[:500]
                posted = browser.post(
                    urljoin(url, form.group(1)),
                    data={"prompt": "login", "login": login, "password": "any"},
                )
                assert posted.is_redirect, posted.text[:500]
                url = urljoin(url, posted.headers["location"])
        raise AssertionError(f"the provider never sent the browser back (last at {url})")

    def prepare(self) -> None:
        if not self.people_file.exists():
            self.people_file.write_text("{}")
        settings = {
            "port": self.port,
            "issuer": self.issuer,
            "cert": str(self.ca_file),
            "key": str(self._key_file),
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uri": self.redirect_uri,
            "people": str(self.people_file),
        }
        self._settings.write_text(json.dumps(settings))

    def argv(self) -> list[str]:
        return [self.node, str(PROVIDER_DIR / "provider.mjs"), str(self._settings)]

    def env(self) -> dict[str, str]:
        # Its warnings about development keys are expected: this is a test peer.
        return {**os.environ, "NODE_ENV": "test"}

    def ready(self) -> bool:
        url = f"{self.issuer}/.well-known/openid-configuration"
        return httpx.get(url, verify=self._tls(), timeout=1.0).status_code == 200

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def sso_config(self, **extra: object) -> dict[str, object]:
        """The token server's `sso` section for this provider."""
        return {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "ca_file": str(self.ca_file),
            **extra,
        }
