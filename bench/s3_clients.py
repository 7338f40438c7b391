"""Which S3 client moves bytes fastest on this machine's Swift: aiobotocore, boto3 in threads, obstore.

One Swift (tests/support/swift.py) on 127.0.0.1; for every client a blob of
`--size` bytes (default 512 MiB) is written as one PUT, as a multipart upload
of `--part-size` parts sent one after another (how an upload's PATCH reaches
the store), and read back in 1 MiB chunks, `--rounds` times, clients taking
turns. Prints the median MB/s of each, and each client's ratio to the best.

    .venv/bin/python bench/s3_clients.py [--size BYTES] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.swift import ACCESS_KEY, REGION, SECRET_KEY, Swift

MiB = 1024 * 1024
READ_CHUNK = MiB


def boto_config() -> Any:
    from botocore.config import Config

    return Config(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=16,
    )


class AioBotocore:
    name = "aiobotocore"

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.endpoint, self.bucket = endpoint, bucket

    async def __aenter__(self) -> AioBotocore:
        from aiobotocore.session import get_session

        self._cm = get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=boto_config(),
        )
        self.client = await self._cm.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(None, None, None)

    async def put(self, key: str, data: bytes) -> None:
        await self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def multipart(self, key: str, data: bytes, part: int) -> None:
        up = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        parts = []
        for n, start in enumerate(range(0, len(data), part), 1):
            r = await self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=up["UploadId"],
                PartNumber=n,
                Body=data[start : start + part],
            )
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        await self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
        )

    async def get(self, key: str) -> int:
        r = await self.client.get_object(Bucket=self.bucket, Key=key)
        total = 0
        async with r["Body"] as body:
            while chunk := await body.read(READ_CHUNK):
                total += len(chunk)
        return total


class Boto3Threads:
    name = "boto3 in threads"

    def __init__(self, endpoint: str, bucket: str) -> None:
        import boto3

        self.bucket = bucket
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=boto_config(),
        )

    async def __aenter__(self) -> Boto3Threads:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.client.close()

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=key, Body=data)

    async def multipart(self, key: str, data: bytes, part: int) -> None:
        c = self.client
        up = await asyncio.to_thread(c.create_multipart_upload, Bucket=self.bucket, Key=key)
        parts = []
        for n, start in enumerate(range(0, len(data), part), 1):
            r = await asyncio.to_thread(
                c.upload_part,
                Bucket=self.bucket,
                Key=key,
                UploadId=up["UploadId"],
                PartNumber=n,
                Body=data[start : start + part],
            )
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        await asyncio.to_thread(
            c.complete_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            UploadId=up["UploadId"],
            MultipartUpload={"Parts": parts},
        )

    async def get(self, key: str) -> int:
        r = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=key)
        body = r["Body"]
        total = 0
        while chunk := await asyncio.to_thread(body.read, READ_CHUNK):
            total += len(chunk)
        body.close()
        return total


class Obstore:
    name = "obstore"

    def __init__(self, endpoint: str, bucket: str) -> None:
        from obstore.store import S3Store

        self.store = S3Store(
            bucket,
            endpoint=endpoint,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region=REGION,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

    async def __aenter__(self) -> Obstore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def put(self, key: str, data: bytes) -> None:
        import obstore

        await obstore.put_async(self.store, key, data, use_multipart=False)

    async def multipart(self, key: str, data: bytes, part: int) -> None:
        import obstore

        # Its own multipart writer: parts of `part` bytes, one at a time.
        await obstore.put_async(self.store, key, data, chunk_size=part, max_concurrency=1)

    async def get(self, key: str) -> int:
        import obstore

        r = await obstore.get_async(self.store, key)
        total = 0
        async for chunk in r.stream(min_chunk_size=READ_CHUNK):
            total += len(chunk)
        return total


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


async def measure(swift: Swift, size: int, part: int, rounds: int) -> None:
    bucket = swift.new_bucket("bench")
    data = os.urandom(size)
    clients = [AioBotocore, Boto3Threads, Obstore]
    results: dict[str, dict[str, list[float]]] = {
        c.name: {"put": [], "multipart": [], "get": []} for c in clients
    }
    for round_ in range(rounds):
        for factory in clients:
            async with factory(swift.endpoint, bucket) as client:
                key = f"{factory.name.split()[0]}/{round_}"
                mb = size / 1e6
                rows = results[factory.name]
                rows["put"].append(mb / await timed(lambda c=client, k=key: c.put(k, data)))
                rows["multipart"].append(
                    mb / await timed(lambda c=client, k=key: c.multipart(k + "-mp", data, part))
                )
                rows["get"].append(mb / await timed(lambda c=client, k=key: c.get(k)))
                print(
                    f"round {round_ + 1} {factory.name}: "
                    + ", ".join(f"{m} {v[-1]:.0f}" for m, v in rows.items()),
                    flush=True,
                )
    print(f"\nmedian MB/s of {rounds} rounds, {size // MiB} MiB, parts of {part // MiB} MiB")
    print("| client | PUT | multipart PUT | GET |\n| --- | ---: | ---: | ---: |")
    best = {
        m: max(statistics.median(r[m]) for r in results.values())
        for m in ("put", "multipart", "get")
    }
    for name, rows in results.items():
        cells = [
            f"{statistics.median(rows[m]):.0f} ({statistics.median(rows[m]) / best[m]:.2f})"
            for m in ("put", "multipart", "get")
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512 * MiB)
    parser.add_argument("--part-size", type=int, default=16 * MiB)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="s3b", dir="/tmp") as tmp, Swift(Path(tmp)) as swift:
        asyncio.run(measure(swift, args.size, args.part_size, args.rounds))


if __name__ == "__main__":
    main()
