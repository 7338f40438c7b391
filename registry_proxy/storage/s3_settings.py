"""The S3 driver's settings: the Go registry's `storage.s3` keys that this registry honours.

One model for the configuration (`storage.s3`, whose checks it carries) and for
the driver made from it. Apart from `s3`, so that reading a configuration does
not need the S3 client library, which only the `s3` extra installs.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, model_validator

__all__ = ["DEFAULT_CHUNK_SIZE", "MAX_CHUNK_SIZE", "MIN_PART_SIZE", "S3Settings"]

MiB = 1024 * 1024
# S3's lower bound for every part of a multipart upload but the last.
MIN_PART_SIZE = 5 * MiB
DEFAULT_CHUNK_SIZE = 2 * MIN_PART_SIZE  # the Go driver's default
MAX_CHUNK_SIZE = 5 * 1024 * MiB

_ENDPOINT = re.compile(r"(https?://)?[A-Za-z0-9.\-\[\]:]+(:\d+)?/?")
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")


class S3Settings(BaseModel):
    """The Go registry's `storage.s3` keys (those this registry honours)."""

    # As every section of the configuration: an unknown key is refused, and nothing changes
    # a value once checked.
    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(min_length=1)
    region: str = "us-east-1"
    # An S3-compatible endpoint (Swift, MinIO, Ceph); without one, AWS's own for `region`.
    regionendpoint: str | None = None
    accesskey: str | None = None
    secretkey: SecretStr | None = None
    # https for an endpoint given without a scheme.
    secure: StrictBool = True
    # SigV4 (else the older SigV2 signatures some S3 clones still want).
    v4auth: StrictBool = True
    rootdirectory: str = ""
    # The multipart part size: at least S3's 5 MiB, at most 5 GiB.
    chunksize: int = Field(default=DEFAULT_CHUNK_SIZE, ge=MIN_PART_SIZE, le=MAX_CHUNK_SIZE)
    # Path-style URLs (endpoint/bucket/key); unset: when `regionendpoint` is set, as the
    # Go registry 2.8 always did.
    forcepathstyle: StrictBool | None = None

    @model_validator(mode="after")
    def _checked(self) -> S3Settings:
        if self.regionendpoint is not None and not _ENDPOINT.fullmatch(self.regionendpoint):
            raise ValueError("regionendpoint must be an http(s) URL or a host[:port]")
        if ".." in self.rootdirectory.split("/"):
            raise ValueError("rootdirectory must not contain '..'")
        if not _BUCKET.fullmatch(self.bucket):
            raise ValueError("bucket must be an S3 bucket name")
        if (self.accesskey is None) != (self.secretkey is None):
            # Neither: the client library's own (environment, instance role).
            raise ValueError("give accesskey and secretkey together, or neither")
        return self

    @property
    def path_style(self) -> bool:
        if self.forcepathstyle is None:
            return bool(self.regionendpoint)
        return self.forcepathstyle
