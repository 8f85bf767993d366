"""The pipeline's clock: every timestamp it stores is UTC, ISO-8601 with microseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """The stored form of an instant; strings of this form sort in time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def utc_day(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()
