"""The credentials sent to an upstream, and what gives them: the configuration, or a program.

The client asks its `CredentialSource` each time it is about to send
credentials (as Basic to the upstream, or to its token realm), so a source
decides how long what it gave stays good. When the upstream refuses them,
the client asks once more, naming the refused ones: a source that can have
others by now (a helper whose token rotated) gives those, any other gives
the same again, and the refusal stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CredentialSource", "Credentials", "StaticCredentials"]


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


class CredentialSource(Protocol):
    async def __call__(self, refused: Credentials | None = None) -> Credentials | None:
        """The credentials to send (None: none, go anonymously); given `refused`, others if
        this source can have others now. Raises UpstreamUnavailable when it cannot say."""
        ...

    async def aclose(self) -> None:
        """Ends whatever the source has under way; the client that owns it calls this."""
        ...


class StaticCredentials:
    """The configured username and password (or none): the same for the client's life."""

    def __init__(self, credentials: Credentials | None) -> None:
        self._credentials = credentials

    def __repr__(self) -> str:
        return "StaticCredentials()"

    async def __call__(self, refused: Credentials | None = None) -> Credentials | None:
        return self._credentials

    async def aclose(self) -> None:
        pass
