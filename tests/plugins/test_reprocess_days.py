"""The reprocess DAG's range of days: newest first, at most 31, never in the future, errors naming the param."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline_airflow.reprocess import MAX_DAYS, requested_days


def test_a_range_is_every_day_from_first_to_last_newest_first():
    assert requested_days("2026-11-28", "2026-12-01") == ["2026-12-01", "2026-11-30", "2026-11-29", "2026-11-28"]
    assert requested_days("2026-11-28", None) == ["2026-11-28"]


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-11-28", "2026-11-27", "'last_day' 2026-11-27 is before 'day' 2026-11-28"),
        ("2026-01-01", "2026-03-01", f"60 days asked; one run reprocesses at most {MAX_DAYS}"),
        ("28/11/2026", None, "must be dates YYYY-MM-DD"),
    ],
)
def test_a_bad_range_is_refused_naming_the_param(first, last, message):
    with pytest.raises(AirflowFailException, match=message):
        requested_days(first, last)


def test_a_range_into_the_future_is_refused():
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    with pytest.raises(AirflowFailException, match=f"'last_day' {tomorrow} is in the future"):
        requested_days(utcnow().date().isoformat(), tomorrow)
