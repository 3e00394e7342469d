"""Secret property values: which names hold one, masking them, removing them from text."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, runtime_checkable

MASK = "*****"

# --------------------------------------------------------------------------------------------
# Secrets

# Substrings that mark a secret anywhere in a name: catches every librdkafka password/secret
# property and also misspelt or future ones (better to over-mask than to leak).
_SENSITIVE_WORDS = ("password", "secret", "passphrase", "private.key")
# Private key material and free-form blobs that may carry credentials. Public certificates
# (ssl.certificate.pem, ssl.ca.pem) are not secret and stay visible.
_SENSITIVE_NAMES = (
    "ssl.key.pem",
    "ssl_key",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.extensions",
)


def is_sensitive(name: str) -> bool:
    """Whether the value of property ``name`` is a secret that must never be shown.

    ``name`` may carry a ``g.``/``t.`` prefix. Example: ``is_sensitive("g.sasl.password")``.
    """
    lowered = name.lower()
    if any(word in lowered for word in _SENSITIVE_WORDS):
        return True
    return any(lowered == n or lowered.endswith("." + n) for n in _SENSITIVE_NAMES)


def mask_properties(props: Mapping[str, str]) -> dict[str, str]:
    """Copy of ``props`` with every sensitive value replaced by ``*****``."""
    return {name: MASK if is_sensitive(name) else value for name, value in props.items()}


def secret_values(props: Mapping[str, str]) -> tuple[str, ...]:
    """The non-empty values of the sensitive properties in ``props``."""
    return tuple(v for n, v in props.items() if v and is_sensitive(n))


@runtime_checkable
class SupportsSecrets(Protocol):
    """Anything that can list the secret values it holds (e.g. a ``KafkaSocket``)."""

    def secret_values(self) -> tuple[str, ...]: ...


def redact(text: str, secrets: SupportsSecrets | Iterable[str]) -> str:
    """Replace every occurrence of each secret value in ``text`` by ``*****``.

    Use it on strings that may echo configuration values, such as librdkafka error strings
    and log lines::

        redact(str(kafka_error), socket)       # a KafkaSocket
        redact(line, ["p4ssw0rd"])
    """
    values = secrets.secret_values() if isinstance(secrets, SupportsSecrets) else tuple(secrets)
    # Longest first, so a secret that contains another one is replaced whole.
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


class PropertyMap(Mapping[str, str]):
    """Immutable, hashable ``name -> value`` mapping whose ``repr`` masks secrets.

    Equality ignores insertion order. Example: ``PropertyMap({"linger.ms": "5"})``.
    """

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._data = dict(sorted(dict(items).items()))

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return f"PropertyMap({mask_properties(self._data)!r})"

    def secret_values(self) -> tuple[str, ...]:
        """The non-empty sensitive values held."""
        return secret_values(self._data)
