"""A refresh token for a registry, through the OAuth 2.0 device authorization grant (RFC 8628).

The registry's challenge (`GET /v2/`, 401, `WWW-Authenticate: Bearer
realm=...,service=...`) names the token server; beside its token endpoint
(the realm) is `device/code`. The person is shown where to approve and the
code; the helper polls the token endpoint at the interval the server sets
until the code is approved, denied or expired. Every answer is bounded in
size and time, and whatever the servers say is checked before it is shown
on a terminal or sent anywhere.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

__all__ = ["CLIENT_ID", "DeviceLoginFailed", "Prompt", "login", "registry_challenge"]

CLIENT_ID = "docker-credential-tokenserver"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MAX_ANSWER_BYTES = 64 * 1024
# Each read within 10 s, and a whole answer within 30 s: a server that trickles bytes is left.
TIMEOUT = httpx.Timeout(10.0)
ANSWER_DEADLINE = 30.0
# The longest wait for an approval, whatever the server says (RFC 8628 suggests minutes).
MAX_WAIT = 1800
_PARAM = re.compile(r'(\w+)="([^"]*)"')
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,2048}")
_USER_CODE = re.compile(r"[A-Za-z0-9-]{4,16}")


class DeviceLoginFailed(Exception):
    """No refresh token: why, in words fit for the person at the terminal."""


@dataclass(frozen=True)
class Prompt:
    """What the person must do: open `url` and approve `user_code`."""

    url: str
    user_code: str
    expires_in: int


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read(answer: httpx.Response) -> bytes:
    deadline = time.monotonic() + ANSWER_DEADLINE
    body = b""
    for chunk in answer.iter_bytes():
        body += chunk
        if time.monotonic() > deadline:
            raise DeviceLoginFailed(f"{answer.url.host} answers too slowly")
        if len(body) > MAX_ANSWER_BYTES:
            raise DeviceLoginFailed(
                f"{answer.url.host} answered more than {MAX_ANSWER_BYTES} bytes"
            )
    return body


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        document = json.loads(_read(answer))
    except ValueError:
        raise DeviceLoginFailed(
            f"{answer.url.host} answered {answer.status_code}, not JSON"
        ) from None
    if not isinstance(document, dict):
        raise DeviceLoginFailed(f"{answer.url.host} answered JSON that is not an object")
    return document


def _text(document: dict[str, Any], key: str, pattern: re.Pattern[str] = _PRINTABLE) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise DeviceLoginFailed(f"the token server's answer has no usable {key}")
    return value


def _seconds(document: dict[str, Any], key: str, default: int, most: int) -> int:
    value = document.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DeviceLoginFailed(f"the token server's answer has no usable {key}")
    return min(value, most)


def registry_challenge(client: httpx.Client, registry: str) -> tuple[str, str]:
    """The realm and service a registry's 401 names. HTTPS, or plain HTTP for a loopback host."""
    host = urlsplit(f"//{registry}").hostname or ""
    schemes = ["https", "http"] if _is_loopback(host) else ["https"]
    for scheme in schemes:
        try:
            with client.stream("GET", f"{scheme}://{registry}/v2/") as answer:
                _read(answer)
        except httpx.HTTPError:
            continue
        params = dict(_PARAM.findall(answer.headers.get("www-authenticate", "")[:4096]))
        realm = params.get("realm", "")
        if answer.status_code != 401 or urlsplit(realm).scheme not in ("https", "http"):
            raise DeviceLoginFailed(f"{registry} does not ask for a token server's token")
        return realm, params.get("service", "")
    raise DeviceLoginFailed(f"{registry} cannot be reached")


def _post(client: httpx.Client, url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    try:
        with client.stream("POST", url, data=form) as answer:
            return answer.status_code, _json(answer)
    except httpx.HTTPError as exc:
        raise DeviceLoginFailed(
            f"the token server cannot be reached: {type(exc).__name__}"
        ) from None


def login(
    client: httpx.Client,
    realm: str,
    service: str,
    show: Callable[[Prompt], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """A refresh token for `service`, once the person approves; `DeviceLoginFailed` otherwise."""
    # The service the registry named, for the code and every poll alike: the token server
    # binds a code to the service it was asked for.
    asked = {"client_id": CLIENT_ID} | ({"service": service} if service else {})
    status, started = _post(client, urljoin(realm, "device/code"), asked)
    if status != 200:
        raise DeviceLoginFailed(f"the token server refused a device login ({status})")
    device_code = _text(started, "device_code")
    complete = "verification_uri_complete" in started
    url = _text(started, "verification_uri_complete" if complete else "verification_uri")
    if urlsplit(url).scheme not in ("https", "http"):
        raise DeviceLoginFailed("the token server's answer has no usable verification_uri")
    expires_in = _seconds(started, "expires_in", MAX_WAIT, MAX_WAIT)
    interval = _seconds(started, "interval", 5, 60)
    show(Prompt(url, _text(started, "user_code", _USER_CODE), expires_in))
    deadline = clock() + expires_in
    form = asked | {"grant_type": DEVICE_GRANT, "device_code": device_code}
    while clock() + interval <= deadline:
        sleep(interval)
        status, answer = _post(client, realm, form)
        if status == 200:
            return _text(answer, "refresh_token")
        error = answer.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval = min(interval + 5, 60)
            continue
        if error == "access_denied":
            raise DeviceLoginFailed("the sign-in was denied")
        if error == "expired_token":
            break
        raise DeviceLoginFailed(f"the token server refused the device login ({status})")
    raise DeviceLoginFailed("the code expired before it was approved")
