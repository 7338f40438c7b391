"""A response's head goes out with its first body bytes, or alone at the loop's next turn."""

from __future__ import annotations

import asyncio
from typing import Any

from authcore.http_server import _JOIN_LIMIT, _HeadFirst


class Recording(asyncio.Transport):
    """What the kernel would be asked to send, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        assert not self.closed, "a write after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def run(steps: Any) -> Recording:
    transport = Recording()
    asyncio.run(steps(_HeadFirst(transport), transport))
    return transport


def test_a_small_answer_is_one_write() -> None:
    async def steps(head_first: _HeadFirst, transport: Recording) -> None:
        head_first.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert transport.writes == []
        head_first.write(b"body")
        assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        head_first.write(b"more")  # later writes go as they come
        assert transport.writes[1:] == [b"more"]
        await asyncio.sleep(0)  # the pending flush finds nothing left

    assert len(run(steps).writes) == 2


def test_a_head_without_a_body_goes_at_the_next_turn() -> None:
    async def steps(head_first: _HeadFirst, transport: Recording) -> None:
        head_first.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        assert transport.writes == []
        await asyncio.sleep(0)
        assert transport.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
        # A body that comes later (a slow read of a blob) goes after it, on its own.
        await asyncio.sleep(0.01)
        head_first.write(b"late")
        head_first.write(b"later")
        assert transport.writes[1:] == [b"late", b"later"]

    run(steps)


def test_a_large_body_is_not_copied_behind_the_head() -> None:
    body = b"x" * (_JOIN_LIMIT + 1)

    async def steps(head_first: _HeadFirst, transport: Recording) -> None:
        head_first.write(b"head")
        head_first.write(body)
        assert transport.writes == [b"head", body]

    run(steps)


def test_a_flush_sends_a_held_head_once() -> None:
    async def steps(head_first: _HeadFirst, transport: Recording) -> None:
        head_first.write(b"head")
        head_first.flush()
        head_first.flush()
        await asyncio.sleep(0)
        head_first.write(b"body")

    assert run(steps).writes == [b"head", b"body"]


def test_close_sends_a_held_head_first() -> None:
    async def steps(head_first: _HeadFirst, transport: Recording) -> None:
        head_first.write(b"head")
        head_first.close()
        assert transport.writes == [b"head"] and transport.closed
        await asyncio.sleep(0)  # the pending flush must not write after the close
        assert head_first.is_closing()

    assert run(steps).writes == [b"head"]


def test_nothing_is_written_to_a_closing_transport() -> None:
    async def steps(head_first: _HeadFirst, transport: Recording) -> None:
        transport.close()
        head_first.write(b"head")
        await asyncio.sleep(0)

    assert run(steps).writes == []
