"""How many request bodies this process takes into storage at once, overall and per subject.

An upload in progress holds up to about 3 MiB here (what the HTTP layer
gathers for it, and the batches queued for writing), so a slow client that
opens many of them could make the process hold what it likes; with these
caps it holds at most about 3 MiB times `http.max_uploads`. A request past a
cap is refused at once (429, before its body is read), so the client backs
off and retries. The counts are this process's own: the memory they protect
is too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from registry_proxy.errors import RegistryError

__all__ = ["RETRY_AFTER", "UploadSlots"]

# Seconds a refused client is asked to wait: uploads end in seconds to minutes.
RETRY_AFTER = 5


class UploadSlots:
    def __init__(self, total: int, per_subject: int) -> None:
        self._total = total
        self._per_subject = per_subject
        self._open = 0
        self._by_subject: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, subject: str) -> Iterator[None]:
        """A slot for one request body of `subject`, or `TOOMANYREQUESTS`."""
        held = self._by_subject.get(subject, 0)
        if self._open >= self._total:
            raise _refusal("this registry takes no more uploads at the moment", self._total)
        if held >= self._per_subject:
            raise _refusal("too many uploads of yours at once", self._per_subject)
        self._open += 1
        self._by_subject[subject] = held + 1
        try:
            yield
        finally:
            self._open -= 1
            left = self._by_subject[subject] - 1
            if left:
                self._by_subject[subject] = left
            else:
                # Gone with its last upload: the table holds only subjects uploading now.
                del self._by_subject[subject]

    @property
    def open(self) -> int:
        return self._open


def _refusal(message: str, limit: int) -> RegistryError:
    return RegistryError(
        "TOOMANYREQUESTS",
        {"limit": limit},
        message=message,
        headers={"Retry-After": str(RETRY_AFTER)},
    )
