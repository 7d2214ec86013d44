"""`mssp exec`, `mssp run` and `mssp runs ...` as a user runs them: a real process, the store,
the vault, and an in-process SSH server standing in for the fleet."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import pytest

from mssp.models.runs import Run
from mssp.store.credentials import add_credential
from mssp.store.inventory import create_client, create_host, create_site
from mssp.vault import Vault

PASSPHRASE = "test vault passphrase"


@pytest.fixture
async def fleet(db, ssh_server):
    """Clients acme (3 hosts, one with a closed port) and bolt (2 hosts) in the store."""
    vault = Vault.create(db.vault_path, PASSPHRASE)
    await add_credential(
        vault, client_slug=None, name="default", kind="ssh-key", secret=ssh_server.client_key
    )
    for client, names in (("acme", ("web1", "web2", "dead")), ("bolt", ("db1", "db2"))):
        await create_client(client, client.title())
        await create_site(client, "hq")
        for name in names:
            await create_host(
                client,
                "hq",
                name,
                address="127.0.0.1",
                port=1 if name == "dead" else ssh_server.port,
                username=ssh_server.username,
                tags=("web",) if "web" in name else (),
            )
    return db


async def mssp(
    settings, *args: str, signals: tuple[float, ...] = (), signum: int = signal.SIGINT
) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "MSSP_HOME": str(settings.config_dir),
        "MSSP_DATABASE_URL": settings.database_url,
        "MSSP_VAULT_PASSPHRASE": PASSPHRASE,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from mssp.cli import main; main()",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if signals:
        # signal only once hosts run: by then the command has installed its handlers
        from mssp.models.runs import HostRun

        for _ in range(1500):
            if await HostRun.filter(state="running").exists():
                break
            await asyncio.sleep(0.02)
    for delay in signals:
        await asyncio.sleep(delay)
        proc.send_signal(signum)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    return proc.returncode, out.decode(), err.decode()


async def test_exec_recap_and_exit_code_for_unreachable(fleet) -> None:
    code, out, err = await mssp(fleet, "exec", "client:acme", "--retries", "0", "--", "echo", "hi")
    assert code == 5, err
    assert "acme/hq/web1 | OK | rc=0" in out and "    hi" in out
    assert "acme/hq/dead | UNREACHABLE" in out
    assert "ok=2" in out and "unreachable=1" in out


async def test_exec_json_document_and_failed_exit(fleet) -> None:
    code, out, _ = await mssp(fleet, "exec", "tag:web", "--json", "--", "exit 3")
    doc = json.loads(out)
    assert code == 4 and doc["exit_code"] == 4
    assert doc["counts"] == {"failed": 2}
    assert {h["host"] for h in doc["hosts"]} == {"acme/hq/web1", "acme/hq/web2"}


async def test_exec_jsonl_streams_events(fleet) -> None:
    code, out, _ = await mssp(fleet, "exec", "client:bolt", "--jsonl", "--", "true")
    lines = [json.loads(line) for line in out.splitlines()]
    kinds = [line["event"] for line in lines]
    assert code == 0
    assert kinds[0] == "RunStarted" or "HostStateChanged" in kinds
    assert "RunFinished" in kinds and kinds[-1] == "RunSummary"


async def test_bad_target_is_a_usage_error_and_writes_nothing(fleet) -> None:
    code, _, err = await mssp(fleet, "exec", "client:", "--", "true")
    assert code == 2 and "error:" in err
    code, _, err = await mssp(fleet, "exec", "nosuch*", "--", "true")
    assert code == 2
    code, _, err = await mssp(fleet, "exec", "all", "--batch", "0", "--", "true")
    assert code == 2 and "--batch" in err
    assert await Run.all().count() == 0


async def test_runs_list_show_and_retry_keep_options(fleet) -> None:
    code, out, _ = await mssp(
        fleet,
        "run",
        "command",
        "client:acme",
        "-p",
        "cmd=uptime",
        "--batch",
        "2",
        "--max-fail",
        "90%",
        "--timeout",
        "2m",
        "--retries",
        "0",
        "--json",
    )
    first = json.loads(out)
    assert code == 5 and first["counts"] == {"ok": 2, "unreachable": 1}
    code, out, _ = await mssp(fleet, "runs", "list", "--json")
    assert [r["run_id"] for r in json.loads(out)] == [first["run_id"]]
    code, out, _ = await mssp(fleet, "runs", "show", str(first["run_id"]))
    assert code == 5 and "acme/hq/dead | UNREACHABLE" in out and '"batch": "2"' in out
    code, out, _ = await mssp(
        fleet, "runs", "retry", str(first["run_id"]), "--unreachable", "--json"
    )
    retry = json.loads(out)
    assert retry["retry_of"] == first["run_id"]
    assert retry["options"] == first["options"] and retry["params"] == first["params"]
    assert [h["host"] for h in retry["hosts"]] == ["acme/hq/dead"]
    code, _, err = await mssp(fleet, "runs", "resume", str(first["run_id"]))
    assert code == 1 and "nothing to resume" in err
    code, _, err = await mssp(fleet, "runs", "show", "999")
    assert code == 3


async def test_ctrl_c_twice_stops_at_once_with_true_states(fleet) -> None:
    code, out, err = await mssp(fleet, "exec", "client:bolt", "--", "sleep 30", signals=(0.2, 0.3))
    assert code == 130, err
    run = await Run.get()
    assert run.state == "cancelled"
    assert "bolt/hq/db1 | CANCELLED" in out


async def test_progress_bar_on_a_terminal(fleet) -> None:
    import pty

    master, slave = pty.openpty()
    env = {
        **os.environ,
        "MSSP_HOME": str(fleet.config_dir),
        "MSSP_DATABASE_URL": fleet.database_url,
        "MSSP_VAULT_PASSPHRASE": PASSPHRASE,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from mssp.cli import main; main()",
        "exec",
        "client:bolt",
        "--",
        "sleep 0.4; echo fine",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    terminal = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "Ctrl-C cancels" in terminal
    assert "[                    ] 0/2" in terminal  # the bar knows the size from the start
    assert "[####################] 2/2  ok 2" in terminal
    assert "bolt/hq/db1 | OK | rc=0" in out.decode()


async def test_sigterm_stops_at_once_and_records_cancelled(fleet) -> None:
    code, out, _ = await mssp(
        fleet, "exec", "client:bolt", "--", "sleep 30", signals=(0.2,), signum=signal.SIGTERM
    )
    assert code == 130
    run = await Run.get()
    assert run.state == "cancelled" and "bolt/hq/db2 | CANCELLED" in out
