"""GET /token throughput and latency, cold (credential cache off) and warm.

Starts two token servers on 127.0.0.1 with one htpasswd user hashed with
bcrypt cost 10: one with `users.credential_cache_ttl: 0` (every request runs
bcrypt) and one with the default cache. Load comes from `wrk` in another
process, each level bounded in seconds and, as a safety cap set well above what
the time allows, in requests (a Lua counter stops each wrk thread). Prints requests/s, p50 and p99 per concurrency, and the
warm/cold ratio.
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.tokenserver import TokenServer
from tokenserver.passwords import hash_password

USER, PASSWORD = "bench", "bench-password"
SCOPE = f"repository:{USER}/app:pull,push"

# Stops a wrk thread after its share of the request budget.
LUA = """
local budget = tonumber(os.getenv("BENCH_BUDGET"))
local done = 0
response = function(status)
  if status ~= 200 then print("status " .. status) end
  done = done + 1
  if done >= budget then wrk.thread:stop() end
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def run_level(
    wrk: str, url: str, script: Path, concurrency: int, requests: int, seconds: int
) -> dict[str, float]:
    threads = min(2, concurrency)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    out = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{int(seconds)}s",
            "--latency",
            "--timeout",
            "30s",
            "-s",
            str(script),
            "-H",
            f"Authorization: Basic {auth}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
        env={"BENCH_BUDGET": str(max(1, requests // threads)), "PATH": "/usr/bin:/bin"},
    ).stdout
    if "status " in out or "Socket errors" in out:
        raise SystemExit(f"non-200 answers during the run:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if len(latency) != 2:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    return {
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--seconds", type=int, default=5, help="cap per level")
    parser.add_argument("--cold-requests", type=int, default=5000)
    parser.add_argument("--warm-requests", type=int, default=200000)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is missing: apt-get install wrk (or make peers)")

    with tempfile.TemporaryDirectory(prefix="token-bench-") as tmp:
        work = Path(tmp)
        script = work / "budget.lua"
        script.write_text(LUA)
        htpasswd = work / "htpasswd"
        htpasswd.write_text(f"{USER}:{hash_password(PASSWORD, rounds=10)}\n")
        keys = work / "keys"
        results: dict[str, dict[int, dict[str, float]]] = {}
        for mode, ttl, count in (
            ("cold", 0, args.cold_requests),
            ("warm", 60, args.warm_requests),
        ):
            server = TokenServer(
                work / mode,
                keys_dir=keys,
                htpasswd=htpasswd,
                extra={"users": {"credential_cache_ttl": ttl}, "log": {"level": "warning"}},
            )
            with server:
                url = f"{server.url}/token?service=registry&scope={SCOPE}&account={USER}"
                # Proves the credentials work before any timing starts.
                httpx.get(url, auth=(USER, PASSWORD)).raise_for_status()
                results[mode] = {
                    c: run_level(wrk, url, script, c, count, args.seconds) for c in levels
                }

    print(f"GET /token, bcrypt cost 10, one htpasswd user, {SCOPE}")
    print(f"{'mode':<6}{'conc':>6}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for mode, by_level in results.items():
        for c, r in by_level.items():
            print(
                f"{mode:<6}{c:>6}{r['requests']:>10.0f}{r['rps']:>10.1f}"
                f"{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
            )
    for c in levels:
        ratio = results["warm"][c]["rps"] / results["cold"][c]["rps"]
        print(f"warm/cold req/s at concurrency {c}: {ratio:.1f}x")


if __name__ == "__main__":
    main()
