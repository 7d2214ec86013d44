"""Fixtures for the promise suite: a fresh in-process SSH server per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.sshserver import SSHTestServer, ssh_test_server


@pytest.fixture
async def ssh_server() -> AsyncIterator[SSHTestServer]:
    async with ssh_test_server() as srv:
        yield srv
