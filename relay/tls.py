"""The relay's TLS certificate: generation, loading, and its pin (SHA-256 of the DER form)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relay.errors import ConfigError

PIN_PREFIX = "sha256:"
_PIN_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class CertificateFiles:
    """Where a relay certificate was written, and its pin."""

    cert_path: Path
    """PEM certificate (public)."""
    key_path: Path
    """PEM private key, mode 0600."""
    pin: str
    """``sha256:<hex>`` of the DER certificate; goes into join tokens and the core's settings."""


def pin_of_der(der: bytes) -> str:
    """The pin of a DER-encoded certificate."""
    return PIN_PREFIX + hashlib.sha256(der).hexdigest()


def pin_of_pem_file(cert_path: Path) -> str:
    """The pin of a PEM certificate file."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return pin_of_der(cert.public_bytes(serialization.Encoding.DER))


def validate_pin(pin: str) -> str:
    """Return ``pin`` if it is well formed, else raise ConfigError."""
    if not isinstance(pin, str) or not _PIN_RE.match(pin):
        raise ConfigError("relay certificate pin must look like sha256:<64 hex digits>")
    return pin


def fingerprint(pin: str) -> aiohttp.Fingerprint:
    """An aiohttp TLS check that accepts exactly the pinned certificate (no CA, no hostname)."""
    return aiohttp.Fingerprint(bytes.fromhex(validate_pin(pin)[len(PIN_PREFIX) :]))


def generate(
    cert_path: Path, key_path: Path, names: list[str], *, days: int = 3650
) -> CertificateFiles:
    """Write a self-signed ECDSA P-256 certificate for ``names`` (DNS names or IP addresses)."""
    if not names:
        raise ConfigError("at least one host name or address is needed for the certificate")
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = Path(cert_path), Path(key_path)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Create the key file 0600 from the start: no window where it is world-readable.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertificateFiles(cert_path, key_path, pin_of_der(der))


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """The relay's server-side TLS context (TLS 1.2+)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert_path), str(key_path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the relay certificate: {exc}") from None
    return ctx
