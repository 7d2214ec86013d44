"""The relay registry file and failed-authentication rate limiting."""

from __future__ import annotations

import asyncssh
import pytest

from relay.client import RelayClient
from relay.errors import RegistryError, RelayAuthError
from relay.registry import Registry
from tests.relay.helpers import make_rig


def test_corrupt_registry_gives_a_clear_error(tmp_path):
    path = tmp_path / "registry.json"
    for text in ["{not json", '{"version": 2}', '{"version":1,"cores":["x"],"sites":{}}']:
        path.write_text(text)
        with pytest.raises(RegistryError, match="cannot read the relay registry"):
            Registry(path)


def test_registry_round_trip_is_private_and_locked(tmp_path):
    path = tmp_path / "registry.json"
    registry = Registry(path)
    registry.lock()
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    registry.add_core(key + " comment")
    registry.register_admission("acme/hq", "h" * 43, 2e9)
    registry.revoke("acme/old")
    assert path.stat().st_mode & 0o077 == 0
    with pytest.raises(RegistryError, match="running relay"):
        Registry(path).lock()
    registry.unlock()
    again = Registry(path)
    assert again.data.cores == [" ".join(key.split()[:2])]
    assert again.site("acme/hq").pending.hash == "h" * 43
    assert again.site("acme/old").revoked
    with pytest.raises(RegistryError, match="core key refused"):
        again.add_core("ssh-rsa AAAA")


async def test_failed_authentications_are_rate_limited(tmp_path):
    rig = await make_rig(tmp_path, auth_fail_limit=3)
    try:
        stranger = asyncssh.generate_private_key("ssh-ed25519")
        for _ in range(3):
            with pytest.raises(RelayAuthError, match="authentication failed"):
                async with RelayClient(rig.url, rig.pin, stranger):
                    pass
        # now even the right key is refused from this address for a while
        with pytest.raises(RelayAuthError, match="too many failed attempts"):
            async with rig.client():
                pass
    finally:
        await rig.server.stop()
