"""The HTTP side: ``POST /mi`` (OpenSIPS mi_http compatible), ``/metrics``, ``/health/*``.

* :mod:`.app` — the endpoints (:func:`make_app`);
* :mod:`.mi_checks` — what stands in front of ``/mi``, one middleware per check: bearer
  token, size limit, read timeout, empty body;
* :mod:`.connections` — the listener (:class:`HttpServer`): slow and idle clients cut off,
  a cap on open connections.

``/metrics`` (Prometheus text format) and ``/health/live`` / ``/health/ready`` need no token;
serve them on a separate listener (``metrics.listen``) to expose them beyond loopback
without exposing the MI.

Example::

    app = make_app(HttpConfig(mi_path="/mi"), mi=dispatcher, registry=registry, ready=ready)
    server = HttpServer(app, "127.0.0.1", 8888, read_timeout=10.0, max_connections=64)
    await server.start()
"""

from .app import HttpConfig, ReadyCheck, make_app
from .connections import HttpCounters, HttpServer

__all__ = ["HttpConfig", "HttpCounters", "HttpServer", "ReadyCheck", "make_app"]
