"""A host result the database refuses still ends in a true final state, and harms no other host.

The database itself refuses the write here: a trigger (SQLite and PostgreSQL) aborts the final
update of one host's row, as a value the database cannot store would. The other hosts' results,
which the engine commits in the same group transaction, must be recorded all the same; the refused
host must end in a final state with the reason, never stay ``running`` in a finished run; and no
asyncio task may end on an exception nobody retrieves.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mssp.models.runs import HostLock, HostRun, Run
from tests.engine.conftest import engine_for, make_hosts
from tests.security.dbfaults import refusing
from tests.sshserver import ssh_test_server

VICTIM = "acme/hq/h001"


@asynccontextmanager
async def unretrieved_task_errors() -> AsyncIterator[list[dict]]:
    loop = asyncio.get_running_loop()
    seen: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        yield seen
    finally:
        gc.collect()
        await asyncio.sleep(0)
        loop.set_exception_handler(previous)


async def _run(db, condition: str) -> tuple[int, list[dict]]:
    async with ssh_test_server() as srv, unretrieved_task_errors() as errors:
        async with refusing("host_run", "UPDATE", condition):
            async with engine_for(db, srv, make_hosts(srv, 3)) as (engine, _):
                run_id = await engine.start_run("command", "all", params={"cmd": "echo result"})
                await engine.wait(run_id)
    return run_id, errors


async def test_a_refused_host_result_is_recorded_without_it_and_spares_other_hosts(db) -> None:
    condition = f"NEW.host_name = '{VICTIM}' AND NEW.stdout <> ''"
    run_id, errors = await _run(db, condition)
    assert errors == []
    run = await Run.get(id=run_id)
    assert run.state == "finished"
    rows = {r.host_name: r for r in await HostRun.filter(run_id=run_id)}
    victim = rows.pop(VICTIM)
    assert victim.state == "ok"  # the host did its work; only the output was lost
    assert victim.stdout == "" and "could not be recorded" in victim.error
    assert [(r.state, r.stdout) for r in rows.values()] == [("ok", "result\n")] * 2
    assert await HostLock.filter(run_id=run_id).count() == 0


async def test_a_host_whose_state_cannot_be_written_is_never_left_running(db) -> None:
    condition = f"NEW.host_name = '{VICTIM}' AND NEW.state NOT IN ('running', 'interrupted')"
    run_id, errors = await _run(db, condition)
    assert errors == []
    run = await Run.get(id=run_id)
    assert run.state == "finished"
    rows = {r.host_name: r for r in await HostRun.filter(run_id=run_id)}
    assert rows.pop(VICTIM).state == "interrupted"
    assert [r.state for r in rows.values()] == ["ok", "ok"]
    assert await HostRun.filter(run_id=run_id, state="running").count() == 0
    assert await HostLock.filter(run_id=run_id).count() == 0
