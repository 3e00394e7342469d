"""The connector's MI command: ``kafka_publish`` (optionally waiting for the delivery report)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...kafka_socket import mask_secrets
from ...report import Report
from .errors import MIError
from .jsonrpc import MIDispatcher
from .params import Params
from .protocol import MIService

__all__ = ["KafkaCommands"]


@dataclass
class KafkaCommands:
    """The handler; it runs ``kafka_publish`` on the dispatcher's workers when it has some."""

    service: MIService
    dispatcher: Callable[[], MIDispatcher | None]

    async def _off_loop(self, fn: Callable[[], int]) -> int:
        # kafka_publish may wait on a full queue (kafka.queue_full_wait) or build a producer.
        d = self.dispatcher()
        if d is None or d.offload is None:
            return fn()
        return int(await d.offload(fn))

    async def kafka_publish(self, p: Params) -> Any:
        ek = self.service.ek
        broker_id = p.string("broker_id")
        message = p.string("message")
        key = (p.string("key") if p.has("key") else None) or None
        route = p.string("report_route") if p.has("report_route") else None
        if route is None:
            route = self.service.default_report_route
        elif route == "":
            route = None  # explicitly none, even when a default is configured
        wait = p.flag("wait") if p.has("wait") else False
        if broker_id not in ek.brokers:
            shown = mask_secrets(broker_id)  # a pasted broker_id definition keeps its secrets
            raise MIError(400, "Bad parameter value", f"unknown broker_id [{shown}]")
        if route is not None and route not in self.service.report_routes():
            raise MIError(
                400, "Bad parameter value", f"unknown report route {mask_secrets(route)!r}"
            )
        if not wait:
            if await self._off_loop(lambda: ek.kafka_publish(broker_id, message, key, route)) != 1:
                raise MIError(500, "Cannot Publish", "not accepted by the producer (see stats)")
            return "OK"
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Report] = loop.create_future()

        def on_report(report: Report) -> None:
            # Runs on a librdkafka poll thread: hand over to the loop.
            # RuntimeError: the loop is gone (shutdown), nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, done, report)

        rc = await self._off_loop(
            lambda: ek.kafka_publish(broker_id, message, key, route, on_report=on_report)
        )
        if rc != 1:
            raise MIError(500, "Cannot Publish", "not accepted by the producer (see stats)")
        timeout = self.service.report_wait_timeout
        try:
            report = await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            raise MIError(
                408,
                "Request Timeout",
                f"no delivery report within {timeout:g} s; the message was accepted and is "
                "still in flight (its report goes to the report route)",
            ) from None
        return report.as_dict()


def _settle(fut: asyncio.Future[Report], report: Report) -> None:
    if not fut.done():
        fut.set_result(report)
