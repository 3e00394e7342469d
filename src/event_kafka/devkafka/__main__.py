"""``python -m event_kafka.devkafka start|status|stop``: the same as ``event-kafka dev-kafka``."""

from __future__ import annotations

from ..cli import dev_kafka

if __name__ == "__main__":
    dev_kafka(prog_name="python -m event_kafka.devkafka")
