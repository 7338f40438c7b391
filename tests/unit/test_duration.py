"""authcore.duration: Go's grammar for the registry, and the token server's seconds over it."""

from __future__ import annotations

import datetime as dt

import pytest

from authcore.duration import (
    MAX_SECONDS,
    DurationError,
    format_duration,
    parse_duration,
    parse_seconds,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", dt.timedelta(seconds=90)),
        ("2h", dt.timedelta(hours=2)),
        ("168h", dt.timedelta(hours=168)),
        ("1h30m", dt.timedelta(hours=1, minutes=30)),
        ("1.5h", dt.timedelta(minutes=90)),
        ("500ms", dt.timedelta(milliseconds=500)),
        ("1m0.25s", dt.timedelta(seconds=60.25)),
        ("3us", dt.timedelta(microseconds=3)),
        ("3\u00b5s", dt.timedelta(microseconds=3)),
        ("-2m", dt.timedelta(minutes=-2)),
        ("0", dt.timedelta(0)),
    ],
)
def test_go_durations(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "h",
        "1d",
        "1 h",
        " 1h",
        "1h ",
        ".h",
        "1..5h",
        "\u00b2h",
        "9" * 5000 + "h",
        "3000000h",
    ],
)
def test_not_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_durations_are_reported_as_go_writes_them() -> None:
    assert format_duration(dt.timedelta(hours=168)) == "168h0m0s"
    assert format_duration(dt.timedelta(seconds=90)) == "1m30s"
    assert format_duration(dt.timedelta(0)) == "0s"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2562047h47m16.854775807s", dt.timedelta(seconds=9223372036, microseconds=854775)),
        ("+90s", dt.timedelta(seconds=90)),
        ("1h1h", dt.timedelta(hours=2)),
        ("0.5us", dt.timedelta(0)),  # below a microsecond: gone, as timedelta holds no less
    ],
)
def test_go_durations_at_their_edges(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2562047h47m16.854775808s",  # one nanosecond past Go's int64
        "-",
        "+",
        "-0.",
        "1w",
        "1H",
        "\u0661h",  # ARABIC-INDIC DIGIT ONE
        "\u0661\u0662",
        "1\u0661s",
        "1h\x00",
        "1" * 31 + "ns",
        "." + "1" * 31 + "s",
        "0h" * 200,
    ],
)
def test_not_go_durations_either(text: str) -> None:
    with pytest.raises(DurationError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("45s", 45),
        ("90m", 5400),
        ("12h", 43200),
        ("30d", 30 * 86400),
        ("2w", 14 * 86400),
        ("30D", 30 * 86400),
        (" 12h\n", 43200),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("1d12h", 129600),
        ("90000ms", 90),
        ("+1h", 3600),
        ("036500d", 36500 * 86400),
        (f"{MAX_SECONDS}", MAX_SECONDS),
        (f"{MAX_SECONDS}s", MAX_SECONDS),
    ],
)
def test_token_server_seconds(text: str, seconds: int) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "a duration such as"),
        ("   ", "a duration such as"),
        ("soon", "a duration such as"),
        ("30x", "unknown unit"),
        ("1.", "missing unit"),
        ("0", "positive"),
        ("0s", "positive"),
        ("-1h", "positive"),
        ("-3600", "a duration such as"),
        ("1.5s", "whole number of seconds"),
        ("500ms", "whole number of seconds"),
        ("\u0661\u0662", "a duration such as"),
        ("\u0663\u0660d", "a duration such as"),
        ("\uff11h", "a duration such as"),  # FULLWIDTH DIGIT ONE
        (f"{MAX_SECONDS + 1}", "at most 100 years"),
        ("2900000d", "at most 100 years"),
        ("999999999999w", "at most 100 years"),
        ("9" * 5000, "at most 100 years"),
        ("9" * 5000 + "h", "a duration such as"),  # longer than any duration is written
        ("1h" * 5000, "a duration such as"),
    ],
)
def test_token_server_seconds_refused(text: str, message: str) -> None:
    with pytest.raises(DurationError, match=message) as refused:
        parse_seconds(text)
    assert len(str(refused.value)) < 200  # the message quotes a bounded part of the input


def test_a_refusal_is_a_value_error() -> None:
    # Settings validation and the command line catch ValueError.
    assert issubclass(DurationError, ValueError)
