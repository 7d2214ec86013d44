"""The agent's allowlist: which LAN ``host:port`` pairs the core may reach through it.

Names are resolved on the agent and every resulting address must be inside an allowed network; the
connection then goes to that checked address (no second lookup, so DNS cannot swap it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from relay.errors import ConfigError

DEFAULT_PORTS = (22, 5985, 5986, 3389)
"""SSH, WinRM over HTTP and HTTPS, RDP."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowlistRefusal(Exception):
    """A target outside the allowlist; the text goes back to the core verbatim."""


@dataclass(frozen=True)
class Allowlist:
    """Networks and ports the agent forwards to; everything else is refused."""

    networks: tuple[Network, ...]
    ports: tuple[int, ...] = DEFAULT_PORTS

    @classmethod
    def parse(cls, networks: Iterable[str], ports: Iterable[int | str] | None = None) -> Allowlist:
        nets: list[Network] = []
        for text in networks:
            try:
                nets.append(ipaddress.ip_network(str(text).strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    f"not a network: {text!r} (use CIDR, e.g. 192.168.1.0/24)"
                ) from None
        if not nets:
            raise ConfigError("the allowlist needs at least one network (the site's LAN)")
        out_ports: list[int] = []
        for port in DEFAULT_PORTS if ports is None else ports:
            try:
                value = int(port)
            except (TypeError, ValueError):
                raise ConfigError(f"not a port: {port!r}") from None
            if not 0 < value < 65536:
                raise ConfigError(f"port out of range: {value}")
            out_ports.append(value)
        if not out_ports:
            raise ConfigError("the allowlist needs at least one port")
        return cls(tuple(nets), tuple(sorted(set(out_ports))))

    def to_json(self) -> dict[str, list[str] | list[int]]:
        return {"networks": [str(n) for n in self.networks], "ports": list(self.ports)}

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return any(ip in net for net in self.networks)

    def quick_check(self, host: str, port: int) -> None:
        """Refuse at once what needs no lookup: a port, or an address literal, outside the list."""
        if port not in self.ports:
            raise AllowlistRefusal(f"port {port} is not in this agent's allowlist")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        if not self.address_allowed(host):
            raise AllowlistRefusal(f"{host} is outside this agent's allowed networks")

    async def resolve(self, host: str, port: int, *, timeout: float = 5.0) -> str:
        """The address to connect to for ``host:port``; AllowlistRefusal if not allowed."""
        self.quick_check(host, port)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise AllowlistRefusal(f"cannot resolve {host} on the agent: {exc}") from None
        addresses = [info[4][0] for info in infos]
        for address in addresses:
            if self.address_allowed(address):
                return address
        raise AllowlistRefusal(f"{host} resolves outside this agent's allowed networks")
