"""Fixtures for relay tests: a fresh TLS relay on 127.0.0.1 per test (cheap: ~50 ms)."""

from __future__ import annotations

import pytest

from tests.relay.helpers import Recorder, make_rig


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def rig(tmp_path, recorder):
    rig = await make_rig(tmp_path, observer=recorder)
    try:
        yield rig
    finally:
        await rig.server.stop()
