"""The crash test: SIGKILL the core at several points of a 50-host run, restart, and find every
host in a true state, every finished output kept, the rest completed by `runs resume`, and no
host run twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from mssp.models.runs import HostLock, HostRun, Run

CHILD = Path(__file__).with_name("crash_child.py")
HOSTS = 50


async def child(db, srv, tmp_path: Path, *args: str) -> tuple[int, list[dict]]:
    """Run crash_child.py to its end (or its SIGKILL); its JSON lines."""
    key = tmp_path / "client_key"
    key.write_text(srv.client_key)
    key.chmod(0o600)
    env = {**os.environ, "MSSP_HOME": str(db.config_dir), "MSSP_DATABASE_URL": db.database_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        *args,
        "--port",
        str(srv.port),
        "--user",
        srv.username,
        "--host-key",
        srv.host_key_public,
        "--client-key",
        str(key),
        "--dir",
        str(tmp_path / "counts"),
        "--count",
        str(HOSTS),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()[-3000:]
    return proc.returncode, lines


def executions(tmp_path: Path) -> dict[str, int]:
    counts = tmp_path / "counts"
    return {
        f.name: sum(line.startswith("start") for line in f.read_text().splitlines())
        for f in counts.iterdir()
    }


@pytest.mark.parametrize(
    ("point", "after"),
    [
        ("run-created", 1),  # everything queued, nothing dispatched
        ("after-running-commit", 3),  # hosts committed running, not yet dispatched
        ("host-dispatched", 15),  # mid-dispatch
        ("before-final-commit", 12),  # a command ran, its result not yet recorded
        ("after-final-commit", 25),  # half the fleet recorded
    ],
)
async def test_sigkill_then_resume_leaves_true_states(db, ssh_server, tmp_path, point, after):
    (tmp_path / "counts").mkdir()
    code, lines = await child(
        db, ssh_server, tmp_path, "start", "--crash-at", point, "--crash-after", str(after)
    )
    assert code == -signal.SIGKILL, f"the core was not killed at {point}"
    run = await Run.get()
    rows = {r.host_name: r for r in await HostRun.filter(run_id=run.id)}
    assert len(rows) == HOSTS
    at_kill = {name: r.state for name, r in rows.items()}
    assert set(at_kill.values()) <= {"queued", "running", "changed"}
    ran_before = executions(tmp_path)
    for name, row in rows.items():
        short = name.rsplit("/", 1)[1]
        if row.state == "changed":  # recorded finished: its output is there, it ran once
            assert row.stdout == f"ran {short}\n" and ran_before.get(short) == 1
        if row.state == "queued":  # never dispatched
            assert short not in ran_before

    code, lines = await child(db, ssh_server, tmp_path, "resume", "--run-id", str(run.id))
    assert code == 0 and lines[-1]["state"] == "finished"
    final = {r.host_name: r for r in await HostRun.filter(run_id=run.id)}
    ran = executions(tmp_path)
    for name, row in final.items():
        short = name.rsplit("/", 1)[1]
        before = at_kill[name]
        if before == "running":
            # the core died while it ran: interrupted, never ok or failed by guess, not re-run
            # (a command sent before the kill may still finish on the host: at most once)
            assert row.state == "interrupted" and "unknown" in row.error
            assert row.started_at == rows[name].started_at  # resume never dispatched it
            assert ran.get(short, 0) <= 1
        else:
            assert row.state == "changed", (name, before, row.state, row.error)
            assert row.stdout == f"ran {short}\n"
            assert ran[short] == 1  # nothing ran twice
    assert max(ran.values()) == 1
    assert (await Run.get(id=run.id)).state == "finished"
    assert await HostLock.all().count() == 0
    if point == "after-running-commit":
        assert "running" in at_kill.values()  # the window the test is about was hit


async def test_two_core_processes_never_run_one_host_at_once(db, ssh_server, tmp_path) -> None:
    """One run per host at a time is a fact in the database: it holds across processes."""
    (tmp_path / "counts").mkdir()
    (code1, lines1), (code2, lines2) = await asyncio.gather(
        child(db, ssh_server, tmp_path, "start", "--seconds", "0.3"),
        child(db, ssh_server, tmp_path, "start", "--seconds", "0.3"),
    )
    first, second = await Run.all().order_by("id")
    assert first.started_at < second.finished_at and second.started_at < first.finished_at
    assert code1 == code2 == 0
    assert lines1[-1]["counts"] == lines2[-1]["counts"] == {"changed": HOSTS}
    for log in (tmp_path / "counts").iterdir():
        kinds = [line.split()[0] for line in log.read_text().splitlines()]
        assert kinds == ["start", "end", "start", "end"], (log.name, kinds)
