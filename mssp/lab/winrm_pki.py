"""A throw-away PKI for the simulated Windows host's HTTPS (tests and the lab only)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

# ------------------------------------------------------------------------------- test PKI ----


@dataclass(frozen=True)
class TLSFiles:
    """A throw-away CA and a server certificate signed by it (PEM files)."""

    ca_cert: Path
    cert: Path
    key: Path
    cert_sha256: str
    """Hex SHA-256 of the server certificate (DER), for pinning."""


def make_test_pki(directory: Path, hostnames: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")):
    """Write a lab CA and a server certificate for `hostnames` into `directory` (0600 keys)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    directory.mkdir(parents=True, exist_ok=True)

    def build(subject: str, issuer: x509.Name | None, signer, public, ca: bool, sans=()):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("mssp lab test CA (not a real authority)", None, ca_key, ca_key.public_key(), True)
    key = ec.generate_private_key(ec.SECP256R1())
    sans = []
    for name in hostnames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = build(hostnames[0], ca.subject, ca_key, key.public_key(), False, sans)
    files = TLSFiles(
        directory / "ca.pem",
        directory / "winrm-cert.pem",
        directory / "winrm-key.pem",
        hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    files.key.touch(mode=0o600)
    files.key.write_bytes(pem)
    return files
