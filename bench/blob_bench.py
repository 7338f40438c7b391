"""Blob throughput and small-request rates: registry_proxy against the Go registry.

One run starts one token server and, on 127.0.0.1, both registries with token
auth trusting it, each over its own data directory in a temp dir on /tmp
(removed at the end). One token (pull,push on the bench repository, fetched
once, valid for an hour) authorizes every request to both, so every request
costs a token check on both sides.

Per registry:
  upload monolithic  POST, then one PUT ?digest= with the whole blob streamed
                     from a generator (httpx; the blob is never in memory)
  upload chunked     POST, PATCH chunks of --chunk bytes (each streamed from a
                     generator, with Content-Range), then PUT ?digest=
  download           GET of the monolithic blob with curl, body discarded (a C
                     client: a Python client saturates its own core first)
  HEAD blob          requests/s from `hey` (wrk 4.1 never completes a HEAD whose
                     answer has a Content-Length), at each --levels concurrency
  GET /v2/           requests/s from `wrk` at each --levels concurrency
                     (both bounded by --seconds, at most 5, and a request budget)

Blob rounds run --repeat times (even: each registry goes first equally often),
the two registries in alternating order, each
round with fresh blobs (a 64 MiB random pattern repeated behind a distinct
16-byte head, so no upload finds its blob already stored), whose files are
deleted after the round; right before each upload as many bytes are written,
synced and deleted, so every upload starts from the same page-cache state (on
this VM, an upload into long-freed memory ran up to 2x slower). The table
shows medians, each ratio beside its target (GOALS; MISS where it falls short). Client and servers share the machine's cores, so the CPU table shows
what each side used. With --profile DIR, py-spy records registry_proxy during
each of its phases (raw collapsed stacks in DIR, `--native` for C frames) and
the hottest frames are printed.

With --s3 both registries store in buckets of one Swift (its S3 API, started
here from tests/support/swift.py): ours with `storage.s3`, the Go registry
with its `s3` driver and redirects off, so both serve the bytes themselves.
Each round also GETs our stored blob straight from the bucket with boto3
(1 MiB reads) right after our own download of it, the reference for our
download, and copies it inside the bucket with one CopyObject: a chunked
upload's commit makes that copy (S3 binds a multipart upload to its key, the
key is the digest, and the digest is known only at the end), so the report
also shows the best a chunked upload could do, our monolithic upload's time
plus the copy's, and how much of that ours reached; on S3 the 2x upload target
is the monolithic (one-PATCH) upload's, which is how docker, skopeo and podman
push and which commits without a copy. `make bench` runs
`--s3 --size 512MiB --repeat 4 --levels 16`.

With --proxy both registries are pull-through caches of one upstream (the Go
registry without auth): the upstream's own download rate, a miss, a hit and
16 clients at once through each, and the bytes the upstream sent; see
bench/proxy_bench.py, which holds that mode. `make bench` runs `--proxy`
(512 MiB layers, 4 rounds).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.peers import GoRegistry
from tests.support.registry_proxy import RegistryProxy
from tests.support.swift import Swift
from tests.support.tokenserver import TokenServer

USER, PASSWORD = "bench", "bench-password-1"
REPO = "bench/blob"
MiB = 1024 * 1024
PATTERN = 64 * MiB
HEAD_BYTES = 16
SEND_SLICE = 4 * MiB
MAX_WRK_SECONDS = 5
MAX_REPEAT = 5
# The speed issue's targets, proxy/Go, by the measure's first word: uploads at
# least twice the Go registry's rate, downloads at least its, and small
# requests (HEAD blob, GET /v2/, token auth on both) three times its rate.
GOALS = {"upload": 2.0, "download": 1.0, "HEAD": 3.0, "GET": 3.0}

# wrk: a per-thread request budget.
LUA = """
local budget = tonumber(os.getenv("BENCH_BUDGET"))
local done = 0
response = function(status)
  if status ~= 200 then print("status " .. status) end
  done = done + 1
  if done >= budget then wrk.thread:stop() end
