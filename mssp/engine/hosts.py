"""Where the engine finds hosts (the store, or a fixed list) and how a target selects them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mssp.inventory import HostRecord


class HostSource(Protocol):
    """Where the engine finds HostRecords (the store, or a fixed list in tests)."""

    async def load_hosts(self) -> list[HostRecord]: ...


class StoreHosts:
    """The inventory in the database (mssp.store)."""

    async def load_hosts(self) -> list[HostRecord]:
        from mssp.store.inventory import load_hosts

        return await load_hosts()


class StaticHosts:
    """A fixed list of hosts."""

    def __init__(self, hosts: Sequence[HostRecord]) -> None:
        self.hosts = list(hosts)

    async def load_hosts(self) -> list[HostRecord]:
        return list(self.hosts)


def select_hosts(expression: str, hosts: Sequence[HostRecord]) -> list[HostRecord]:
    from mssp.selection import select

    return select(expression, hosts)
