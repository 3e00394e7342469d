"""The MI over HTTP as tests drive it: shared by the tests that run ``event-kafka serve``."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any, ClassVar

import orjson


class MIHttpClient:
    """POST JSON-RPC to ``{url}/mi``, GET other paths, read one Prometheus sample.

    Subclasses give ``url``; ``default_headers`` go with every POST that names no headers;
    ``seen`` is called with every reply body (a hook for checks over all replies).
    """

    default_headers: ClassVar[dict[str, str]] = {}

    @property
    def url(self) -> str:
        raise NotImplementedError

    def seen(self, body: bytes) -> None:
        """Every reply body, POST and GET alike (no-op here)."""

    def post(
        self, body: bytes, headers: dict[str, str] | None = None, path: str = "/mi"
    ) -> tuple[int, bytes]:
        req = urllib.request.Request(
            self.url + path,
            data=body,
            headers={
                "Content-Type": "application/json",
                **(self.default_headers if headers is None else headers),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, data = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, data = e.code, e.read()
        self.seen(data)
        return status, data

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        self.seen(text.encode())
        return status, text

    def mi(self, method: str, params: Any = None, headers: dict[str, str] | None = None) -> Any:
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            req["params"] = params
        status, body = self.post(orjson.dumps(req), headers)
        assert status == 200, (status, body)
        return orjson.loads(body)

    def call(self, method: str, params: Any = None) -> dict[str, Any]:
        """One JSON-RPC request; the whole reply (result or error) as a dict, with the HTTP
        status under ``"http_status"`` (for comparing servers reply by reply)."""
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            req["params"] = params
        return self.call_raw(orjson.dumps(req))

    def call_raw(self, body: bytes) -> dict[str, Any]:
        status, data = self.post(body)
        reply: dict[str, Any] = orjson.loads(data)
        reply["http_status"] = status
        return reply

    def ok(self, method: str, params: Any = None) -> Any:
        """The ``result`` of a request that must succeed."""
        reply = self.call(method, params)
        assert "result" in reply, (self.url, method, params, reply)
        return reply["result"]

    def metric(self, name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        _, text = self.get("/metrics")
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        raise KeyError(name, labels)
