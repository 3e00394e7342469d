"""TLS and SASL for an extra client listener: a test PKI made with the openssl CLI and the
listener's broker properties and SCRAM users."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .broker import DevKafkaError

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_MECHANISMS = (*SCRAM_MECHANISMS, "PLAIN")
# Characters allowed in test user names and passwords: they are written into a JAAS line, a
# Java properties file and StorageTool's SCRAM syntax, none of which is quoted here.
_CREDENTIAL = re.compile(r"[A-Za-z0-9._~!@#%^*+/-]{1,128}")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a test PKI: the CA certificate, and a server certificate with its key."""

    ca: Path
    cert: Path
    key: Path


def make_test_certs(
    directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), days: int = 2
) -> TlsFiles:
    """Make a self-signed CA and a server certificate for ``hosts`` with the ``openssl`` CLI.

    Keys are EC P-256, unencrypted PKCS#8 (what Kafka's PEM key store reads); the server
    certificate's subjectAltName lists every host (IP or DNS), so clients that verify the
    endpoint (librdkafka does by default) accept it. For tests only.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise DevKafkaError("the openssl CLI is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca_key = directory / "ca.key"
    csr = directory / "server.csr"
    ext = directory / "server.ext"
    san = ",".join(
        f"IP:{h}" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]*:[0-9a-fA-F:]*", h) else f"DNS:{h}"
        for h in hosts
    )
    ext.write_text(
        f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    serial = str(int.from_bytes(os.urandom(8), "big"))
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(files.ca),
         "-days", str(days), "-subj", "/CN=event-kafka test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *ec, "-keyout", str(files.key), "-out", str(csr),
         "-subj", f"/CN={hosts[0]}"],
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(files.ca), "-CAkey", str(ca_key),
         "-set_serial", serial, "-days", str(days), "-extfile", str(ext), "-out", str(files.cert)],
    ]  # fmt: skip
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise DevKafkaError(f"openssl failed ({' '.join(cmd[:3])}):\n{res.stderr[-2000:]}")
    for f in (ca_key, csr, ext):
        f.unlink(missing_ok=True)
    return files


@dataclass(frozen=True)
class SaslSslConfig:
    """An extra ``SASL_SSL`` client listener on every node of a :class:`LocalKafka`.

    The controller and inter-broker listeners stay PLAINTEXT; only clients that choose the
    SASL_SSL address (:attr:`LocalKafka.sasl_ssl_bootstrap`) use TLS and SASL.

    Args:
        users: user name -> password. Each user exists for every SCRAM mechanism enabled
            (created when the storage is formatted, ``StorageTool --add-scram``) and for PLAIN
            (through the listener's JAAS configuration). Names and passwords are limited to
            ``A-Z a-z 0-9 . _ ~ ! @ # % ^ * + / -``.
        mechanisms: SASL mechanisms the listener enables, a subset of :data:`SASL_MECHANISMS`.
        tls: the CA, server certificate and key to use; by default :func:`make_test_certs`
            makes them in the cluster's work directory (CA at :attr:`LocalKafka.ca_file`).
    """

    users: Mapping[str, str] = field(default_factory=lambda: {"alice": "alice-secret"})
    mechanisms: tuple[str, ...] = ("SCRAM-SHA-256", "PLAIN")
    tls: TlsFiles | None = None
    listener: str = "SASL_SSL"

    def __post_init__(self) -> None:
        if not self.mechanisms or not set(self.mechanisms) <= set(SASL_MECHANISMS):
            raise ValueError(f"mechanisms must be a non-empty subset of {SASL_MECHANISMS}")
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", self.listener) or self.listener in {
            "PLAINTEXT",
            "CONTROLLER",
        }:
            raise ValueError(f"bad listener name {self.listener!r}")
        for name, password in self.users.items():
            if not _CREDENTIAL.fullmatch(name) or not _CREDENTIAL.fullmatch(password):
                raise ValueError(
                    f"user {name!r}: names and passwords may only use {_CREDENTIAL.pattern}"
                )

    def __repr__(self) -> str:
        # Never show the passwords (tests grep logs and reprs for them).
        return (
            f"SaslSslConfig(users={sorted(self.users)!r}, mechanisms={self.mechanisms!r}, "
            f"tls={self.tls!r}, listener={self.listener!r})"
        )

    def server_properties(self, tls: TlsFiles) -> dict[str, str]:
        """The listener's ``listener.name.<l>.*`` broker properties."""
        pre = f"listener.name.{self.listener.lower()}."
        props = {
            f"{pre}sasl.enabled.mechanisms": ",".join(self.mechanisms),
            f"{pre}ssl.keystore.type": "PEM",
            f"{pre}ssl.keystore.certificate.chain": _one_line(tls.cert.read_text()),
            f"{pre}ssl.keystore.key": _one_line(tls.key.read_text()),
            f"{pre}ssl.truststore.type": "PEM",
            f"{pre}ssl.truststore.certificates": _one_line(tls.ca.read_text()),
            f"{pre}ssl.client.auth": "none",
        }
        for mech in self.mechanisms:
            if mech in SCRAM_MECHANISMS:
                module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            else:
                users = " ".join(f'user_{n}="{pw}"' for n, pw in self.users.items())
                module = (
                    f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
                )
            props[f"{pre}{mech.lower()}.sasl.jaas.config"] = module
        return props

    def format_args(self) -> list[str]:
        """``StorageTool format`` arguments that create the SCRAM users."""
        args: list[str] = []
        for mech in self.mechanisms:
            if mech in SCRAM_MECHANISMS:
                for name, password in self.users.items():
                    args += ["--add-scram", f"{mech}=[name={name},password={password}]"]
        return args


def _one_line(pem: str) -> str:
    # A PEM value in a Java properties file: newlines written as the \n escape.
    return "\\n".join(line.strip() for line in pem.strip().splitlines())
