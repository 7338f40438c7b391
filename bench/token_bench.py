"""GET /token throughput and latency, cold (credential cache off) and warm.

Starts two token servers on 127.0.0.1 with one htpasswd user hashed with
bcrypt cost 10: one with `users.credential_cache_ttl: 0` (every request runs
bcrypt) and one with the default cache. Each level is bounded in requests and
seconds. Prints requests/s, p50 and p99 per concurrency, and warm/cold ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.tokenserver import TokenServer
from tokenserver.passwords import hash_password

USER, PASSWORD = "bench", "bench-password"
SCOPE = f"repository:{USER}/app:pull,push"


async def run_level(
    url: str, concurrency: int, max_requests: int, max_seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    issued = 0
    deadline = time.perf_counter() + max_seconds
    params = {"service": "registry", "scope": SCOPE, "account": USER}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(auth=(USER, PASSWORD), limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal issued, failures
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                t0 = time.perf_counter()
                response = await client.get(url, params=params)
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{failures} requests failed")
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=8.0, help="cap per level")
    parser.add_argument("--cold-requests", type=int, default=300)
    parser.add_argument("--warm-requests", type=int, default=3000)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    with tempfile.TemporaryDirectory(prefix="token-bench-") as tmp:
        work = Path(tmp)
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
                url = f"{server.url}/token"
                asyncio.run(run_level(url, 1, 5, 5))  # warm up connections and the cache
                results[mode] = {
                    c: asyncio.run(run_level(url, c, count, args.seconds)) for c in levels
                }

    print(f"GET /token, bcrypt cost 10, one user, {SCOPE}")
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
