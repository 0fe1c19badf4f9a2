"""The one Retry-After reader both services use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.clients.retry_after import retry_after_seconds

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 0.5 ", 0.5),
        ("-2", 0.0),  # never negative
        ("Wed, 01 May 2024 12:00:07 GMT", 7.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # a date gone by: now
        ("Wednesday, 01-May-24 12:00:30 GMT", 30.0),  # RFC 850, which HTTP-date also allows
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),  # "never" is no answer: the caller's own backoff applies
    ],
)
def test_seconds_and_dates(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == seconds
