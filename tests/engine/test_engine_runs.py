"""Engine runs against a real in-process SSH server: states, waves, limits, max-fail, retry."""

from __future__ import annotations

import pytest

from mssp.engine import RunOptions
from mssp.models.runs import HostRun, Run
from mssp.tasks.base import Plan, Task, TaskResult, register
from tests.engine.conftest import closed_port_host, engine_for, make_hosts


@register
class ShoutTask(Task):
    """Test task that reports progress through ctx.emit, hostile characters included."""

    name = "test.shout"

    async def check(self, ctx):
        return Plan(changes=("shout",))

    async def apply(self, ctx, plan):
        ctx.emit("progress", "50%\x1b[2K\rdone")
        return TaskResult.changed()


async def test_exec_over_hosts_records_ok_and_output(db, ssh_server) -> None:
    hosts = make_hosts(ssh_server, 5)
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        run_id = await engine.start_run("command", "all", params={"cmd": "echo hello $((6*7))"})
        summary = await engine.wait(run_id)
    assert summary.state == "finished"
    assert summary.counts == {"ok": 5}
    assert all(h.stdout == "hello 42\n" and h.exit_status == 0 for h in summary.hosts)
    assert summary.exit_code == 0
    rows = await HostRun.filter(run_id=run_id)
    assert {r.state for r in rows} == {"ok"}
    assert (await Run.get(id=run_id)).owner == ""


async def test_unreachable_failed_and_timeout_are_distinguished(db, ssh_server, tmp_path) -> None:
    hosts = [*make_hosts(ssh_server, 2), closed_port_host()]
    # forks=1 keeps the order: the first host to run fails, the second sleeps past its timeout
    cmd = f"if mkdir {tmp_path}/first 2>/dev/null; then echo bad >&2; exit 3; else sleep 10; fi"
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        run_id = await engine.start_run(
            "command", "all", params={"cmd": cmd}, options=RunOptions(forks=1, timeout=1.5)
        )
        summary = await engine.wait(run_id)
    by_host = {h.host: h for h in summary.hosts}
    failed, timed_out, dead = (by_host[h.full_name] for h in hosts)
    assert (failed.state, failed.exit_status, failed.stderr) == ("failed", 3, "bad\n")
    assert timed_out.state == "timeout" and timed_out.exit_status is None
    assert dead.state == "unreachable" and dead.error
    assert summary.exit_code == 4  # failed wins over unreachable


async def test_connection_refused_is_retried_with_backoff_auth_never(db, ssh_server) -> None:
    dead = closed_port_host()
    async with engine_for(db, ssh_server, [dead]) as (engine, _):
        run_id = await engine.start_run(
            "command", "all", params={"cmd": "true"}, options=RunOptions(retries=2, timeout=30)
        )
        summary = await engine.wait(run_id)
    assert summary.hosts[0].state == "unreachable"
    assert summary.hosts[0].attempts == 3


async def test_escape_sequences_neutralised_in_store_and_events(db, ssh_server) -> None:
    from mssp.events import HostOutput

    hosts = make_hosts(ssh_server, 1)
    cmd = r"printf 'a\033]0;pwned\007b\033[2Jc\r\n'"
    async with engine_for(db, ssh_server, hosts) as (engine, rec):
        run_id = await engine.start_run("command", "all", params={"cmd": cmd})
        summary = await engine.wait(run_id)
        await engine.wait_idle()
    stored = summary.hosts[0].stdout
    assert stored == "a\\x1b]0;pwned\\x07b\\x1b[2Jc\n"
    outputs = [e.text for e in rec.of(HostOutput)]
    assert outputs == [stored]
    assert all("\x1b" not in text and "\x07" not in text for text in outputs)


async def test_output_capped_per_host_with_truncated_mark(db, ssh_server) -> None:
    hosts = make_hosts(ssh_server, 2)
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        run_id = await engine.start_run(
            "command",
            "all",
            params={"cmd": "echo START; head -c 20000 /dev/zero | tr '\\0' x; echo; echo END"},
            options=RunOptions(output_cap=200),
        )
        summary = await engine.wait(run_id)
    for host in summary.hosts:
        assert host.state == "ok" and host.truncated
        assert host.stdout.startswith("START") and host.stdout.rstrip().endswith("END")
        assert "output truncated" in host.stdout and len(host.stdout) < 300
    assert all(r.truncated for r in await HostRun.filter(run_id=run_id))


async def test_waves_run_in_order_canary_first(db, ssh_server) -> None:
    from mssp.events import WaveStarted

    hosts = make_hosts(ssh_server, 9, clients=("acme", "bolt", "cafe"))
    async with engine_for(db, ssh_server, hosts) as (engine, rec):
        run_id = await engine.start_run(
            "command",
            "all",
            params={"cmd": "sleep 0.05"},
            options=RunOptions(batch="3", canary=True),
        )
        summary = await engine.wait(run_id)
    assert summary.counts == {"ok": 9}
    waves = [e.host_count for e in rec.of(WaveStarted)]
    assert waves == [3, 3, 3]
    rows = await HostRun.filter(run_id=run_id).order_by("wave", "id")
    canary = [r for r in rows if r.wave == 0]
    assert sorted(r.client_slug for r in canary) == ["acme", "bolt", "cafe"]
    for wave in (1, 2):
        earlier = [r for r in rows if r.wave < wave]
        this = [r for r in rows if r.wave == wave]
        assert min(r.started_at for r in this) >= max(r.finished_at for r in earlier)


