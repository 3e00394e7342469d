"""Reloads (``event_kafka.service.reload``): all or nothing, coalesced, never blocking; in
process and through SIGHUP to ``event-kafka serve``."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from event_kafka.devkafka import free_port
from event_kafka.service.config import load_config_text
from event_kafka.service.service import Service
from tests.support import ServeProcess, await_until, wait_until


def test_reload_is_all_or_nothing_never_weakens_never_blocks(tmp_path: Path) -> None:
    port = free_port()
    token = "reload-t0ken"
    base = f"""
broker_ids = ["[k1]127.0.0.1:1/t"]
[events]
publish = ["E_A"]
[[subscriptions]]
event = "E_A"
socket = "udp:127.0.0.1:9"
[mi]
listen = "127.0.0.1:{port}"
token = "{token}"
"""
    auth = {"Authorization": f"Bearer {token}"}
    version = b'{"jsonrpc":"2.0","id":1,"method":"version"}'
    d = ServeProcess(tmp_path, base)

    def refused() -> int:
        return d.log().count("reload refused, keeping the running configuration")

    def still_as_before() -> None:
        assert d.post(version, {})[0] == 401  # the token still guards the MI
        subs = d.mi("subscribers_list", ["E_A"], auth)["result"]["Event"]["Subscribers"]
        assert subs == [{"socket": "udp:127.0.0.1:9", "expire": "never"}]
        assert d.mi("kafka_publish", ["k1", "m"], auth)["result"] == "OK"  # broker_id kept

    try:
        d.start(port)
        # 1. The file truncated in the middle of a rewrite: refused, nothing dropped.
        d.config_path.write_text("")
        d.send_signal(signal.SIGHUP)
        wait_until(lambda: refused() == 1, what="the empty file refused")
        assert "the file has no settings (empty or only comments)" in d.log()
        still_as_before()
        # 2. A valid file that drops the token: refused as a whole, says a restart is needed.
        d.config_path.write_text(base.replace(f'token = "{token}"\n', ""))
        d.send_signal(signal.SIGHUP)
        wait_until(lambda: refused() == 2, what="the token removal refused")
        assert "restart the service to run without a token" in d.log()
        still_as_before()
        # 3. The path is now a FIFO nobody writes: refused at once, every SIGHUP answered.
        d.config_path.unlink()
        os.mkfifo(d.config_path)
        for _ in range(3):  # the kernel may merge signals sent back to back: at least one
            d.send_signal(signal.SIGHUP)
        wait_until(lambda: refused() >= 3, what="a SIGHUP on a FIFO refused")
        d.send_signal(signal.SIGHUP)
        wait_until(lambda: refused() >= 4, what="the next SIGHUP answered too")
        assert "not a regular file" in d.log()
        assert d.get("/health/live")[0] == 200
        still_as_before()
        # 4. A directory, a file that vanished, a TOML syntax error: each refused, with why.
        # Counted from here (step 3's back-to-back SIGHUPs may each have been refused); the
        # counter is bumped before the log line is written, so both are waited for.
        for why, change in (
            ("Is a directory", lambda: (d.config_path.unlink(), d.config_path.mkdir())),
            ("No such file or directory", d.config_path.rmdir),
            ("invalid TOML", lambda: d.config_path.write_text(base.replace("[mi]", "[mi"))),
        ):
            n, lines = refused(), d.log().count(why)
            change()
            d.send_signal(signal.SIGHUP)
            wait_until(
                lambda: refused() > n and d.log().count(why) > lines,  # noqa: B023
                what=f"refused: {why}",
            )
        still_as_before()
        # 5. A good file again (a new token): applied.
        d.config_path.unlink()
        d.config_path.write_text(base.replace(token, "an0ther-t0ken"))
        d.send_signal(signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in d.log(), what="the good file applied")
        new_auth = {"Authorization": "Bearer an0ther-t0ken"}
        assert d.mi("version", None, new_auth)["result"]["Server"].startswith("event-kafka")
        assert d.post(version, auth)[0] == 401
        assert token not in d.log() and "an0ther" not in d.log()
        assert d.stop(timeout=20) == 0, d.log()
    finally:
        d.kill()


def test_sigterm_exits_even_with_a_fifo_config(tmp_path: Path) -> None:
    port = free_port()
    d = ServeProcess(tmp_path, f'[mi]\nlisten = "127.0.0.1:{port}"\n')
    try:
        d.start(port)
        d.config_path.unlink()
        os.mkfifo(d.config_path)
        d.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in d.log(), what="the FIFO refused")
        assert d.stop(timeout=20) == 0, d.log()
    finally:
        d.kill()


@pytest.mark.asyncio
async def test_reloads_are_coalesced_and_a_stuck_one_blocks_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import threading

    from event_kafka.service import reload

    caplog.set_level(logging.INFO, "event_kafka.service")
    settings = load_config_text('[mi]\nlisten = "127.0.0.1:0"\n')
    gate = threading.Event()
    calls: list[str] = []

    def slow_load(path: str, overrides: Any) -> Any:  # a file system or name server that hangs
        calls.append(path)
        gate.wait(30)
        return settings, {}

    monkeypatch.setattr(reload, "_load_for_reload", slow_load)
    service = Service(settings)
    await service.start()
    loop = asyncio.get_running_loop()

    try:
        for _ in range(3):
            service.request_reload()
        assert "the file will be read again after it" in caplog.text
        assert "another is already queued" in caplog.text
        gate.set()
        await await_until(lambda: service.reloads["ok"] == 2, 10, "two reloads for three SIGHUPs")
        await asyncio.sleep(0)  # one loop turn (not a wait on time) for a third reload to start
        assert len(calls) == 2
        # A reload stuck for good: refused after its budget; the next one says why it waits.
        gate.clear()
        monkeypatch.setattr(reload, "_RELOAD_BUDGET", 0.2)
        service.request_reload()
        await await_until(lambda: service.reloads["error"] == 1, 10, "the stuck reload refused")
        assert "took more than 0.2 s" in caplog.text
        service.request_reload()
        await await_until(lambda: service.reloads["error"] == 2, 10, "the second one refused")
        assert "still stuck reading the file" in caplog.text
        assert len(calls) == 3
    finally:
        t0 = loop.time()
        await service.shutdown()
        assert loop.time() - t0 < 5  # the stuck thread is a daemon: it holds nothing
        gate.set()


@pytest.mark.asyncio
async def test_a_reload_that_cannot_open_a_subscriber_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from event_kafka.service.config import load_config

    path = tmp_path / "c.toml"
    base = '[mi]\nlisten = "127.0.0.1:0"\n[events]\npublish = ["E_A"]\n'
    path.write_text('broker_ids = ["[k1]127.0.0.1:1/t"]\n' + base)
    service = Service(load_config(path))
    await service.start()
    try:
        evi = service.ek.evi
        subscribe = evi.subscribe

        def failing(event: str, socket: str, expire: int | None = None) -> bool:
            if socket.endswith(":10"):
                raise RuntimeError("cannot open it now")
            return subscribe(event, socket, expire)

        monkeypatch.setattr(evi, "subscribe", failing)
        path.write_text(
            'broker_ids = ["[k2]127.0.0.1:1/t"]\n'
            + base
            + "".join(
                f'[[subscriptions]]\nevent = "E_A"\nsocket = "udp:127.0.0.1:{port}"\n'
                for port in (9, 10)
            )
        )
        assert await service.reload() is False
        assert service.reloads == {"ok": 0, "error": 1}
        assert evi.subscriber_count("E_A") == 0  # the one added first was taken back
        assert list(service.ek.brokers) == ["k1"]  # nothing else applied either
        assert service.static == {}
    finally:
        await service.shutdown()
