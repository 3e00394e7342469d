"""Fuzz targets, their oracles and random input generators (issue 8, part 3).

Shared by ``tests/fuzz/test_fuzz_inputs.py`` (hypothesis, short, in CI) and
``tests/fuzz/longrun.py`` (>= 1 M inputs, outside CI). Nothing here opens a socket.

A *target* takes one input, runs it through the code under test and checks the oracle:

* no exception other than the documented rejection (``SocketError``, ``ConfigError``,
  ``IngestError``/``StreamError``, a JSON-RPC error reply);
* every rejection is a non-empty message that names something (a position, a key path, a
  JSON-RPC code and message);
* no secret value of the input in any message or printed form;
* target-specific invariants (round trips, counters, replies the HTTP layer can serialise).

It returns an *outcome label* (for statistics: how deep the input got) or raises
:class:`FuzzFailure`. Every oracle violation is a failure: nothing is excused as a bug
"already known" (``test_mutations.py`` re-introduces fixed bugs and checks the fuzz tests fail).
"""

from __future__ import annotations

from .config import (
    _SCHEMA,
    _TCP,
    _UDP,
    _gen_broker_id,
    _gen_sub_socket,
    _typed,
    config_target,
    gen_config,
    toml_dumps,
)
from .ingest import (
    FakeTransport,
    _accept_all,
    _predict_stream,
    gen_notification,
    gen_stream,
    notification_target,
    stream_target,
    udp_target,
)
from .mi import (
    _PARAM_POOLS,
    MIEnv,
    check_mi_reply,
    gen_mi_body,
    mi_commands,
    mi_target,
)
from .mutation import (
    TOKENS,
    mutate,
    quiet_logs,
)
from .oracles import (
    _LOOSE_SECRET,
    FuzzFailure,
    message_ok,
)
from .sockets import (
    _TOPIC_CHARS,
    PROPS,
    SECRET_PROPS,
    _value_for,
    gen_socket,
    socket_target,
)

__all__ = [
    "PROPS",
    "SECRET_PROPS",
    "TOKENS",
    "_LOOSE_SECRET",
    "_PARAM_POOLS",
    "_SCHEMA",
    "_TCP",
    "_TOPIC_CHARS",
    "_UDP",
    "FakeTransport",
    "FuzzFailure",
    "MIEnv",
    "_accept_all",
    "_gen_broker_id",
    "_gen_sub_socket",
    "_predict_stream",
    "_typed",
    "_value_for",
    "check_mi_reply",
    "config_target",
    "gen_config",
    "gen_mi_body",
    "gen_notification",
    "gen_socket",
    "gen_stream",
    "message_ok",
    "mi_commands",
    "mi_target",
    "mutate",
    "notification_target",
    "quiet_logs",
    "socket_target",
    "stream_target",
    "toml_dumps",
    "udp_target",
]
