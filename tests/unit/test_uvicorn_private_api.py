"""What `authcore/http_server.py` and `serve.py` rely on inside uvicorn, checked in the one installed.

The guarded protocol subclasses uvicorn's `HttpToolsProtocol`, which is not
public API: its methods, their parameters and the attributes it keeps can
change in any release. pyproject.toml pins the minor series these checks
passed on; a newer uvicorn must pass them before the pin moves. Where our
protocol replaces a method rather than extending it (`data_received`,
`on_body`) or stands in for an object the request cycle uses (its body
buffer, its transport), the check is on uvicorn's own source: a digest that
changes when that method does, or the calls the cycle makes.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import httptools
import pytest
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http import flow_control, httptools_impl
from uvicorn.server import Server, ServerState

from authcore import http_server

Protocol = httptools_impl.HttpToolsProtocol
Cycle = httptools_impl.RequestResponseCycle


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def _digest(function: Callable[..., Any]) -> str:
    source = textwrap.dedent(inspect.getsource(function))
    return hashlib.sha256(source.encode()).hexdigest()


def test_the_pinned_series_is_the_installed_one() -> None:
    assert uvicorn.__version__.startswith("0.55.")


# Overridden: all but the last two call uvicorn's own first or after; those
# two are replaced outright (their source is pinned below).
OVERRIDDEN = {
    "__init__": ["self", "config", "server_state", "app_state", "_loop"],
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "on_message_begin": ["self"],
    "on_headers_complete": ["self"],
    "on_message_complete": ["self"],
    "shutdown": ["self"],
    "data_received": ["self", "data"],
    "on_body": ["self", "body"],
}
CALLED = {"_unset_keepalive_if_required": ["self"], "_should_upgrade": ["self"]}


@pytest.mark.parametrize("name", sorted(OVERRIDDEN | CALLED))
def test_the_protocol_methods_we_override_or_call(name: str) -> None:
    assert _parameters(getattr(Protocol, name)) == (OVERRIDDEN | CALLED)[name]


def test_every_override_is_checked_here() -> None:
    ours = vars(http_server.GuardedHttpToolsProtocol)
    assert {name for name in ours if hasattr(Protocol, name) and callable(ours[name])} == set(
        OVERRIDDEN
    )


def test_the_loop_argument_is_optional() -> None:
    assert inspect.signature(Protocol.__init__).parameters["_loop"].default is None


# uvicorn 0.55.0's, as our `data_received` and `on_body` were written against:
# if one changes, read the change and carry it into ours before moving the pin.
REPLACED = {
    "data_received": "02c2572f1df559070eba7f206a3f7e251782f5af4aaae194fc1ffb67f24c3873",
    "on_body": "415b4cef19fba083055fe4466dd259ce6abac6d194caf566ad9e7be0c639ca21",
}


@pytest.mark.parametrize("name", sorted(REPLACED))
def test_the_methods_we_replace_are_as_we_read_them(name: str) -> None:
    assert _digest(getattr(Protocol, name)) == REPLACED[name]


@pytest.fixture
def protocol() -> Iterator[httptools_impl.HttpToolsProtocol]:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        pass

    loop = asyncio.new_event_loop()
    try:
        config = Config(app, http="httptools", ws="none", lifespan="off", log_config=None)
        yield Protocol(config, ServerState(), {}, loop)
    finally:
        loop.close()


def test_the_protocol_attributes_we_read_or_set(
    protocol: httptools_impl.HttpToolsProtocol,
) -> None:
    for name in ("loop", "parser", "cycle", "flow", "transport", "client", "server_state"):
        assert hasattr(protocol, name), name
    assert isinstance(protocol.parser, httptools.HttpRequestParser)
    assert isinstance(protocol.server_state.default_headers, list)


def test_the_parser_takes_a_memoryview_and_raises_what_we_catch() -> None:
    # `data_received` feeds a head's bytes as a slice of the read, uncopied.
    heads: list[bool] = []

    class Callbacks:
        def on_headers_complete(self) -> None:
            heads.append(True)

    parser = httptools.HttpRequestParser(Callbacks())
    parser.feed_data(memoryview(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"))
    assert heads == [True] and not parser.should_upgrade()
    with pytest.raises(httptools.HttpParserError):
        parser.feed_data(b"\x00\x01 not http\r\n\r\n")
    assert issubclass(httptools.HttpParserUpgrade, Exception)


def test_the_status_lines_and_body_pause() -> None:
    for status in (400, 431):
        assert httptools_impl.STATUS_LINE[status].startswith(b"HTTP/1.1 %d " % status)
    assert flow_control.HIGH_WATER_LIMIT == 65536  # what BODY_HIGH_WATER is weighed against


def test_flow_control_as_our_stamped_flow_extends_it() -> None:
    assert _parameters(flow_control.FlowControl.__init__) == ["self", "transport"]
    for name in ("pause_reading", "resume_reading"):
        assert _parameters(getattr(flow_control.FlowControl, name)) == ["self"]

    class Transport:
        def pause_reading(self) -> None:
            pass

        def resume_reading(self) -> None:
            pass

    flow = flow_control.FlowControl(Transport())  # type: ignore[arg-type]
    assert flow.read_paused is False
    flow.pause_reading()
    assert flow.read_paused is True


def test_the_request_cycle_as_our_stand_ins_meet_it() -> None:
    parameters = _parameters(Cycle.__init__)
    assert {"transport", "flow", "expect_100_continue"} <= set(parameters)
    source = inspect.getsource(Cycle)
    # `_HeadFirst` stands in for the cycle's transport: these calls are all it makes.
    assert set(re.findall(r"self\.transport\.(\w+)", source)) == {"write", "close", "is_closing"}
    # `_BodyParts` stands in for its body: appended to by the protocol, read
    # whole with bytes(), and a fresh bytearray put back once the app took it.
    receive = inspect.getsource(Cycle.receive)
    assert "bytes(self.body)" in receive and "self.body = bytearray()" in receive
    init = inspect.getsource(Cycle.__init__)
    for attribute in ("body", "response_complete", "message_event", "waiting_for_100_continue"):
        assert f"self.{attribute} =" in init, attribute


def test_what_serve_uses() -> None:
    options = set(inspect.signature(Config.__init__).parameters)
    assert {
        "host",
        "port",
        "http",
        "ws",
        "log_config",
        "access_log",
        "server_header",
        "timeout_graceful_shutdown",
        "ssl_certfile",
        "ssl_keyfile",
        "proxy_headers",
        "forwarded_allow_ips",
    } <= options
    assert _parameters(Config.bind_socket) == ["self"]
    assert _parameters(Server.run) == ["self", "sockets"]
    assert "self.started = False" in inspect.getsource(Server.__init__)
    # serve's stop-signal handler runs because uvicorn raises a captured
    # signal again, for the handler it found, once it has shut down.
    assert "signal.raise_signal" in inspect.getsource(Server.capture_signals)
