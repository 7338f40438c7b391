"""`make run`: the token server and the registry service on loopback with embedded defaults.

State lives in var/dev (SQLite database, registry storage, generated configs);
signing keys in keys/. The first start creates an `admin` user with a random
password and prints it once.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "dev"
KEYS = ROOT / "keys"
TOKEN_ADDR = os.environ.get("TOKEN_ADDR", "127.0.0.1:5001")
REGISTRY_ADDR = os.environ.get("REGISTRY_ADDR", "127.0.0.1:5000")
SERVICE = "registry"
ISSUER = "tokenserver"


def tokenserver(*args: str, input: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tokenserver", *args, "--config", str(VAR / "tokenserver.yaml")],
        input=input,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(result.stderr.strip())
    return result.stdout


def write_configs() -> None:
    VAR.mkdir(parents=True, exist_ok=True)
    config = {
        "server": {"addr": TOKEN_ADDR},
        "token": {"issuer": ISSUER, "service": SERVICE, "keys_dir": str(KEYS)},
        "database": {"url": f"sqlite:///{VAR / 'tokenserver.db'}"},
    }
    (VAR / "tokenserver.yaml").write_text(yaml.safe_dump(config))
    registry = {
        "log": {"level": "info"},
        "http": {"addr": REGISTRY_ADDR},
        "storage": {
            "filesystem": {"rootdirectory": str(VAR / "registry")},
            "delete": {"enabled": True},
        },
        "auth": {
            "token": {
                "realm": f"http://{TOKEN_ADDR}/token",
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(KEYS / "bundle.pem"),
            }
        },
    }
    (VAR / "registry.yaml").write_text(yaml.safe_dump(registry))


def ensure_admin() -> str | None:
    users = yaml.safe_load(tokenserver("user", "list", "--json"))
    if any(u["name"] == "admin" for u in users):
        return None
    password = secrets.token_urlsafe(18)
    tokenserver("user", "add", "admin", "--password-stdin", "--group", "admin", input=password)
    return password


def wait_for(url: str, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited during start-up")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    sys.exit(f"{name} did not start")


def main() -> None:
    write_configs()
    if not any(KEYS.glob("*.key")):
        print(f"generated signing key {tokenserver('keys', 'generate').strip()}")
    password = ensure_admin()

    procs: list[subprocess.Popen[bytes]] = []
    token = subprocess.Popen(
        [sys.executable, "-m", "tokenserver", "serve", "--config", str(VAR / "tokenserver.yaml")]
    )
    procs.append(token)
    wait_for(f"http://{TOKEN_ADDR}/healthz", token, "tokenserver")

    registry = subprocess.Popen(
        [sys.executable, "-m", "registry_proxy", "serve", "--config", str(VAR / "registry.yaml")]
    )
    procs.append(registry)
    wait_for(f"http://{REGISTRY_ADDR}/v2/", registry, "registry-proxy")

    print()
    print(f"token server:  http://{TOKEN_ADDR}/token  (JWKS at /.well-known/jwks.json)")
    print(f"registry:      http://{REGISTRY_ADDR}/v2/  (token auth, service {SERVICE!r})")
    if password:
        print()
        print("Created user 'admin' (group admin). Its password is shown only this once:")
        print(f"  docker login {REGISTRY_ADDR} -u admin -p '{password}'")
    else:
        print(f"Log in with:   docker login {REGISTRY_ADDR} -u admin")
    print("Ctrl-C stops everything.", flush=True)

    def stop(*_: object) -> None:
        for proc in procs:
            proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for proc in procs:
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
