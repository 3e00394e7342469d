"""``RateLimitedLog``: one line per interval, then a count of what it held back."""

from __future__ import annotations

import logging

import pytest

from event_kafka import ratelimit
from event_kafka.ratelimit import RateLimitedLog


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_one_line_per_interval_then_the_count_of_suppressed_lines(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = _Clock()
    monkeypatch.setattr(ratelimit, "time", clock)  # the module's clock, not the process's
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), interval=10.0)
    with caplog.at_level(logging.WARNING, "test.ratelimit"):
        assert log.warning("broker %s down", "b1")
        clock.now += 9.9
        assert not log.warning("broker %s down", "b1")
        assert not log.error("broker %s down", "b1")
        assert log.suppressed == 2
        clock.now += 0.1
        assert log.warning("broker %s down", "b1")
    assert [r.getMessage() for r in caplog.records] == [
        "broker b1 down",
        "broker b1 down (2 similar lines suppressed)",
    ]
    assert log.suppressed == 0
