"""Where configuration values come from besides the TOML file: secret references, the
environment, the command line. Applied to the parsed TOML data before validation, so every
value goes through the same checks (and errors) as if it were written in the file.

**Secret references** keep passwords out of the file. A property value of a ``broker_ids``
entry or a ``subscriptions[].socket``, and ``mi.token``, may be one whole reference:

* ``${file:/run/secrets/kafka-pass}``: the file's content (relative paths: next to the
  configuration file), surrounding whitespace removed, at most 4 KiB;
* ``${cred:kafka-pass}``: a systemd credential (``LoadCredential=kafka-pass:/path``), the file
  of that name in ``$CREDENTIALS_DIRECTORY``;
* ``${env:KAFKA_PASS}``: an environment variable.

Example: ``"[k1]10.0.0.5:9093/cdr?g.sasl.username=sips&g.sasl.password=${cred:kafka-pass}"``.
A socket value cannot hold ``&`` or ``=`` (its grammar's separators), so a secret containing
one is refused, without showing it. Resolved values are removed from every error message; in
a secret property (``*password*``, ``*secret*``...) they are masked wherever the socket is
shown. References are read at start and at each reload (SIGHUP), never afterwards.

**Environment overrides**: ``EVENT_KAFKA_<SECTION>__<KEY>`` (``__`` between levels) replaces
one setting of the file, e.g. ``EVENT_KAFKA_MI__LISTEN=0.0.0.0:8888``,
``EVENT_KAFKA_LOGGING__LEVEL=DEBUG``, ``EVENT_KAFKA_INGEST__UDP__LISTEN=127.0.0.1:8090``,
``EVENT_KAFKA_EVENTS__PUBLISH='["E_A","E_B"]'`` (lists in JSON). Values are converted to the
setting's type (``true``/``false``, numbers). Variables without ``__`` (``EVENT_KAFKA_CACHE``)
are not settings; an ``EVENT_KAFKA_..__..`` naming no setting is an error, not ignored.
Precedence: command line > environment > file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from .files import under, why

__all__ = ["ENV_PREFIX", "apply_environment", "apply_overrides", "resolve_references"]

Loc = tuple[str | int, ...]
Problems = list[tuple[Loc, str]]

ENV_PREFIX = "EVENT_KAFKA_"
_REF = re.compile(r"\$\{(?P<kind>[a-z]+):(?P<arg>[^}]*)\}")
_CRED_NAME = re.compile(r"[A-Za-z0-9_.@:-]+")
_SOCKET_SEPARATORS = ("&", "=")


def resolve_references(
    raw: MutableMapping[str, Any],
    problems: Problems,
    *,
    base_dir: Path | None,
    environ: Mapping[str, str],
    read_file: Callable[[Path], str],
) -> list[str]:
    """Replace every ``${kind:arg}`` in sockets and ``mi.token`` of ``raw`` (in place); add
    a problem per bad reference. Returns the resolved values to redact from errors (those of
    at least 4 characters: shorter ones would mangle every message and protect nothing)."""
    secrets: list[str] = []

    def resolve(kind: str, arg: str) -> str:
        value = _read_reference(kind, arg, base_dir, environ, read_file)
        if len(value) >= 4:
            secrets.append(value)
        return value

    ids = raw.get("broker_ids")
    if isinstance(ids, list):
        for i, text in enumerate(ids):
            if isinstance(text, str) and "${" in text:
                ids[i] = _resolve_socket(text, ("broker_ids", i), problems, resolve)
    subs = raw.get("subscriptions")
    if isinstance(subs, list):
        for i, sub in enumerate(subs):
            text = sub.get("socket") if isinstance(sub, dict) else None
            if isinstance(text, str) and "${" in text:
                sub["socket"] = _resolve_socket(
                    text, ("subscriptions", i, "socket"), problems, resolve
                )
    mi = raw.get("mi")
    token = mi.get("token") if isinstance(mi, dict) else None
    if isinstance(token, str) and "${" in token:
        assert isinstance(mi, dict)
        m = _REF.fullmatch(token)
        if m is None:
            problems.append((("mi", "token"), "a ${...} reference must be the whole value"))
        else:
            try:
                mi["token"] = resolve(m["kind"], m["arg"])
            except ValueError as exc:
                problems.append((("mi", "token"), str(exc)))
    return secrets


def _resolve_socket(
    text: str, loc: Loc, problems: Problems, resolve: Callable[[str, str], str]
) -> str:
    if "${" in _REF.sub("", text):
        problems.append((loc, "'${' that is not ${env:NAME}, ${file:PATH} or ${cred:NAME}"))
        return text
    out: list[str] = []
    pos = 0
    query = text.find("?")
    for m in _REF.finditer(text):
        whole_value = (
            0 <= query < m.start()
            and text[m.start() - 1] == "="
            and (m.end() == len(text) or text[m.end()] == "&")
        )
        if not whole_value:
            problems.append(
                (loc, f"{m[0]}: a reference must be a whole property value (name={m[0]})")
            )
            return text
        try:
            value = resolve(m["kind"], m["arg"])
        except ValueError as exc:
            problems.append((loc, str(exc)))
            return text
        if any(sep in value for sep in _SOCKET_SEPARATORS):
            problems.append(
                (loc, f"{m[0]}: the value contains '&' or '=', which a socket value cannot hold")
            )
            return text
        out.append(text[pos : m.start()])
        out.append(value)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def _read_reference(
    kind: str,
    arg: str,
    base_dir: Path | None,
    environ: Mapping[str, str],
    read_file: Callable[[Path], str],
) -> str:
    """The value a reference names; ValueError says what is missing (never the value)."""
    ref = f"${{{kind}:{arg}}}"
    if kind == "env":
        if arg not in environ:
            raise ValueError(f"{ref}: environment variable {arg} is not set")
        value = environ[arg]
    elif kind in ("file", "cred"):
        if kind == "cred":
            cred_dir = environ.get("CREDENTIALS_DIRECTORY")
            if not cred_dir:
                raise ValueError(
                    f"{ref}: CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)"
                )
            if not _CRED_NAME.fullmatch(arg):
                raise ValueError(f"{ref}: a credential name is a plain file name")
            path = Path(cred_dir) / arg
        else:
            path = under(Path(arg), base_dir)
        try:
            value = read_file(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{ref}: cannot read {path}: {why(exc)}") from None
    else:
        raise ValueError(f"{ref}: unknown reference kind {kind!r} (env, file or cred)")
    if not value:
        raise ValueError(f"{ref}: empty value")
    return value


# --------------------------------------------------------------------------------------------
# Environment and command line


def apply_environment(
    raw: MutableMapping[str, Any],
    model: type[BaseModel],
    environ: Mapping[str, str],
    problems: Problems,
) -> dict[Loc, str]:
    """Set each ``EVENT_KAFKA_A__B`` variable as key ``a.b`` of ``raw`` (in place), converted
    to the setting's type. Returns ``{key path: variable name}`` for error messages."""
    settings = (
        (tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__")), environ[name], name)
        for name in sorted(environ)
        if name.startswith(ENV_PREFIX) and "__" in name
    )
    return _set_all(raw, model, settings, problems)


def apply_overrides(
    raw: MutableMapping[str, Any],
    model: type[BaseModel],
    overrides: Mapping[str, str],
    problems: Problems,
) -> dict[Loc, str]:
    """Set ``{"logging.level": "DEBUG"}``-style overrides (the command line) in ``raw``."""
    settings = ((tuple(dotted.split(".")), v, "command line") for dotted, v in overrides.items())
    return _set_all(raw, model, settings, problems)


def _set_all(
    raw: MutableMapping[str, Any],
    model: type[BaseModel],
    settings: Iterable[tuple[tuple[str, ...], str, str]],
    problems: Problems,
) -> dict[Loc, str]:
    """Set each ``(key path, text, where it came from)``; returns ``{key path: where}``."""
    sources: dict[Loc, str] = {}
    for path, text, origin in settings:
        sources[path] = origin
        _set(raw, model, path, text, problems)
    return sources


def _set(
    raw: MutableMapping[str, Any],
    model: type[BaseModel],
    path: tuple[str, ...],
    text: str,
    problems: Problems,
) -> None:
    annotation = _annotation(model, path)
    if annotation is None:
        problems.append((path, "no such setting (or not a single value)"))
        return
    try:
        if get_origin(annotation) is list:
            value: Any = TypeAdapter(annotation).validate_json(text)
        else:
            value = TypeAdapter(annotation).validate_python(text, strict=False)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        problems.append((path, str(first.get("msg", "invalid value"))))
        return
    if isinstance(value, SecretStr):
        value = text
    table: MutableMapping[str, Any] = raw
    for key in path[:-1]:
        sub = table.get(key)
        if not isinstance(sub, dict):
            sub = table[key] = {}
        table = sub
    table[path[-1]] = value


def _annotation(model: type[BaseModel], path: tuple[str, ...]) -> Any:
    """The type of setting ``path`` when it is a plain value (not a table), else None."""
    current: Any = model
    for i, key in enumerate(path):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(key)
        if field is None:
            return None
        current = _unwrap_optional_model(field.annotation)
        if i == len(path) - 1:
            is_table = isinstance(current, type) and issubclass(current, BaseModel)
            return None if is_table or get_origin(current) is dict else field.annotation
    return None


def _unwrap_optional_model(annotation: Any) -> Any:
    """``UdpIngest | None`` -> ``UdpIngest``; anything else unchanged."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return annotation