end
"""


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([KMG]i?B?)?", text.strip(), re.I)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 64MiB)")
    unit = (match.group(2) or "").upper()[:1]
    return int(match.group(1)) * {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB}[unit]


class Blob:
    """`size` bytes: a 16-byte head, then a shared random pattern repeated; digest known up front."""

    def __init__(self, size: int, head: bytes, pattern: memoryview) -> None:
        assert len(head) == HEAD_BYTES and size > HEAD_BYTES
        self.size = size
        self.head = memoryview(head)
        self.pattern = pattern
        hasher = hashlib.sha256()
        for piece in self.pieces():
            hasher.update(piece)
        self.digest = "sha256:" + hasher.hexdigest()

    def pieces(self, start: int = 0, end: int | None = None) -> Iterator[memoryview]:
        """Bytes `start..end` (exclusive) as slices of at most SEND_SLICE, never copied."""
        end = self.size if end is None else end
        position = start
        while position < end:
            if position < HEAD_BYTES:
                take = min(HEAD_BYTES, end) - position
                yield self.head[position : position + take]
            else:
                offset = (position - HEAD_BYTES) % len(self.pattern)
                take = min(SEND_SLICE, end - position, len(self.pattern) - offset)
                yield self.pattern[offset : offset + take]
            position += take


@dataclass(frozen=True)
class CPU:
    """Cores busy on average during one measure: the server, the client(s), idle."""

    server: float
    server_sys: float  # the part of `server` spent in the kernel
    client: float
    idle: float


@dataclass
class Target:
    name: str
    url: str
    pid: Callable[[], int | None]
    python: bool  # py-spy can profile it
    results: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[CPU]] = field(default_factory=dict)

    def median(self, key: str) -> float:
        return statistics.median(self.results[key])

    def median_cpu(self, key: str) -> CPU:
        runs = self.cpu[key]
        return CPU(*(statistics.median(getattr(c, f) for c in runs) for f in CPU.__annotations__))


def client(target: Target, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=target.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(300, connect=10),
        trust_env=False,
    )


def with_digest(location: str, digest: str) -> httpx.URL:
    # The Go registry's Location is absolute and carries its own `_state` query: keep it.
    return httpx.URL(location).copy_add_param("digest", digest)


def start_upload(http: httpx.Client, repo: str = REPO) -> str:
    started = http.post(f"/v2/{repo}/blobs/uploads/")
    if started.status_code != 202:
        raise SystemExit(f"POST upload: {started.status_code} {started.text}")
    location: str = started.headers["location"]
    return location


def check_created(response: httpx.Response, blob: Blob) -> None:
    if response.status_code != 201 or response.headers.get("docker-content-digest") != blob.digest:
        raise SystemExit(f"PUT upload: {response.status_code} {response.text[:300]}")


def upload_monolithic(http: httpx.Client, blob: Blob, repo: str = REPO) -> None:
    location = start_upload(http, repo)
    done = http.put(
        with_digest(location, blob.digest),
        content=cast(Iterator[bytes], blob.pieces()),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
    )
    check_created(done, blob)


def upload_chunked(http: httpx.Client, blob: Blob, chunk: int) -> None:
    location = start_upload(http)
    for start in range(0, blob.size, chunk):
        end = min(start + chunk, blob.size)
        sent = http.patch(
            location,
            content=cast(Iterator[bytes], blob.pieces(start, end)),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(end - start),
                "Content-Range": f"{start}-{end - 1}",
            },
        )
        if sent.status_code != 202:
            raise SystemExit(f"PATCH {start}-{end - 1}: {sent.status_code} {sent.text[:300]}")
        location = sent.headers["location"]
    check_created(http.put(with_digest(location, blob.digest)), blob)


def curl_get(curl: str, url: str, token: str | None, headers: Path) -> list[str]:
    """curl's argv to GET `url`, body discarded, headers dumped into `headers`; prints the size."""
    auth = [] if token is None else ["-H", f"Authorization: Bearer {token}"]
    return [curl, "-sS", "--fail", "-o", "/dev/null", "-D", str(headers),
            "-w", "%{size_download}", *auth, url]  # fmt: skip


