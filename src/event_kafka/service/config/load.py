"""Loading: read the file, apply the environment, the command line and secret references,
validate, cross-check; every problem reported at once, secrets redacted."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pydantic import (
    ValidationError,
)

from ...errors import ConfigError
from ...properties import redact
from .checks import _check_spool, _cross_check
from .files import _read_regular_file, _read_token_file, why
from .keylines import KeyLines
from .messages import _format, _pydantic_message
from .schema import ServiceConfig
from .settings import ServiceSettings
from .sources import Loc, apply_environment, apply_overrides, resolve_references


def load_config(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> ServiceSettings:
    """Read and validate the TOML file at ``path``, with ``EVENT_KAFKA_*__*`` variables of
    ``environ`` (default: the process environment) and ``overrides`` applied over it.

    The file must be a regular file of at most :data:`MAX_CONFIG_BYTES` (a FIFO or device is
    refused without blocking) and hold at least one setting: an empty file (truncated while
    being rewritten, or the wrong path) is refused rather than read as "every default".

    Raises:
        ConfigError: listing every problem as ``file:line: key.path: what is wrong``.
    """
    p = Path(path)
    try:
        data = _read_regular_file(p, MAX_CONFIG_BYTES)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: cannot read the configuration file: {why(exc)}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 (byte {exc.start})") from None
    return load_config_text(
        text, str(p), base_dir=p.parent, environ=environ, overrides=overrides, allow_empty=False
    )


MAX_CONFIG_BYTES = 1024 * 1024
"""A configuration file larger than this is refused (it is not one)."""


def load_config_text(
    text: str,
    path: str = "<config>",
    base_dir: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    allow_empty: bool = True,
) -> ServiceSettings:
    """Validate configuration ``text`` (``path`` is only used in messages).

    ``base_dir`` resolves a relative ``mi.token_file`` and ``${file:...}``; ``environ``
    (default ``os.environ``) gives ``EVENT_KAFKA_*__*`` overrides and ``${env:...}`` values;
    ``overrides`` (``{"logging.level": "DEBUG"}``, the command line) win over both. See
    :mod:`.sources`. ``allow_empty=False`` (files, see :func:`load_config`) refuses a text
    with no settings at all.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already says "(at line N, column M)".
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deep") from None
    if not raw and not allow_empty:
        # Most likely truncated (a rewrite in progress) or the wrong file: running on every
        # default would drop every broker_id, subscription and the MI token.
        raise ConfigError(
            f"{path}: the file has no settings (empty or only comments): refused; to run "
            "with every default, write at least one table, e.g. [mi]"
        )
    lines = KeyLines(text)
    problems: list[tuple[Loc, str]] = []
    env = os.environ if environ is None else environ
    origin = apply_environment(raw, ServiceConfig, env, problems)
    origin.update(apply_overrides(raw, ServiceConfig, overrides or {}, problems))
    secrets = resolve_references(
        raw, problems, base_dir=base_dir, environ=env, read_file=_read_token_file
    )
    if problems:
        raise ConfigError(redact(_format(path, lines, problems, origin), secrets))
    try:
        model = ServiceConfig.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            problems.append((tuple(err["loc"]), _pydantic_message(err)))
        raise ConfigError(redact(_format(path, lines, problems, origin), secrets)) from None
    brokers, token = _cross_check(model, problems, base_dir)
    spool_dir = _check_spool(model, brokers, problems, base_dir)
    if problems:
        raise ConfigError(redact(_format(path, lines, problems, origin), secrets))
    return ServiceSettings(
        model=model, path=path, brokers=brokers, token=token, spool_dir=spool_dir
    )


# --------------------------------------------------------------------------------------------
# Checks pydantic cannot do alone
