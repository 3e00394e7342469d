"""The ``event-kafka`` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="event-kafka")
def main() -> None:
    """event-kafka: OpenSIPS's event_kafka module as a Python library and service."""


@main.command()
@click.argument("text")
@click.option("--strict", is_flag=True, help="OpenSIPS grammar only: refuse key=param:<name>")
def check(text: str, strict: bool) -> None:
    """Check a Kafka socket (kafka:brokers/topic?props) or broker_id ([ID]brokers/topic?props).

    Prints the parsed result as JSON (secrets masked), or the error and exit status 2.
    """
    from .kafka_socket import check_command

    status, out = check_command(text, strict=strict)
    click.echo(out, err=status != 0)
    sys.exit(status)


# -- serve ----------------------------------------------------------------------------------------


@main.command()
@click.option(
    "-c",
    "--config",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The service configuration (TOML), e.g. examples/event-kafka.toml",
)
@click.option("--check", is_flag=True, help="Only validate the configuration file, then exit")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="Overrides [logging] level (and EVENT_KAFKA_LOGGING__LEVEL)",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"], case_sensitive=False),
    help="Overrides [logging] format: text, or one JSON object per line",
)
def serve(config: Path, check: bool, log_level: str | None, log_format: str | None) -> None:
    """Run the service: MI (opensips-cli), udp/tcp ingest, metrics; stop with SIGTERM.

    Settings come from the file, then EVENT_KAFKA_<SECTION>__<KEY> environment variables,
    then these options. Exit status: 0 after a clean stop, 78 for a bad configuration, 1 if
    it cannot start.
    """
    from .service.daemon import serve_command

    overrides: dict[str, str] = {}
    if log_level:
        overrides["logging.level"] = log_level.upper()
    if log_format:
        overrides["logging.format"] = log_format.lower()
    sys.exit(serve_command(config, check, overrides))


# -- migrate --------------------------------------------------------------------------------------


@main.command()
@click.argument("cfg", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def migrate(cfg: Path) -> None:
    """Print the service TOML for an opensips.cfg's event_kafka settings.

    Reads modparam("event_kafka", "broker_id", ...), subscribe_event(..., "kafka:...") and
    kafka_publish report route names; checks the result with the service's config loader.
    Exit status 0 with the TOML on stdout, or 1 with each problem (cfg line, secrets masked)
    on stderr. See docs/migrating-from-opensips.md.
    """
    from .migrate import migrate_cfg

    try:
        text = cfg.read_bytes().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise click.ClickException(f"{cfg}: {exc.strerror}") from None
    result = migrate_cfg(text, str(cfg))
    for problem in result.problems:
        click.echo(f"error: {problem}", err=True)
    if result.problems:
        sys.exit(1)
    click.echo(result.toml, nl=False)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


# -- dev-kafka ------------------------------------------------------------------------------------


def _state_file() -> Path:
    from .devkafka import cache_dir

    return cache_dir() / "dev-kafka.json"


@main.group("dev-kafka")
def dev_kafka() -> None:
    """A local Apache Kafka for development (jars fetched from Maven Central once)."""


@dev_kafka.command("start")
@click.option("--nodes", default=1, show_default=True, help="1, or 3 for a KRaft cluster")
@click.option("--foreground", is_flag=True, help="Run until Ctrl-C instead of detaching")
def dev_kafka_start(nodes: int, foreground: bool) -> None:
    """Start a local Kafka on 127.0.0.1 and print its bootstrap address."""
    from .devkafka import LocalKafka

    state = _state_file()
    if state.exists() and not foreground:
        raise click.ClickException(f"already running? see `event-kafka dev-kafka status` ({state})")
    kafka = LocalKafka(nodes=nodes, detach=not foreground).start()
    if foreground:
        click.echo(kafka.bootstrap)
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            kafka.stop()
        return
    pids = [n.pid for n in kafka._nodes]
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(
        json.dumps({"bootstrap": kafka.bootstrap, "pids": pids, "workdir": str(kafka.workdir)})
    )
    click.echo(kafka.bootstrap)


@dev_kafka.command("status")
def dev_kafka_status() -> None:
    """Show the detached local Kafka, if any (exit 1 when none runs)."""
    from .devkafka.process import pid_alive

    state = _state_file()
    if not state.exists():
        click.echo("not running")
        sys.exit(1)
    info = json.loads(state.read_text())
    alive = [p for p in info["pids"] if pid_alive(p)]
    click.echo(json.dumps({**info, "alive": alive}))
    sys.exit(0 if alive else 1)


@dev_kafka.command("stop")
def dev_kafka_stop() -> None:
    """Stop the detached local Kafka started by `dev-kafka start` (by its PIDs)."""
    import shutil

    from .devkafka.process import pid_alive

    state = _state_file()
    if not state.exists():
        click.echo("not running")
        return
    info = json.loads(state.read_text())
    for pid in info["pids"]:
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(pid_alive(p) for p in info["pids"]):
        time.sleep(0.2)
    for pid in info["pids"]:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(info["workdir"], ignore_errors=True)
    state.unlink()
    click.echo("stopped")


# -- demo -----------------------------------------------------------------------------------------


@main.command()
def demo() -> None:
    """Start a local Kafka, publish a few events through event-kafka, print what landed."""
    from .demo import run_demo

    sys.exit(run_demo(click.echo))


if __name__ == "__main__":  # pragma: no cover
    main()