async def test_max_fail_halts_remaining_waves_and_says_so(db, ssh_server, tmp_path) -> None:
    from mssp.events import RunFinished, RunHalted

    hosts = make_hosts(ssh_server, 10)
    counter = tmp_path / "n"
    # the third host to run fails: wave 1 (2 hosts) passes, wave 2 has 1 failure of 4 so far
    cmd = (
        f"n=$(flock {tmp_path}/lock sh -c 'n=$(($(cat {counter} 2>/dev/null || echo 0)+1)); "
        f"echo $n > {counter}; echo $n'); test $n -ne 3"
    )
    async with engine_for(db, ssh_server, hosts) as (engine, rec):
        run_id = await engine.start_run(
            "command",
            "all",
            params={"cmd": cmd},
            options=RunOptions(batch="2", max_fail=10, forks=1),
        )
        summary = await engine.wait(run_id)
        await engine.wait_idle()
    assert summary.state == "halted"
    assert summary.counts == {"ok": 3, "failed": 1, "skipped": 6}
    assert "max-fail 10%" in summary.message and "1 of 4" in summary.message
    assert [h.error for h in summary.hosts if h.state == "skipped"] == [summary.message] * 6
    assert rec.of(RunHalted)[0].skipped == 6
    assert rec.of(RunFinished)[0].state == "halted"
    assert summary.exit_code == 6


async def test_retry_failed_keeps_task_params_and_options(db, ssh_server) -> None:
    hosts = [*make_hosts(ssh_server, 3), closed_port_host("dead1"), closed_port_host("dead2")]
    options = RunOptions(batch="2", max_fail=90, timeout=20, forks=3, retries=0)
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        first = await engine.start_run("command", "all", params={"cmd": "uptime"}, options=options)
        old = await engine.wait(first)
        assert old.counts == {"ok": 3, "unreachable": 2}
        second = await engine.retry(first, which=["unreachable"])
        new = await engine.wait(second)
    assert new.retry_of == first
    assert (new.task, new.target, new.params) == (old.task, old.target, old.params)
    assert new.options == old.options == options.to_json()
    assert [h.host for h in new.hosts] == ["acme/hq/dead1", "acme/hq/dead2"]
    assert RunOptions.from_json(new.options) == options


async def test_check_mode_never_applies(db, ssh_server, tmp_path) -> None:
    hosts = make_hosts(ssh_server, 2)
    marker = tmp_path / "ran"
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        run_id = await engine.start_run(
            "command", "all", params={"cmd": f"touch {marker}"}, options=RunOptions(check=True)
        )
        summary = await engine.wait(run_id)
    assert summary.check_mode and summary.counts == {"skipped": 2}
    assert not marker.exists()


async def test_invalid_input_writes_nothing(db, ssh_server) -> None:
    from mssp.errors import InventoryError, ParameterError, UsageError

    hosts = make_hosts(ssh_server, 2)
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        with pytest.raises(ParameterError):
            await engine.start_run("command", "all", params={"cmd": "  "})
        with pytest.raises(ParameterError):
            await engine.start_run("no.such.task", "all", params={})
        with pytest.raises(ParameterError):
            await engine.start_run("command", "all", params={"cmd": "x", "bogus": 1})
        with pytest.raises(UsageError):
            await engine.start_run("command", "nomatch*", params={"cmd": "true"})
        with pytest.raises(InventoryError):
            await engine.start_run("command", "client:", params={"cmd": "true"})
    assert await Run.all().count() == 0


async def test_limit_narrows_the_target_and_is_kept(db, ssh_server) -> None:
    hosts = make_hosts(ssh_server, 6, clients=("acme", "bolt"))
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        run_id = await engine.start_run(
            "command", "client:acme", params={"cmd": "true"}, options=RunOptions(limit="h00[0-3]")
        )
        summary = await engine.wait(run_id)
    assert [h.host for h in summary.hosts] == ["acme/hq/h000", "acme/hq/h002"]
    assert summary.options["limit"] == "h00[0-3]"


async def test_task_emit_is_neutralised(db, ssh_server) -> None:
    from mssp.events import HostOutput

    async with engine_for(db, ssh_server, make_hosts(ssh_server, 1)) as (engine, rec):
        await engine.wait(await engine.start_run("test.shout", "all"))
        await engine.wait_idle()
    assert [e.text for e in rec.of(HostOutput)] == ["50%\\x1b[2K\\rdone"]
