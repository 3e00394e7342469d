"""Missing prerequisites: a skip on a developer's machine, a failure in CI.

``make test`` installs every tool the suite needs (scripts/install-system-deps.sh --e2e) and CI has
../shared (the OpenSIPS tarball), so in CI (``CI=true``, as CI services set it and .ci/run
exports it) a missing one means the set-up is broken: those tests must not pass by skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """``CI`` set to a true value (``true``, ``1``, ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def missing(reason: str) -> NoReturn:
    """Skip for ``reason``; under ``CI=true`` fail instead."""
    if in_ci():
        pytest.fail(f"CI=true: a prerequisite is missing, not skipping: {reason}", pytrace=False)
    pytest.skip(reason)
