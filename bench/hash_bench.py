"""SHA-256 speed: hashlib against the resumable hash an S3 upload session stores its state in.

Hashes `--size` random bytes (default 256 MiB) in 1 MiB updates, `--rounds`
times each, taking turns, and prints the best MB/s of each and the ratio; the
resumable one also saves and restores its state after every update, as an
upload does between chunks (it does so once per request, so this is the worst
case).

    .venv/bin/python bench/hash_bench.py [--size BYTES] [--rounds N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry_proxy.storage.resumable_hash import ResumableSha256

MiB = 1024 * 1024


def with_hashlib(data: memoryview) -> str:
    hasher = hashlib.sha256()
    for start in range(0, len(data), MiB):
        hasher.update(data[start : start + MiB])
    return hasher.hexdigest()


def resumable(data: memoryview) -> str:
    state = ResumableSha256().state()
    for start in range(0, len(data), MiB):
        hasher = ResumableSha256(state)
        hasher.update(bytes(data[start : start + MiB]))
        state = hasher.state()
    return ResumableSha256(state).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256 * MiB)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = memoryview(os.urandom(args.size))
    best = {"hashlib": 0.0, "resumable (rehashes)": 0.0}
    digests = set()
    for _ in range(args.rounds):
        for name, function in (("hashlib", with_hashlib), ("resumable (rehashes)", resumable)):
            started = time.perf_counter()
            digests.add(function(data))
            best[name] = max(best[name], args.size / 1e6 / (time.perf_counter() - started))
    if len(digests) != 1:
        raise SystemExit(f"the two disagree: {digests}")
    for name, rate in best.items():
        print(f"{name:<22}{rate:>8.0f} MB/s  ({rate / best['hashlib']:.2f} of hashlib)")


if __name__ == "__main__":
    main()
