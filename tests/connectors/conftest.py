"""Fixtures for connector tests: a real in-process SSH server and ConnectOptions that reach it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from mssp.connectors.base import ConnectOptions
from tests.sshserver import SSHTestServer, ssh_test_server


@pytest.fixture
async def ssh_server() -> AsyncIterator[SSHTestServer]:
    """One fresh SSH test server (own host key, client key and password) per test."""
    async with ssh_test_server() as srv:
        yield srv


def ssh_options(srv: SSHTestServer, *, key: bool = True, **changes: Any) -> ConnectOptions:
    """ConnectOptions reaching ``srv``: the client key (or the password) and its pinned host key."""
    values: dict[str, Any] = {
        "host": "acme/hq/test",
        "address": srv.address,
        "port": srv.port,
        "username": srv.username,
        "private_key": srv.client_key if key else None,
        "password": None if key else srv.password,
        "pinned_host_keys": (srv.host_key_public,),
        "connect_timeout": 5.0,
    }
    values.update(changes)
    return ConnectOptions(**values)
