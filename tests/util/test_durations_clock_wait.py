import asyncio
import time
from datetime import UTC, datetime

import pytest

from infergate.util.clock import parse_timestamp, utc_now, utc_timestamp
from infergate.util.durations import (
    DurationError,
    format_go_duration,
    parse_go_duration,
    parse_go_duration_nanos,
    parse_seconds,
)
from infergate.util.wait import WaitTimeout, async_wait_until, wait_until


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("-1.5s", -1.5),
        ("0", 0.0),
        ("250us", 250e-6),
        ("250µs", 250e-6),
        ("10ns", 10e-9),
        ("2h45m30.5s", 2 * 3600 + 45 * 60 + 30.5),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "1x", "s", "1m30", "1.2.3s", "--1s", "1s "[0:2] + "z"])
def test_invalid_go_durations(text: str) -> None:
    with pytest.raises(DurationError):
        parse_go_duration(text)


def test_nanos_are_exact() -> None:
    assert parse_go_duration_nanos("1h") == 3600 * 10**9
    assert parse_go_duration_nanos("1.000000001s") == 1_000_000_001


def test_parse_seconds_takes_bare_numbers() -> None:
    assert parse_seconds("2") == 2.0
    assert parse_seconds("0.25") == 0.25
    assert parse_seconds("1m30s") == 90.0
    with pytest.raises(DurationError):
        parse_seconds("soon")


@pytest.mark.parametrize(("seconds", "text"), [(30, "30s"), (1.5, "1500ms"), (0.25, "250ms"), (0, "0s")])
def test_format_round_trips(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text
    assert parse_go_duration(text) == seconds


def test_clock_formats() -> None:
    now = utc_now()
    assert now.endswith("Z") and len(now) == 20
    assert abs((parse_timestamp(now) - datetime.now(UTC)).total_seconds()) < 5
    assert utc_timestamp(0) == "1970-01-01T00:00:00Z"
    assert parse_timestamp("1970-01-01T00:00:00+00:00") == parse_timestamp("1970-01-01T00:00:00Z")


def test_wait_until_returns_the_value() -> None:
    calls = []

    def condition() -> int | None:
        calls.append(1)
        return 7 if len(calls) >= 3 else None

    assert wait_until(condition, 5, interval=0.001) == 7
    assert len(calls) == 3


def test_wait_until_times_out_with_a_message() -> None:
    start = time.monotonic()
    with pytest.raises(WaitTimeout, match="the moon"):
        wait_until(lambda: False, 0.1, interval=0.01, what="the moon")
    assert 0.09 <= time.monotonic() - start < 2


async def test_async_wait_until_accepts_sync_and_async_conditions() -> None:
    box = {"n": 0}

    async def acond() -> str | None:
        box["n"] += 1
        return "ok" if box["n"] >= 2 else None

    assert await async_wait_until(acond, 5, interval=0.001) == "ok"
    assert await async_wait_until(lambda: 3, 1) == 3
    with pytest.raises(WaitTimeout):
        await async_wait_until(lambda: None, 0.05, interval=0.01)
    await asyncio.sleep(0)
