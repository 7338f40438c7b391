"""GET /token throughput and latency for each way a user can log in.

Starts one token server per mode on 127.0.0.1, all sharing one signing key:

- cold: one htpasswd user hashed with bcrypt cost 10 and
  `users.credential_cache_ttl: 0` (every request runs bcrypt);
- warm: the same htpasswd user with the default credential cache;
- database: a user in the server's own database (`tokenserver user add`,
  bcrypt at the default cost), default credential cache;
- ldap: a user in a real OpenLDAP (slapd on 127.0.0.1, `{SSHA}` password,
  member of one group, found through `memberOf`), default `ldap.cache_ttl`
  and credential cache. The server's database backend comes first in the
  default order, so each LDAP login also misses there.

Each mode asks for its own user's namespace, `repository:<user>/app:pull,push`;
one request per mode proves the login and the granted actions (and fills the
caches) before any timing starts. Load comes from `wrk` in another process,
each round bounded in seconds and, as a safety cap set well above what the
time allows, in requests (a Lua counter stops each wrk thread); each level
runs `--rounds` rounds (3), and the round of median throughput is the one
shown, with its own latencies. Prints
requests/s, p50 and p99 per mode and concurrency, then the targets: warm
htpasswd user >= 3000 req/s with p99 < 20 ms at concurrency 16, the database
user within 1.5x of it, the LDAP warm path within 2x of the database user's,
and the warm/cold ratio. Audit, throttling and metrics run at their defaults;
a probe of the machine's speed (ES256 signatures/s in one thread, before and
after the runs) is printed with them, since this VM's speed drifts;
`--log-level` (default warning, so no access lines) and `--workers` (default
1, `server.workers`) set the rest.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import ldap3
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.ldap import Slapd
from tests.support.tokenserver import TokenServer
from tokenserver.passwords import hash_password

HTPASSWD_USER, HTPASSWD_PASSWORD = "bench", "bench-password"
DATABASE_USER, DATABASE_PASSWORD = "dbuser", "dbuser-password"
LDAP_USER, LDAP_PASSWORD = "ldapuser", "ldapuser-password"
LDAP_GROUP = "developers"
# The LDAP warm path must stay within 2x of the database user's.
LDAP_TARGET = 0.5
# The warm htpasswd user at concurrency 16 on one worker, and the database user beside it.
WARM_TARGET_RPS, WARM_TARGET_P99_MS, TARGET_LEVEL = 3000.0, 20.0, 16
DATABASE_TARGET = 1 / 1.5

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


@dataclass(frozen=True)
class Mode:
    name: str
    user: str
    password: str
    requests: int

    @property
    def scope(self) -> str:
        return f"repository:{self.user}/app:pull,push"


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def run_level(
    wrk: str,
    url: str,
    script: Path,
    user: str,
    password: str,
    concurrency: int,
    requests: int,
    seconds: int,
) -> dict[str, float]:
    threads = min(2, concurrency)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
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


def _granted_actions(token: str) -> set[str]:
    """Every action the token's `access` claim grants (signature not checked)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {action for entry in claims.get("access", []) for action in entry["actions"]}


def measure(
    server: TokenServer,
    mode: Mode,
    wrk: str,
    script: Path,
    levels: list[int],
    seconds: int,
    rounds: int,
) -> dict[int, dict[str, float]]:
    url = f"{server.url}/token?service=registry&scope={mode.scope}&account={mode.user}"
    # Proves the credentials and the grant before any timing starts (and warms the caches).
    answer = httpx.get(url, auth=(mode.user, mode.password), timeout=30)
    answer.raise_for_status()
    actions = _granted_actions(answer.json()["token"])
    if actions != {"pull", "push"}:
        raise SystemExit(f"{mode.name}: {mode.scope} granted {sorted(actions)}, not pull,push")
    results: dict[int, dict[str, float]] = {}
    for c in levels:
        runs = [
            run_level(wrk, url, script, mode.user, mode.password, c, mode.requests, seconds)
            for _ in range(rounds)
        ]
        # The round of median throughput, whole (its latencies with it).
        results[c] = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    return results


