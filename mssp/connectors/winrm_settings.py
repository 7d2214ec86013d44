"""WinRM connection settings, validated from ConnectOptions before any traffic is sent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mssp.connectors.base import ConnectOptions
from mssp.errors import ConfigError, InsecureTransportError


@dataclass(frozen=True)
class WinRMSettings:
    """How to reach one host over WinRM, validated from ConnectOptions (see WinRMConnector doc)."""

    host: str
    url: str
    address: str
    port: int
    scheme: str
    auth: str
    username: str
    password: str = field(repr=False)
    ca_file: str | None
    cert_sha256: str | None
    connect_timeout: float
    operation_timeout: int
    read_timeout: int
    command_timeout: float

    @classmethod
    def from_options(
        cls, options: ConnectOptions, *, command_timeout: float = 3600.0
    ) -> WinRMSettings:
        """Validate; raises InsecureTransportError or ConfigError before any traffic."""
        extra: Mapping[str, str] = options.extra
        scheme = extra.get("scheme", "https").lower()
        auth = extra.get("auth", "ntlm").lower()
        encryption = extra.get("message_encryption", "auto").lower()
        if scheme not in {"https", "http"}:
            raise ConfigError(f"{options.host}: WinRM scheme must be https or http, not {scheme!r}")
        if auth not in {"ntlm", "basic"}:
            raise ConfigError(f"{options.host}: WinRM auth must be ntlm or basic, not {auth!r}")
        if encryption not in {"auto", "always", "never"}:
            raise ConfigError(f"{options.host}: message_encryption must be auto, always or never")
        if scheme == "http" and auth == "basic":
            raise InsecureTransportError(
                "refusing Basic authentication over HTTP: the password and every command would "
                "cross the network in clear text; use HTTPS (port 5986) or NTLM with message "
                "encryption",
                host=options.host,
            )
        if scheme == "http" and encryption == "never":
            raise InsecureTransportError(
                "refusing unencrypted WinRM over HTTP: use HTTPS (port 5986) or NTLM with "
                "message encryption",
                host=options.host,
            )
        pin = extra.get("cert_sha256")
        if pin is not None:
            pin = pin.replace(":", "").strip().lower()
            if not re.fullmatch(r"[0-9a-f]{64}", pin):
                raise ConfigError(f"{options.host}: cert_sha256 must be 64 hex digits")
            if scheme != "https":
                raise ConfigError(f"{options.host}: cert_sha256 needs scheme https")
        ca_file = extra.get("ca_file")
        if ca_file is not None and not Path(ca_file).is_file():
            raise ConfigError(f"{options.host}: ca_file {ca_file} does not exist")
        if options.password is None:
            raise ConfigError(f"{options.host}: WinRM ({auth}) needs a password credential")
        try:
            op_timeout = int(extra.get("operation_timeout", "20"))
            read_timeout = int(extra.get("read_timeout", str(op_timeout + 10)))
            command_timeout = float(extra.get("command_timeout", command_timeout))
        except ValueError as exc:
            raise ConfigError(f"{options.host}: WinRM timeouts must be numbers") from exc
        if not 1 <= op_timeout < read_timeout:
            # pywinrm and the service both need the HTTP read to outlast the server-side wait
            raise ConfigError(f"{options.host}: read_timeout must exceed operation_timeout (>= 1)")
        address = f"[{options.address}]" if ":" in options.address else options.address
        return cls(
            host=options.host,
            url=f"{scheme}://{address}:{options.port}/wsman",
            address=options.address,
            port=options.port,
            scheme=scheme,
            auth=auth,
            username=options.username,
            password=options.password,
            ca_file=ca_file,
            cert_sha256=pin,
            connect_timeout=options.connect_timeout,
            operation_timeout=op_timeout,
            read_timeout=read_timeout,
            command_timeout=command_timeout,
        )
