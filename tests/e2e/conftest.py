"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.kamailio import SKIP, Kamailio
from tests.support import missing
from tests.support.sipp import free_udp_port, python_path


@pytest.fixture(scope="module")
def kamailio_prerequisites() -> None:
    """Skips the Kamailio tests without Kamailio/SIPp (fails under ``CI=true``)."""
    if SKIP:
        missing(SKIP)


@pytest.fixture
def kamailio_factory(tmp_path: Path) -> Iterator[Callable[..., Kamailio]]:
    started: list[Kamailio] = []

    def start(**env_vars: str) -> Kamailio:
        env = dict(os.environ)
        env.pop("PYTHONHOME", None)
        env["PYTHONPATH"] = python_path()
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(env_vars)
        k = Kamailio(tmp_path / f"kamailio-{len(started)}", env, free_udp_port())
        started.append(k)
        k.start()
        return k

    yield start
    for k in started:
        k.stop()
