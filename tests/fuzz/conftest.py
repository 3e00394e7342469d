"""Fixtures of the fuzz tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz import targets as T


@pytest.fixture(scope="module")
def mi_env() -> Iterator[T.MIEnv]:
    """An MI dispatcher over a real (broker-less) EventKafka, one per test module."""
    env = T.MIEnv()
    try:
        yield env
    finally:
        env.close()
