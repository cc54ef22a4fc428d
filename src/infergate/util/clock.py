"""Wall-clock timestamps in the Kubernetes wire format."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """Now, as an RFC 3339 UTC timestamp with second precision (``2026-12-06T03:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_timestamp(seconds: float) -> str:
    """A Unix time as an RFC 3339 UTC timestamp with second precision."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp (``...Z`` or ``...+00:00``) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
