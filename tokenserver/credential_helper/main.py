"""The credential-helper protocol: `get`, `store`, `erase`, `list` (and `version`).

docker (and podman, skopeo, buildah through containers/image) run the
helper with the verb as its argument and the request on standard input: a
server name for `get` and `erase`, a JSON credential for `store`. Answers
go to standard output; a failure is one line on standard output or error
and exit status 1, as docker's own helpers do.
"""

from __future__ import annotations

import json
import os
import sys
import webbrowser
from collections.abc import Sequence
from typing import TextIO

import httpx

from tokenserver import __version__
from tokenserver.credential_helper.credential_file import (
    CorruptFile,
    Credential,
    CredentialFile,
    default_path,
)
from tokenserver.credential_helper.device_login import (
    TIMEOUT,
    DeviceLoginFailed,
    Prompt,
    login,
    registry_challenge,
)

__all__ = ["main"]

# Not a password: the protocol's word for "the secret is an identity (refresh) token".
IDENTITY_TOKEN_USERNAME = "<token>"  # noqa: S105
NOT_FOUND = "credentials not found in native keychain"
# A server name or one credential: a few KiB at most.
MAX_REQUEST_BYTES = 64 * 1024


class Refusal(Exception):
    """A request this helper cannot answer: the message is the one line it prints."""


def server_key(server_url: str) -> str:
    """docker's registry key as this file keeps it: host[:port], no scheme, path or slash."""
    rest = server_url.strip()
    if "://" in rest:
        rest = rest.split("://", 1)[1]
    key = rest.split("/", 1)[0]
    if not key or len(key) > 255 or not key.isascii() or not key.isprintable() or " " in key:
        raise Refusal("not a registry server name")
    return key.lower()


def _request(stdin: TextIO) -> str:
    text = stdin.read(MAX_REQUEST_BYTES + 1)
    if len(text) > MAX_REQUEST_BYTES:
        raise Refusal(f"the request is larger than {MAX_REQUEST_BYTES} bytes")
    return text


def _show(prompt: Prompt) -> None:
    minutes = max(1, prompt.expires_in // 60)
    print(
        f"To sign in to the registry, open {prompt.url}\n"
        f"and approve the code {prompt.user_code} (within {minutes} min).",
        file=sys.stderr,
        flush=True,
    )
    # A browser only where one can be shown; webbrowser would otherwise start a text browser.
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin":
        webbrowser.open(prompt.url)


def _device_login(server: str) -> Credential:
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=True) as client:
        realm, service = registry_challenge(client, server)
        return Credential(IDENTITY_TOKEN_USERNAME, login(client, realm, service, _show))


def get(file: CredentialFile, server_url: str) -> dict[str, str]:
    server = server_key(server_url)
    stored = file.read().get(server)
    if stored is None:
        try:
            stored = _device_login(server)
        except DeviceLoginFailed as exc:
            # docker takes "not found" as "go on without credentials" and does not show the
            # answer, so the person reads why on the terminal.
            print(f"No sign-in for {server}: {exc}.", file=sys.stderr, flush=True)
            raise Refusal(NOT_FOUND) from None
        file.put(server, stored)
    return {"ServerURL": server_url.strip(), "Username": stored.username, "Secret": stored.secret}


def store(file: CredentialFile, request: str) -> None:
    try:
        document = json.loads(request)
        server = server_key(document["ServerURL"])
        credential = Credential(str(document["Username"]), str(document["Secret"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Refusal("store wants a JSON object with ServerURL, Username and Secret") from None
    file.put(server, credential)


def erase(file: CredentialFile, server_url: str) -> None:
    if not file.put(server_key(server_url), None):
        raise Refusal(NOT_FOUND)


def run(verb: str, stdin: TextIO, stdout: TextIO, file: CredentialFile) -> None:
    if verb == "version":
        print(f"docker-credential-tokenserver {__version__}", file=stdout)
    elif verb == "list":
        json.dump({server: c.username for server, c in file.read().items()}, stdout)
    elif verb == "get":
        json.dump(get(file, _request(stdin)), stdout)
    elif verb == "store":
        store(file, _request(stdin))
    elif verb == "erase":
        erase(file, _request(stdin))
    else:
        raise Refusal("unknown verb; use get, store, erase, list or version")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: docker-credential-tokenserver get|store|erase|list|version", file=sys.stderr)
        sys.exit(1)
    try:
        run(args[0], sys.stdin, sys.stdout, CredentialFile(default_path()))
    except (Refusal, CorruptFile) as exc:
        # docker shows what a failed helper printed on standard output.
        print(exc, file=sys.stdout)
        sys.exit(1)
