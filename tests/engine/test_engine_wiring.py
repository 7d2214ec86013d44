"""The engine's links to the store: gathered facts are kept per host, declared secrets come from
the vault (the host's client first), and a plan's reason for doing nothing is reported."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mssp.models.runs import HostRun
from mssp.store import credentials as store_credentials
from mssp.store import inventory as store_inventory
from mssp.store.facts import load_facts
from mssp.store.secrets import VaultSecretSource
from mssp.tasks.base import Plan, Task, TaskResult, register
from mssp.vault import FLOOR, Vault
from tests.engine.conftest import engine_for


@register
class SecretEchoTask(Task):
    """Test task: proves it received the vault secret, without printing it."""

    name = "test.secret-length"
    secrets = ("credential:db-password",)

    async def check(self, ctx):
        return Plan(changes=("measure",))

    async def apply(self, ctx, plan):
        secret = ctx.secrets["credential:db-password"]
        result = await ctx.run("wc -c", stdin=secret.reveal())
        return TaskResult.changed(result.stdout.strip())


@register
class NothingToDoTask(Task):
    name = "test.nothing-to-do"

    async def check(self, ctx):
        return Plan(data={"message": "user jdoe not present"})

    async def apply(self, ctx, plan):
        raise AssertionError("apply must not run when the plan needs nothing")


async def _db_hosts(ssh_server, clients=("acme", "globex")):
    for client in clients:
        await store_inventory.create_client(client, client.title())
        await store_inventory.create_site(client, "hq")
        await store_inventory.create_host(client, "hq", "srv1", address="127.0.0.1")
    return [
        replace(
            h, address=ssh_server.address, port=ssh_server.ports[0], username=ssh_server.username
        )
        for h in await store_inventory.load_hosts()
    ]


async def _messages(run_id: int) -> dict[str, str]:
    return {r.host_name: r.result.get("message", "") for r in await HostRun.filter(run_id=run_id)}


async def test_facts_gathered_by_a_run_are_kept_per_host(db, ssh_server) -> None:
    hosts = await _db_hosts(ssh_server, clients=("acme",))
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        run_id = await engine.start_run("facts", "all")
        summary = await engine.wait(run_id)
    assert summary.counts.get("ok", 0) + summary.counts.get("changed", 0) == 1, summary
    facts = await load_facts(hosts[0].id)
    assert facts is not None and facts.data, "the facts task's data was not stored"


async def test_declared_secrets_come_from_the_hosts_client(db, ssh_server, tmp_path) -> None:
    hosts = await _db_hosts(ssh_server)
    vault = Vault.create(tmp_path / "vault.json", "a passphrase for tests", kdf=FLOOR)
    await store_credentials.add_credential(
        vault, client_slug="acme", name="db-password", kind="password", secret="s3cret-acme"
    )
    await store_credentials.add_credential(
        vault, client_slug=None, name="db-password", kind="password", secret="global-one!"
    )
    async with engine_for(db, ssh_server, hosts, secrets=VaultSecretSource(vault)) as (engine, _):
        summary = await engine.wait(await engine.start_run("test.secret-length", "all"))
    assert summary.counts == {"changed": 2}, summary
    messages = await _messages(summary.run_id)
    assert messages["acme/hq/srv1"] == str(len("s3cret-acme"))
    assert messages["globex/hq/srv1"] == str(len("global-one!"))  # no client one: global


async def test_plan_reason_is_reported_when_nothing_is_needed(db, ssh_server) -> None:
    hosts = await _db_hosts(ssh_server, clients=("acme",))
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        summary = await engine.wait(await engine.start_run("test.nothing-to-do", "all"))
    assert summary.counts == {"ok": 1}
    assert await _messages(summary.run_id) == {"acme/hq/srv1": "user jdoe not present"}


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
