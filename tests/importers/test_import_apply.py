"""Writing import plans on SQLite and PostgreSQL: all-or-nothing, idempotent, merge on update."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mssp.config import Settings
from mssp.errors import DatabaseError, InventoryError
from mssp.importers import apply as apply_mod
from mssp.importers import read_inventory
from mssp.importers.apply import apply_plan, preview
from mssp.models.inventory import Client, Host, Site

FIXTURES = Path(__file__).parent / "fixtures"


async def _counts() -> tuple[int, int, int]:
    return await Client.all().count(), await Site.all().count(), await Host.all().count()


async def test_ansible_import_writes_clients_sites_hosts(db: Settings) -> None:
    parsed = read_inventory(FIXTURES / "ansible_ini" / "hosts.ini")
    plan = await preview(parsed)
    assert plan.count("create", "host") == 8
    result = await apply_plan(plan)
    assert result.created == 2 + 3 + 8
    assert await _counts() == (2, 3, 8)
    client = await Client.get(slug="acme-dental")
    assert client.name == "acme_dental"
    dc = await Host.get(name="acme-dca").prefetch_related("site__client")
    assert (dc.site.slug, dc.site.client.slug) == ("acme-dc", "acme-dental")
    assert (dc.transport, dc.port, dc.username) == ("winrm", 5986, "ACME\\svc-mssp")
    assert dc.options == {"scheme": "https", "auth": "ntlm"}
    fs = await Host.get(name="acme-fs01")
    assert fs.tags == "backup-target,fileserver"
    assert fs.via == "site"


async def test_second_import_changes_nothing(db: Settings) -> None:
    for source in ("ansible_ini/hosts.ini", "ansible_yaml/inventory.yml", "clients.csv"):
        parsed = read_inventory(FIXTURES / source)
        await apply_plan(await preview(parsed))
        again = await preview(parsed)
        assert not again.has_writes, source
        assert {c.action for c in again.changes} == {"unchanged"}
    ssh = read_inventory(
        FIXTURES / "ssh" / "config",
        client="acme-dental",
        site="main-office",
        ssh_dir=FIXTURES / "ssh",
    )
    first = await preview(ssh)
    # fs01 and dc01 came from clients.csv: the ssh config updates them, the rest is new
    assert {c.name for c in first.changes if c.action == "update"} == {
        "acme-dental/main-office/fs01",
        "acme-dental/main-office/dc01",
    }
    await apply_plan(first)
    assert not (await preview(ssh)).has_writes
    assert await Host.filter(site__slug="main-office").count() == 6


async def test_update_follows_the_file_and_keeps_hand_made_tags(
    db: Settings, tmp_path: Path
) -> None:
    csv = tmp_path / "hosts.csv"
    csv.write_text("client,site,name,address,tags\nacme,main,fs01,192.0.2.10,fileserver\n")
    await apply_plan(await preview(read_inventory(csv)))
    await Host.filter(name="fs01").update(tags="fileserver,pinned", options={"note": "by hand"})
    site = await Site.get(slug="main")
    await Host.create(site=site, name="by-hand", address="192.0.2.50")
    csv.write_text("client,site,name,address,port,tags\nacme,main,fs01,192.0.2.99,2222,nas\n")
    plan = await preview(read_inventory(csv))
    change = next(c for c in plan.changes if c.kind == "host")
    assert change.action == "update"
    assert {f.field for f in change.changes} == {"address", "port", "tags"}
    assert "update    host   acme/main/fs01  address: '192.0.2.10' -> '192.0.2.99'" in "\n".join(
        plan.render()
    )
    left = [c.name for c in plan.changes if c.action == "left"]
    assert left == ["acme/main/by-hand"]
    result = await apply_plan(plan)
    assert (result.created, result.updated, result.left) == (0, 1, 1)
    assert await Host.filter(name="by-hand").exists()
    fs01 = await Host.get(name="fs01")
    assert (fs01.address, fs01.port) == ("192.0.2.99", 2222)
    assert fs01.tags == "fileserver,nas,pinned"
    assert fs01.options == {"note": "by hand"}


async def test_a_failure_midway_writes_nothing(db: Settings, monkeypatch) -> None:
    plan = await preview(read_inventory(FIXTURES / "ansible_ini" / "hosts.ini"))
    real_create = Host.create
    calls = 0

    async def failing_create(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 5:
            raise RuntimeError("disk full (simulated)")
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(apply_mod.Host, "create", failing_create)
    with pytest.raises(DatabaseError, match="nothing was imported"):
        await apply_plan(plan)
    monkeypatch.undo()
    assert calls == 5
    assert await _counts() == (0, 0, 0)


async def test_database_changed_since_preview_is_refused(db: Settings) -> None:
    plan = await preview(read_inventory(FIXTURES / "clients.csv"))
    client = await Client.create(slug="acme-dental", name="Acme Dental")
    site = await Site.create(client=client, slug="main-office", name="Main")
    await Host.create(site=site, name="fs01", address="198.51.100.1")
    with pytest.raises(InventoryError, match="changed since the preview"):
        await apply_plan(plan)
    assert await _counts() == (1, 1, 1)


async def test_broken_file_imports_nothing(db: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "hosts.ini"
    shutil.copy(FIXTURES / "broken" / "bad-range.ini", bad)
    with pytest.raises(InventoryError, match=r"hosts\.ini:3: "):
        await apply_plan(await preview(read_inventory(bad, client="acme", site="main")))
    assert await _counts() == (0, 0, 0)


async def test_same_host_twice_in_a_file_is_an_error(db: Settings, tmp_path: Path) -> None:
    csv = tmp_path / "dupe.csv"
    csv.write_text("client,site,name,address\nacme,main,a,192.0.2.1\nacme,main,a,192.0.2.2\n")
    with pytest.raises(InventoryError, match=r"dupe\.csv:3: host acme/main/a is defined twice"):
        await preview(read_inventory(csv))