def signing_probe(seconds: float = 1.0) -> float:
    """ES256 signatures per second in this process, one thread: the machine's speed right now.

    A token costs one such signature; printed before and after the runs, it
    tells runs of the same code on a VM whose speed drifts apart.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = ec.ECDSA(hashes.SHA256())
    data = b"x" * 400  # about a token's signing input
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(100):
            key.sign(data, algorithm)
        done += 100
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--seconds", type=int, default=5, help="cap per round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per level; the median one is shown"
    )
    parser.add_argument("--cold-requests", type=int, default=5000)
    parser.add_argument("--warm-requests", type=int, default=200000)
    parser.add_argument("--log-level", default="warning", help="the servers' log.level")
    parser.add_argument("--workers", type=int, default=1, help="the servers' server.workers")
    args = parser.parse_args()
    quiet = {"log": {"level": args.log_level}, "server": {"workers": args.workers}}
    levels = [int(x) for x in args.levels.split(",")]
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is missing: apt-get install wrk (or make peers)")

    cold = Mode("cold", HTPASSWD_USER, HTPASSWD_PASSWORD, args.cold_requests)
    warm = Mode("warm", HTPASSWD_USER, HTPASSWD_PASSWORD, args.warm_requests)
    database = Mode("database", DATABASE_USER, DATABASE_PASSWORD, args.warm_requests)
    ldap = Mode("ldap", LDAP_USER, LDAP_PASSWORD, args.warm_requests)
    results: dict[str, dict[int, dict[str, float]]] = {}
    probe_before = signing_probe()
    with tempfile.TemporaryDirectory(prefix="token-bench-") as tmp:
        work = Path(tmp)
        script = work / "budget.lua"
        script.write_text(LUA)
        htpasswd = work / "htpasswd"
        htpasswd.write_text(f"{HTPASSWD_USER}:{hash_password(HTPASSWD_PASSWORD, rounds=10)}\n")
        keys = work / "keys"

        for mode, ttl in ((cold, 0), (warm, 60)):
            extra = {"users": {"credential_cache_ttl": ttl}, **quiet}
            with TokenServer(work / mode.name, keys_dir=keys, htpasswd=htpasswd, extra=extra) as s:
                results[mode.name] = measure(
                    s, mode, wrk, script, levels, args.seconds, args.rounds
                )

        server = TokenServer(work / database.name, keys_dir=keys, extra=quiet)
        server.add_user(database.user, database.password)
        with server:
            results[database.name] = measure(
                server, database, wrk, script, levels, args.seconds, args.rounds
            )

        with Slapd(work / "slapd") as slapd:
            slapd.add_user(ldap.user, ldap.password)
            group_dn = slapd.add_group(LDAP_GROUP, [ldap.user])
            # The server reads groups from memberOf: check the overlay filled it in.
            conn = slapd.connection(slapd.service_dn, slapd.service_password)
            try:
                conn.search(
                    slapd.user_dn(ldap.user),
                    "(objectClass=*)",
                    search_scope=ldap3.BASE,
                    attributes=["memberOf"],
                )
                member_of = [str(v) for v in conn.entries[0].memberOf.values]
            finally:
                conn.unbind()
            if member_of != [group_dn]:
                raise SystemExit(f"ldap: {ldap.user} has memberOf {member_of}, not {group_dn}")
            directory = {
                "url": slapd.url,
                "bind_dn": slapd.service_dn,
                "bind_password": slapd.service_password,
                "base_dn": slapd.people_dn,
            }
            extra = {"ldap": directory, **quiet}
            with TokenServer(work / ldap.name, keys_dir=keys, extra=extra) as s:
                results[ldap.name] = measure(
                    s, ldap, wrk, script, levels, args.seconds, args.rounds
                )

    probe_after = signing_probe()
    print(
        "Machine speed: ES256 signatures/s in one thread (1 s each),"
        f" {probe_before:.0f} before the runs and {probe_after:.0f} after"
    )
    print(
        "GET /token, scope repository:<user>/app:pull,push, one user per mode;"
        f" log.level {args.log_level}, server.workers {args.workers};"
        f" the median of {args.rounds} rounds of {args.seconds} s per level:"
    )
    print(f"  cold, warm: htpasswd user {HTPASSWD_USER} (bcrypt cost 10), cache off / default")
    print(f"  database: user {DATABASE_USER} from `tokenserver user add` (bcrypt default cost)")
    print(f"  ldap: OpenLDAP user {LDAP_USER} in group {LDAP_GROUP} (memberOf)")
    print(f"{'mode':<10}{'conc':>6}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for mode_name, by_level in results.items():
        for c, r in by_level.items():
            print(
                f"{mode_name:<10}{c:>6}{r['requests']:>10.0f}{r['rps']:>10.1f}"
                f"{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
            )
    for c in levels:
        ratio = results["warm"][c]["rps"] / results["cold"][c]["rps"]
        print(f"warm/cold req/s at concurrency {c}: {ratio:.1f}x")
    if TARGET_LEVEL in levels:
        warm16 = results["warm"][TARGET_LEVEL]
        met = warm16["rps"] >= WARM_TARGET_RPS and warm16["p99_ms"] < WARM_TARGET_P99_MS
        print(
            f"Target: warm >= {WARM_TARGET_RPS:.0f} req/s with p99 < {WARM_TARGET_P99_MS:.0f} ms"
            f" at concurrency {TARGET_LEVEL}: {warm16['rps']:.0f} req/s, p99"
            f" {warm16['p99_ms']:.1f} ms ({'met' if met else 'MISSED'})"
        )
    print(f"Target: database/warm req/s >= {DATABASE_TARGET:.2f} (within 1.5x)")
    for c in levels:
        ratio = results["database"][c]["rps"] / results["warm"][c]["rps"]
        verdict = "met" if ratio >= DATABASE_TARGET else "MISSED"
        print(f"database/warm warm req/s at concurrency {c}: {ratio:.2f} (target {verdict})")
    print(
        "Target: the LDAP warm path stays within 2x of the database user's,"
        f" i.e. ldap/database warm req/s >= {LDAP_TARGET}"
    )
    for c in levels:
        ratio = results["ldap"][c]["rps"] / results["database"][c]["rps"]
        verdict = "met" if ratio >= LDAP_TARGET else "MISSED"
        print(f"ldap/database warm req/s at concurrency {c}: {ratio:.2f} (target {verdict})")


if __name__ == "__main__":
    main()
