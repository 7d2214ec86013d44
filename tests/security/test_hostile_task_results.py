"""Hostile text a task *parses* (not only raw output) stays data: neutralised, storable, final.

The facts task reads /etc/os-release; a compromised host controls it. Here the SSH test server
runs every command in a private mount namespace where /etc/os-release is a hostile file (escape
sequences, OSC 52, a NUL, C1, a bidi override). Nothing outside the namespace changes.
"""

from __future__ import annotations

import re
from pathlib import Path

from mssp.models.runs import HostRun
from tests.engine.conftest import engine_for, make_hosts
from tests.sshserver import ssh_test_server

HOSTILE = (
    'NAME="Evil\x1b]0;pwned\x07Linux"\nID=debian\n'
    'PRETTY_NAME="Debian \x1b]52;c;ZXZpbA==\x07\x00NUL \x9b2J\u202eevil"\nVERSION_ID="12"\n'
)
RAW_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)


async def test_hostile_host_output_stays_data_in_task_results(db, tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_bytes(HOSTILE.encode())
    release.chmod(0o644)
    script = f'mount --bind {release} /etc/os-release && exec "$@"'

    def wrap(argv: list[str]) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]

    async with ssh_test_server(command_wrapper=wrap) as srv:
        async with engine_for(db, srv, make_hosts(srv, 1)) as (engine, _):
            run_id = await engine.start_run("facts", "all", params={})
            summary = await engine.wait(run_id)
    row = await HostRun.get(run_id=run_id)
    assert row.state in ("ok", "failed"), (summary.counts, row.state)
    texts = [row.error, *strings(row.result)]
    assert [t for t in texts if RAW_CONTROL.search(t)] == []
    assert any("pwned" in t for t in texts)  # kept, visibly, as data


def strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings(v)]
    return []


async def test_hostile_facts_are_saved_neutralised(db, tmp_path: Path) -> None:
    """The facts kept as the host's latest (mssp.store.facts) are the neutralised ones."""
    from mssp.store.facts import load_facts
    from mssp.store.inventory import create_client, create_host, create_site

    release = tmp_path / "os-release"
    release.write_bytes(HOSTILE.encode())
    release.chmod(0o644)
    script = f'mount --bind {release} /etc/os-release && exec "$@"'

    def wrap(argv: list[str]) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]

    async with ssh_test_server(command_wrapper=wrap) as srv:
        await create_client("acme", "Acme")
        await create_site("acme", "hq")
        host = await create_host(
            "acme", "hq", "h1", address=srv.address, port=srv.port, username=srv.username
        )
        async with engine_for(db, srv, [host]) as (engine, _):
            await engine.wait(await engine.start_run("facts", "all", params={}))
    saved = await load_facts(host)
    assert saved is not None
    texts = strings(dict(saved.data))
    assert [t for t in texts if RAW_CONTROL.search(t)] == []
    assert "\\x1b]0;pwned\\x07" in saved.data["os"]["name"]  # kept, visibly, as data