def check_download(code: int, out: str, err: str, headers: Path, blob: Blob) -> None:
    """A curl GET of `blob` (see curl_get) got all its bytes and the digest header."""
    if code != 0 or int(out or 0) != blob.size:
        raise SystemExit(f"curl GET blob: exit {code}, {out} bytes: {err}")
    dumped = headers.read_text().lower()
    if f"docker-content-digest: {blob.digest}" not in dumped:
        raise SystemExit(f"curl GET blob: no digest header in {dumped}")


def download_curl(curl: str, url: str, token: str | None, blob: Blob, repo: str = REPO) -> None:
    """GET the blob with curl, body discarded; checks the size and the digest header."""
    with tempfile.NamedTemporaryFile("w+", suffix=".headers", dir="/tmp") as headers:
        path = Path(headers.name)
        out = subprocess.run(
            curl_get(curl, f"{url}/v2/{repo}/blobs/{blob.digest}", token, path),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        check_download(out.returncode, out.stdout, out.stderr, path, blob)


def run_wrk(wrk: str, url: str, token: str, concurrency: int, seconds: int, budget: int) -> float:
    """GET requests/s from wrk, capped by `seconds` and a request budget (Lua counter)."""
    threads = min(2, concurrency)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", dir="/tmp") as script:
        script.write(LUA)
        script.flush()
        out = subprocess.run(
            [wrk, f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s",
             "-s", script.name, "-H", f"Authorization: Bearer {token}", url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
            env={"BENCH_BUDGET": str(max(1, budget // threads)), "PATH": "/usr/bin:/bin"},
        ).stdout  # fmt: skip
    if "status " in out or "Socket errors" in out or "Non-2xx" in out:
        raise SystemExit(f"errors during the wrk run against {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    return float(match.group(1))


def run_hey(hey: str, url: str, token: str, concurrency: int, seconds: int, budget: int) -> float:
    """HEAD requests/s from hey, capped by `seconds` and (as a per-worker rate) the budget.

    hey ignores -n when -z is given, so the request budget becomes a rate limit.
    """
    rate = max(1, budget // (concurrency * seconds))
    out = subprocess.run(
        [hey, "-z", f"{seconds}s", "-c", str(concurrency), "-q", str(rate), "-m", "HEAD",
         "-t", "10", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    statuses = re.findall(r"\[(\d+)\]\s+\d+ responses", out)
    if statuses != ["200"] or "Error distribution" in out:
        raise SystemExit(f"errors during the hey run against {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise SystemExit(f"unexpected hey output:\n{out}")
    return float(match.group(1))


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user + system, system) CPU time of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = (int(fields[i]) / os.sysconf("SC_CLK_TCK") for i in (11, 12))
    return user + system, system


def client_seconds() -> float:
    """CPU time of this process and its finished children (curl, wrk, hey) so far."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def idle_seconds() -> float:
    """Idle + iowait time of all CPUs so far (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def profiled(target: Target, name: str, out: Path | None, native: bool) -> Iterator[None]:
    """py-spy records `target` while the block runs (only for Python targets, with `out`)."""
    pid = target.pid()
    if out is None or pid is None or not target.python:
        yield
        return
    py_spy = Path(sys.executable).parent / "py-spy"
    # py-spy can only unwind C frames while it pauses the process.
    mode = ["--native"] if native else ["--nonblocking"]
    with (out / f"{target.name}-{name}.log").open("wb") as log:
        recorder = subprocess.Popen(
            [str(py_spy), "record", "-p", str(pid), "-d", "120", "-r", "200", "-f", "raw",
             "-o", str(out / f"{target.name}-{name}.txt"), "--threads", *mode],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    time.sleep(0.5)  # let it attach
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()


@contextlib.contextmanager
def measure(target: Target, key: str, name: str, args: argparse.Namespace) -> Iterator[None]:
    """Records the CPU use of the server, the client and idle over the block; maybe profiled."""
    pid = target.pid()
    assert pid is not None
    with profiled(target, name, args.profile, args.native):
        before = (time.perf_counter(), *cpu_seconds(pid), client_seconds(), idle_seconds())
        yield
        after = (time.perf_counter(), *cpu_seconds(pid), client_seconds(), idle_seconds())
    wall, *busy = (b - a for a, b in zip(before, after, strict=True))
    target.cpu.setdefault(key, []).append(CPU(*(x / wall for x in busy)))


def timed(
    target: Target, key: str, name: str, args: argparse.Namespace, action: Callable[[], None]
) -> float:
    with measure(target, key, name, args):
        started = time.perf_counter()
        action()
        seconds = time.perf_counter() - started
    return seconds


def blob_round(
    target: Target,
    token: str,
    mono: Blob,
    chunked: Blob,
    args: argparse.Namespace,
    tools: dict[str, str],
    round_no: int,
) -> None:
    def record(key: str, name: str, blob: Blob, action: Callable[[], None]) -> None:
        if key.startswith("upload"):
            prefault(args.work, blob.size)
        seconds = timed(target, key, f"{name}-r{round_no}", args, action)
        target.results.setdefault(key, []).append(blob.size / 1e6 / seconds)

    with client(target, token) as http:
        record("upload monolithic MB/s", "upload-mono", mono, lambda: upload_monolithic(http, mono))
        record(
            "upload chunked MB/s",
            "upload-chunked",
            chunked,
            lambda: upload_chunked(http, chunked, args.chunk),
        )
    record(
        "download MB/s",
        "download",
        mono,
        lambda: download_curl(tools["curl"], target.url, token, mono),
    )


def prefault(directory: Path, size: int) -> None:
    """Write `size` bytes to a file, fsync and delete it, right before an upload.

    Here (a VM whose balloon driver hands freed memory back to the host) writing
    into page-cache memory that was freed a while ago costs several times more
    than into memory just freed; this makes every upload start from the same state.
    """
    block = bytes(SEND_SLICE)
    path = directory / "prefault.bin"
    with path.open("wb") as file:
        for _ in range(max(1, size // SEND_SLICE)):
            file.write(block)
        file.flush()
        os.fsync(file.fileno())
    path.unlink()


class Buckets:
    """In --s3 mode: each registry's bucket on one Swift, and plain S3 calls on them."""

    def __init__(self, swift: Swift) -> None:
        self.swift = swift
        self.ours = swift.new_bucket("bench-ours")
        self.go = swift.new_bucket("bench-go")
        self.raw_get: list[float] = []
        self.raw_copy: list[float] = []

    def raw_download(self, blob: Blob) -> None:
        """GET our stored copy of `blob` from the bucket with boto3, as fast as it goes."""
        key = blob_key(blob)
        with self.swift.client() as s3:
            started = time.perf_counter()
            body = s3._client.get_object(Bucket=self.ours, Key=key)["Body"]
            total = 0
            while chunk := body.read(MiB):
                total += len(chunk)
            seconds = time.perf_counter() - started
        if total != blob.size:
            raise SystemExit(f"raw GET of {key}: {total} bytes, not {blob.size}")
        self.raw_get.append(blob.size / 1e6 / seconds)

    def copy_in_store(self, blob: Blob) -> None:
        """Copy our stored `blob` inside the bucket with one CopyObject, as fast as the store does.

        A chunked upload's commit makes the same copy (its bytes went to S3
        before their digest, and so the blob's key, was known).
        """
        key = blob_key(blob)
        scratch = key.removesuffix("data") + "bench-copy"  # removed with the blob, by drop()
        with self.swift.client() as s3:
            source = {"Bucket": self.ours, "Key": key}
            started = time.perf_counter()
            s3._client.copy_object(Bucket=self.ours, Key=scratch, CopySource=source)
            seconds = time.perf_counter() - started
            size = s3._client.head_object(Bucket=self.ours, Key=scratch)["ContentLength"]
            s3._client.delete_object(Bucket=self.ours, Key=scratch)
        if size != blob.size:
            raise SystemExit(f"copy of {key}: {size} bytes, not {blob.size}")
        self.raw_copy.append(blob.size / 1e6 / seconds)

    def drop(self, blobs: tuple[Blob, ...]) -> None:
        with self.swift.client() as s3:
            for bucket in (self.ours, self.go):
                for blob in blobs:
                    for key in s3.keys(bucket, blob_key(blob).removesuffix("data")):
                        s3._client.delete_object(Bucket=bucket, Key=key)


def blob_key(blob: Blob) -> str:
    hex_digest = blob.digest.removeprefix("sha256:")
    return f"docker/registry/v2/blobs/sha256/{hex_digest[:2]}/{hex_digest}/data"


def drop_blobs(roots: list[Path], blobs: tuple[Blob, ...]) -> None:
    """Delete these blobs' data from the registries' directories (the page cache stays small)."""
    for root in roots:
        for blob in blobs:
            hex_digest = blob.digest.removeprefix("sha256:")
            shutil.rmtree(
                root / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest,
                ignore_errors=True,
            )


def small_requests(
    targets: list[Target], token: str, digest: str, args: argparse.Namespace, tools: dict[str, str]
) -> None:
    kinds = (
        ("HEAD blob", "head", f"/v2/{REPO}/blobs/{digest}", run_hey, tools["hey"]),
        ("GET /v2/", "ping", "/v2/", run_wrk, tools["wrk"]),
    )
    turn = 0
    for label, name, path, runner, tool in kinds:
        for level in args.levels:
            key = f"{label} req/s c={level}"
            turn += 1
            for target in targets if turn % 2 else reversed(targets):
                with measure(target, key, f"{name}-c{level}", args):
                    rps = runner(tool, target.url + path, token, level, args.seconds, args.requests)
                target.results.setdefault(key, []).append(rps)


def summarize_profiles(out: Path, top: int = 15) -> None:
    """Per phase (rounds merged): registry_proxy's frames by own samples, and its own code."""
    phases: dict[str, list[Path]] = {}
    for raw in sorted(out.glob("registry_proxy-*.txt")):
        phases.setdefault(re.sub(r"-r\d+$", "", raw.stem), []).append(raw)
    for name, files in phases.items():
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for raw in files:
            for line in raw.read_text().splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not count_text.isdigit():
                    continue
                count = int(count_text)
                frames = [f for f in stack.split(";") if not f.startswith(("thread (", "process "))]
                if not frames:
                    continue
                total += count
                own[frames[-1]] += count
                for frame in set(frames):
                    inclusive[frame] += count
        if not total:
            continue
        print(f"\n== {name}: {total} samples, all threads ==")
        print("  own samples:")
        for frame, count in own.most_common(top):
            print(f"    {100 * count / total:5.1f}%  {frame}")
        ours = [(f, c) for f, c in inclusive.most_common() if "registry_proxy/" in f]
        print("  registry_proxy code, including callees:")
        for frame, count in ours[:top]:
            print(f"    {100 * count / total:5.1f}%  {frame}")


def print_report(targets: list[Target], args: argparse.Namespace) -> None:
    ours, theirs = targets
    size = f"{args.size / MiB:.0f} MiB blobs, {args.chunk / MiB:.0f} MiB chunks"
    print(
        f"Blob bench: {size}, median of {args.repeat} rounds; {args.seconds} s per load level; "
        f"token auth; log level {args.log_level}; {os.cpu_count()} CPUs shared by all"
    )
    print(f"{'measure':<24}{'registry_proxy':>15}{'Go registry':>13}{'proxy/Go':>10}{'target':>8}")
    for key in ours.results:
        ratio = ours.median(key) / theirs.median(key)
        row = f"{key:<24}{ours.median(key):>15.1f}{theirs.median(key):>13.1f}{ratio:>10.3f}"
        if args.buckets is not None and key == "upload chunked MB/s":
            # On S3 its commit copies the blob inside the store (see the bound below):
            # the store's copy rate, not ours, decides how close it gets to 2x.
            print(f"{row}{'-':>8}   (see chunked bound)")
            continue
        goal = GOALS[key.split(" ", 1)[0]]
        print(f"{row}{goal:>8.1f}{'' if ratio >= goal else '  MISS'}")
    if args.buckets is not None:
        raw = statistics.median(args.buckets.raw_get)
        ratio = ours.median("download MB/s") / raw
        print(
            f"{'raw boto3 GET MB/s':<24}{raw:>15.1f}{'':>13}{ratio:>10.3f}{0.9:>8.1f}"
            f"{'' if ratio >= 0.9 else '  MISS'}   (registry_proxy download / raw GET)"
        )
        copy = statistics.median(args.buckets.raw_copy)
        print(f"{'raw S3 copy MB/s':<24}{copy:>15.1f}   (one CopyObject of our stored blob)")
        if args.chunk < args.size:
            # A chunked upload streams its bytes in and then copies them once:
            # at best our monolithic upload's time plus the store's copy time.
            bound = 1 / (1 / ours.median("upload monolithic MB/s") + 1 / copy)
            ratio = bound / theirs.median("upload chunked MB/s")
            reached = ours.median("upload chunked MB/s") / bound
            print(
                f"{'chunked bound MB/s':<24}{bound:>15.1f}{'':>13}{ratio:>10.3f}"
                "   (1 / (1/monolithic + 1/copy), against the Go registry's chunked upload;"
                f" ours reached {reached:.2f} of it)"
            )
    print("\nEvery run (registry_proxy | Go registry):")
    for key in ours.results:
        runs = [" ".join(f"{v:.0f}" for v in t.results[key]) for t in (ours, theirs)]
        print(f"  {key:<24}{runs[0]}  |  {runs[1]}")
    if args.buckets is not None:
        # Each right after our download of that round: the pairs show the store's drift.
        for key, values in (
            ("raw boto3 GET MB/s", args.buckets.raw_get),
            ("raw S3 copy MB/s", args.buckets.raw_copy),
        ):
            print(f"  {key:<24}{' '.join(f'{v:.0f}' for v in values)}")
    print(
        "\nCPU cores busy, medians: server process (of which in the kernel) / "
        "client (httpx, curl, wrk or hey) / idle"
    )
    print(f"{'measure':<24}{'registry_proxy':>28}{'Go registry':>28}")
    for key in ours.results:
        cells = [
            f"{c.server:.2f} ({c.server_sys:.2f}) / {c.client:.2f} / {c.idle:.2f}"
            for c in (ours.median_cpu(key), theirs.median_cpu(key))
        ]
        print(f"{key:<24}{cells[0]:>28}{cells[1]:>28}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=parse_size, help="blob size (1GiB; with --proxy the layer's, 512MiB)"
    )
    parser.add_argument("--chunk", type=parse_size, default=64 * MiB, help="PATCH size (64MiB)")
    parser.add_argument("--repeat", type=int, default=4, help=f"blob rounds (<= {MAX_REPEAT})")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[16, 64])
    parser.add_argument("--seconds", type=int, default=5, help=f"per level (<= {MAX_WRK_SECONDS})")
    parser.add_argument("--requests", type=int, default=500_000, help="request cap per level")
    parser.add_argument("--log-level", default="info", help="both registries' log level")
    parser.add_argument("--profile", type=Path, help="py-spy registry_proxy into this directory")
    parser.add_argument("--native", action="store_true", help="py-spy with C frames (pauses it)")
    parser.add_argument("--s3", action="store_true", help="both registries on one Swift's S3 API")
    parser.add_argument(
        "--proxy", action="store_true", help="pull-through: both in front of one upstream"
    )
    args = parser.parse_args()
    if args.proxy and args.s3:
        parser.error("--proxy runs on the filesystem: no --s3")
    if args.size is None:
        args.size = (512 if args.proxy else 1024) * MiB
    args.seconds = max(1, min(args.seconds, MAX_WRK_SECONDS))
    args.repeat = max(1, min(args.repeat, MAX_REPEAT))
    needed = ("curl",) if args.proxy else ("wrk", "hey", "curl")
    found = {name: shutil.which(name) for name in needed}
    tools = {name: path for name, path in found.items() if path is not None}
    if len(tools) != len(found):
        missing = " ".join(sorted(set(found) - set(tools)))
        raise SystemExit(f"missing load generators: apt-get install {missing}")
    if args.proxy:
        import proxy_bench  # it imports this module's helpers

        proxy_bench.run(args, tools["curl"])
        return
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    pattern = memoryview(os.urandom(PATTERN))
    rounds = [
        tuple(
            Blob(args.size, f"{kind}-round-{n}".encode().ljust(HEAD_BYTES, b"."), pattern)
            for kind in ("mono", "chunk")
        )
        for n in range(args.repeat)
    ]

    with contextlib.ExitStack() as stack:
        work = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="blob-bench-", dir="/tmp"))
        )
        tokens = TokenServer(
            work / "ts", extra={"token": {"expiration": 3600}, "log": {"level": "warning"}}
        )
        stack.enter_context(tokens)
        tokens.add_user(USER, PASSWORD)
        answer = httpx.get(
            tokens.realm,
            params={"service": tokens.service, "scope": f"repository:{REPO}:pull,push"},
            auth=(USER, PASSWORD),
        )
        answer.raise_for_status()
        token: str = answer.json()["token"]

        args.buckets = None
        ours_s3 = go_s3 = None
        if args.s3:
            args.buckets = buckets = Buckets(stack.enter_context(Swift(work / "swift")))
            ours_s3 = buckets.swift.s3_config(buckets.ours)
            go_s3 = buckets.swift.s3_config(buckets.go)
            del go_s3["forcepathstyle"]  # 2.8 has no such key: an endpoint means path style
        proxy = RegistryProxy(
            work / "proxy",
            tokens.registry_auth(),
            extra={"log": {"level": args.log_level}},
            s3=ours_s3,
        )
        go = GoRegistry(
            work / "go",
            token=tokens.registry_auth(),
            log_level=args.log_level,
            s3=go_s3,
            redirect=False,
        )
        stack.enter_context(proxy)
        stack.enter_context(go)
        targets = [
            Target(
                "registry_proxy", proxy.url, lambda: proxy.proc.pid if proxy.proc else None, True
            ),
            Target("go-registry", go.url, lambda: go.pid, False),
        ]
        args.work = work
        for n, (mono, chunked) in enumerate(rounds):
            for target in reversed(targets) if n % 2 == 0 else targets:
                blob_round(target, token, mono, chunked, args, tools, n)
                if args.buckets is not None and target is targets[0]:
                    # Right after our download of the same object: the store as it was then.
                    args.buckets.raw_download(mono)
                    args.buckets.copy_in_store(mono)
            if n + 1 < len(rounds):
                if args.buckets is not None:
                    args.buckets.drop((mono, chunked))
                else:
                    drop_blobs([proxy.root, go.storage_dir], (mono, chunked))
        # HEAD asks for the last monolithic blob, still stored.
        small_requests(targets, token, rounds[-1][0].digest, args, tools)

    print_report(targets, args)
    if args.profile is not None:
        summarize_profiles(args.profile)


if __name__ == "__main__":
    main()
