"""The Apache Kafka broker jars: fetched from Maven Central (``devkafka-pom.xml``, package
data of ``event_kafka``) once into a cache directory; then starting needs no network."""

from __future__ import annotations

import importlib.resources
import os
import shutil
import subprocess
from pathlib import Path

from .broker import DevKafkaError

KAFKA_VERSION = os.environ.get("EVENT_KAFKA_KAFKA_VERSION", "4.1.1")


def cache_dir() -> Path:
    """Where broker jars are cached: ``$EVENT_KAFKA_CACHE`` or ``~/.cache/event-kafka``."""
    env = os.environ.get("EVENT_KAFKA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "event-kafka"


def fetch_jars(version: str = KAFKA_VERSION, cache: Path | None = None) -> Path:
    """Return the directory holding the Kafka broker classpath, fetching it with Maven once."""
    libs = (cache or cache_dir()) / f"kafka-{version}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise DevKafkaError("Maven (mvn) is needed to fetch the Kafka jars: apt-get install maven")
    if shutil.which("java") is None:
        raise DevKafkaError(
            "Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless"
        )
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pom = importlib.resources.files("event_kafka") / "devkafka-pom.xml"
    with importlib.resources.as_file(pom) as pom_path:
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom_path),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
            f"-Dkafka.version={version}",
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise DevKafkaError(f"mvn failed fetching Kafka {version}:\n{res.stdout[-3000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(version)
    return libs


# -- TLS and SASL for an extra client listener ----------------------------------------------------
