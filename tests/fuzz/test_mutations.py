"""The fuzz harness can fail: fixed bugs put back, the fuzz tests must catch them.

Each test here re-introduces, for its own duration only, one bug the fuzzing found and that
was fixed (its guard monkeypatched away, nothing else changed), then runs the fuzz tests of
``test_fuzz_inputs.py`` (and the long run) that should catch it: each must now fail with an
oracle violation, :class:`~tests.fuzz.targets.FuzzFailure`. A fuzz test that passes with its
bug back cannot fail, which is what the old "known bug" classifier hid.

A mutation names the private detail it removes. When the code under test moves it, the
mutation fails with an AttributeError naming it: point the mutation at the guard's new
place (the bug class stays the same), do not delete the test.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, settings

import event_kafka.cjson
import event_kafka.kafka_socket
import event_kafka.service.config
import event_kafka.service.ingest.notification
from tests.fuzz import longrun
from tests.fuzz import targets as T
from tests.fuzz import test_fuzz_inputs as F

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", autouse=True)
def _quiet() -> Iterator[None]:
    restore = T.quiet_logs()
    yield
    restore()


def mutate(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, value: Any) -> None:
    """Replace ``module.name`` for this test; a clear error when the guard has moved."""
    if not hasattr(module, name):
        raise AttributeError(
            f"{module.__name__}.{name} is gone: point this mutation at where that guard is now"
        )
    monkeypatch.setattr(module, name, value)


def fuzz_failure(exc: BaseException) -> T.FuzzFailure | None:
    """The oracle violation in ``exc`` (hypothesis may group several failures)."""
    if isinstance(exc, T.FuzzFailure):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = fuzz_failure(inner)
        if found is not None:
            return found
    return None


def must_fail(test: Callable[..., None], **kwargs: Any) -> str:
    """Run one fuzz test; return the oracle violation it reports. Fails if the test passes.

    A hypothesis test runs with its own budget but stops at the first failure, unshrunk
    (shrinking a failure costs minutes and proves nothing more here)."""
    own = getattr(test, "_hypothesis_internal_use_settings", None)
    if own is not None:
        fast = settings(own, phases=[Phase.generate], report_multiple_bugs=False)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(test, "_hypothesis_internal_use_settings", fast)
            return _must_fail(test, kwargs)
    return _must_fail(test, kwargs)


def _must_fail(test: Callable[..., None], kwargs: dict[str, Any]) -> str:
    try:
        test(**kwargs)
    except Exception as exc:  # ExceptionGroup included: hypothesis reports several bugs so
        found = fuzz_failure(exc)
        if found is None:
            raise  # not the oracle: something else broke
        return str(found)
    pytest.fail(f"{test.__name__}({kwargs}) passed with a fixed bug re-introduced")


# -- KB2 and KB1 in the MI: the JSON depth guard, the lone surrogate check ----------------------


def test_without_the_json_depth_guard_the_mi_fuzz_fails(
    monkeypatch: pytest.MonkeyPatch, mi_env: T.MIEnv
) -> None:
    """Nesting the decoder accepts but a recursive encoder cannot print again."""
    mutate(monkeypatch, event_kafka.cjson, "MAX_JSON_DEPTH", sys.maxsize)
    got = must_fail(F.test_mi_deep_nesting, mi_env=mi_env, method="raise_event")
    assert "-32000" in got, got  # a command that failed internally
    with pytest.raises(AssertionError):
        F.test_kb2_mi_raise_event_deeply_nested_params()


def test_without_the_lone_surrogate_check_the_mi_fuzz_fails(
    monkeypatch: pytest.MonkeyPatch, mi_env: T.MIEnv
) -> None:
    """A \\uD800 escape decoded to a str that cannot be encoded again (reply, record)."""
    mutate(monkeypatch, event_kafka.cjson, "_SURROGATE_ESCAPE", re.compile(r"(?!)"))
    for test in (F.test_mi_random_json, F.test_mi_generated_requests):
        got = must_fail(test, mi_env=mi_env)
        assert "serialisable" in got or "-32000" in got, got


# -- KB4/KB12: secrets in Kafka socket and broker_id errors --------------------------------------


def _unmasked(text: str, body: int) -> str:
    return text


def test_without_the_socket_error_redaction_the_socket_fuzz_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Error messages quoting the socket as written, passwords included."""
    mutate(monkeypatch, event_kafka.kafka_socket, "_masked", _unmasked)
    for test in (F.test_socket_grammar, F.test_socket_generated):
        got = must_fail(test)
        assert "secret" in got, got
    assert "secret" in must_fail(F.test_socket_parsers_on_every_secret_property_name)


def test_without_the_socket_error_redaction_the_long_run_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The long run counts nothing as "known": a failure is exit status 1, its input printed
    and saved."""
    mutate(monkeypatch, event_kafka.kafka_socket, "_masked", _unmasked)
    args = ["--engine", "random", "--targets", "socket", "--inputs", "300", "--out", str(tmp_path)]
    code = longrun.main(args)
    out = capsys.readouterr().out
    assert code == 1, out
    assert "secret in error" in out and "input: b'" in out, out
    saved = sorted(tmp_path.glob("socket-*-1.bin"))
    assert saved and saved[0].read_bytes(), list(tmp_path.iterdir())
    assert "password" in saved[0].read_text(errors="replace")


# -- KB6: secrets in repr(ServiceSettings) -------------------------------------------------------


def test_with_a_settings_repr_that_shows_the_config_the_config_fuzz_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """repr() of the loaded settings printing the file's values, broker_ids included."""
    settings_cls = event_kafka.service.config.ServiceSettings
    mutate(
        monkeypatch,
        settings_cls,
        "__repr__",
        lambda self: f"ServiceSettings({self.model.model_dump()!r})",
    )
    got = must_fail(F.test_config_generated)
    assert "repr" in got, got


# -- KB2 and KB1 in ingest ---------------------------------------------------------------------


def test_without_the_json_guards_the_ingest_fuzz_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest passes the bytes through but still decodes them to find the method and params,
    with its own guards: a depth limit (deeper params crash the handler when a payload must
    be rebuilt) and a check that names and ids are valid UTF-8 (a lone surrogate cannot be
    echoed in a reply)."""
    mutate(monkeypatch, event_kafka.service.ingest.notification, "MAX_DEPTH", sys.maxsize)
    got = must_fail(F.test_datagram_deep_nesting_below_and_far_above_any_limit, depth=500)
    assert "RecursionError" in got, got
    monkeypatch.undo()
    mutate(monkeypatch, event_kafka.service.ingest.notification, "_is_text", lambda s: True)
    got = must_fail(F.test_notifications_generated)
    assert got.startswith(("ingest:", "udp:")), got
