"""`mssp exec`, `mssp run` and `mssp runs ...`: fleet runs from the terminal, with live progress,
a per-host recap, --json / --jsonl, and the documented exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import click

from mssp.cli import EXIT_CODES_HELP
from mssp.cli._runview import View, follow, show_summary, with_engine
from mssp.cli.common import (
    CliContext,
    emit_json,
    handle_errors,
    json_option,
    pass_cli,
    print_table,
)
from mssp.engine.options import RunOptions, RunSummary, parse_duration
from mssp.engine.waves import parse_percent
from mssp.errors import UsageError
from mssp.output import neutralise

if TYPE_CHECKING:
    from mssp.engine import Engine


# ---- options ------------------------------------------------------------------------------
def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by exec, run and runs retry (Ansible's names where they mean the same)."""
    decorators = [
        click.option(
            "-f", "--forks", type=click.IntRange(1), help="Hosts at once [settings: forks, 100]."
        ),
        click.option(
            "--per-client",
            type=click.IntRange(1),
            help="Hosts of one client at once [settings: per_client_limit].",
        ),
        click.option("-l", "--limit", help="Further narrow the target by this selection."),
        click.option("-C", "--check", is_flag=True, help="Plan only: change nothing."),
        click.option("--batch", help="Wave size: N hosts or N% of the selection."),
        click.option("--canary", is_flag=True, help="First wave: one host per client."),
        click.option("--max-fail", help="Halt the remaining waves when more than N% failed."),
        click.option(
            "--timeout", help="Per-host time limit (90s, 15m, 1h) [settings: command_timeout]."
        ),
        click.option(
            "--queue-offline",
            metavar="TTL",
            help="Keep unreachable hosts queued for TTL (7d) and run them when they return.",
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, 10),
            default=1,
            show_default=True,
            help="Connection retries (transient errors only).",
        ),
        click.option("--jsonl", is_flag=True, help="Stream events as JSON lines."),
        click.option(
            "-v", "--verbose", is_flag=True, help="Show every host's output in the recap."
        ),
        click.option(
            "--local",
            is_flag=True,
            help="Run in this process even when `mssp daemon` runs (it would take the run: "
            "no start-up cost, its open connections).",
        ),
        json_option,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def build_options(kw: dict[str, Any]) -> RunOptions:
    return RunOptions(
        forks=kw["forks"],
        per_client=kw["per_client"],
        limit=kw["limit"],
        check=kw["check"],
        batch=kw["batch"],
        canary=kw["canary"],
        max_fail=parse_percent(kw["max_fail"]) if kw["max_fail"] else None,
        timeout=parse_duration(kw["timeout"], "--timeout") if kw["timeout"] else None,
        queue_offline=(
            parse_duration(kw["queue_offline"], "--queue-offline") if kw["queue_offline"] else None
        ),
        retries=kw["retries"],
    )


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param wants KEY=VALUE, not {pair!r}")
        params[key.strip()] = value
    return params


def _run_command(
    cli: CliContext,
    view: View,
    kw: dict[str, Any],
    task: str,
    target: str,
    params: dict[str, Any],
) -> None:
    """Hand the run to a running `mssp daemon` (unless --local), else run it in this process."""
    with handle_errors():
        options = build_options(kw)
        if not kw["local"]:
            from mssp.cli._handoff import hand_off, request

            message = request(cli.settings, task, target, params, options, view)
            code = asyncio.run(hand_off(cli.settings, message, view))
            if code is not None:
                sys.exit(code)

        async def work(engine: Engine) -> int:
            return await follow(
                engine,
                lambda: engine.start_run(task, target, params=params, options=options),
                view,
            )

        code = asyncio.run(
            with_engine(cli.settings, work, forks=options.forks, per_client=options.per_client)
        )
    sys.exit(code)


def _view(kw: dict[str, Any], *, show_output: bool) -> View:
    if kw["as_json"] and kw["jsonl"]:
        raise click.UsageError("--json and --jsonl exclude each other")
    return View(
        as_json=kw["as_json"], jsonl=kw["jsonl"], verbose=kw["verbose"], show_output=show_output
    )


# ---- commands -------------------------------------------------------------------------------
@click.command("exec", epilog=EXIT_CODES_HELP)
@click.argument("target")
@click.argument("command", nargs=-1, required=True)
@click.option("--become", is_flag=True, help="Run the command through sudo.")
@run_options
@pass_cli
def exec_cmd(
    cli: CliContext, target: str, command: tuple[str, ...], become: bool, **kw: Any
) -> None:
    """Run an ad-hoc shell command on every host TARGET selects.

    \b
    mssp exec 'client:acme' -- df -h /
    mssp exec 'tag:web' -f 50 --json -- systemctl is-active nginx
    """
    view = _view(kw, show_output=True)
    line = " ".join(command)
    _run_command(cli, view, kw, "command", target, {"cmd": line, "become": become})


@click.command("run", epilog=EXIT_CODES_HELP)
@click.argument("task")
@click.argument("target")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Task parameter (repeatable).",
)
@run_options
@pass_cli
def run_cmd(cli: CliContext, task: str, target: str, params: tuple[str, ...], **kw: Any) -> None:
    """Run TASK on every host TARGET selects: check, then apply where needed, then verify.

    \b
    mssp run updates.apply 'client:acme' --batch 25% --canary --max-fail 10%
    """
    view = _view(kw, show_output=False)
    with handle_errors():
        values = parse_params(params)
    _run_command(cli, view, kw, task, target, values)


@click.group("runs")
def runs_group() -> None:
    """Past and current runs: list, show, retry, resume, cancel."""


@runs_group.command("list")
@click.option("-n", "--limit", type=click.IntRange(1), default=20, show_default=True)
@json_option
@pass_cli
def runs_list(cli: CliContext, limit: int, as_json: bool) -> None:
    """The newest runs with their host counts."""
    from mssp.engine import list_runs

    runs = _db_call(cli, lambda: list_runs(limit))
    if as_json:
        emit_json([r.to_json() for r in runs])
        return
    print_table(
        [
            {
                "id": r.run_id,
                "state": r.state,
                "task": r.task,
                "target": neutralise(r.target),
                "hosts": sum(r.counts.values()),
                "result": " ".join(f"{k}={v}" for k, v in r.counts.items()),
                "started": (r.started_at or "")[:19],
            }
            for r in runs
        ],
        ["id", "state", "task", "target", "hosts", "result", "started"],
    )


@runs_group.command("show")
@click.argument("run_id", type=int)
@click.option("-o", "--output", is_flag=True, help="Show every host's output.")
@json_option
@pass_cli
def runs_show(cli: CliContext, run_id: int, output: bool, as_json: bool) -> None:
    """One run: its options, every host's state, and (with -o) outputs."""
    from mssp.engine import load_summary

    summary = _db_call(cli, lambda: load_summary(run_id))
    if as_json:
        emit_json(summary.to_json())
        return
    click.echo(
        f"run {summary.run_id}: {summary.task} on {neutralise(summary.target)}"
        + (" (check mode)" if summary.check_mode else "")
        + (f", retry of {summary.retry_of}" if summary.retry_of else "")
    )
    click.echo(f"params: {neutralise(json.dumps(dict(summary.params)))}")
    options = {k: v for k, v in summary.options.items() if v not in (None, False)}
    click.echo(f"options: {json.dumps(options)}\n")
    show_summary(summary, View(show_output=output))
    sys.exit(summary.exit_code)


def _db_call(cli: CliContext, work: Callable[[], Awaitable[Any]]) -> Any:
    from mssp.cli.init import run_with_database

    return run_with_database(cli.settings, work)


@runs_group.command("retry", epilog=EXIT_CODES_HELP)
@click.argument("run_id", type=int)
@click.option("--failed", is_flag=True, help="Hosts that failed or timed out.")
@click.option("--unreachable", is_flag=True, help="Hosts that were unreachable or expired.")
@click.option("--interrupted", is_flag=True, help="Hosts the core died on (they may have run).")
@click.option("--jsonl", is_flag=True, help="Stream events as JSON lines.")
@click.option("-v", "--verbose", is_flag=True)
@json_option
@pass_cli
def runs_retry(
    cli: CliContext, run_id: int, failed: bool, unreachable: bool, interrupted: bool, **kw: Any
) -> None:
    """A new run of RUN_ID's task, parameters and options over its failed/unreachable hosts."""
    which = [
        n
        for n, on in (
            ("failed", failed),
            ("unreachable", unreachable),
            ("interrupted", interrupted),
        )
        if on
    ]
    if not which:
        raise click.UsageError("say which hosts: --failed, --unreachable and/or --interrupted")
    view = _view(kw, show_output=False)
    with handle_errors():

        async def work(engine: Engine) -> int:
            return await follow(engine, lambda: engine.retry(run_id, which=which), view)

        code = asyncio.run(with_engine(cli.settings, work))
    sys.exit(code)


@runs_group.command("resume", epilog=EXIT_CODES_HELP)
@click.argument("run_id", type=int)
@click.option(
    "--rerun-interrupted",
    is_flag=True,
    help="Also run hosts the core died on (their command may have run already).",
)
@click.option("--jsonl", is_flag=True, help="Stream events as JSON lines.")
@click.option("-v", "--verbose", is_flag=True)
@json_option
@pass_cli
def runs_resume(cli: CliContext, run_id: int, rerun_interrupted: bool, **kw: Any) -> None:
    """Finish a run whose core process died: its queued hosts run; interrupted ones do not."""
    view = _view(kw, show_output=False)
    with handle_errors():

        async def work(engine: Engine) -> int:
            return await follow(
                engine, lambda: engine.resume(run_id, rerun_interrupted=rerun_interrupted), view
            )

        code = asyncio.run(with_engine(cli.settings, work))
    sys.exit(code)


@runs_group.command("cancel")
@click.argument("run_id", type=int)
@json_option
@pass_cli
def runs_cancel(cli: CliContext, run_id: int, as_json: bool) -> None:
    """Cancel a run: its owner stops it gracefully; a run nobody owns is cancelled at once."""
    from mssp.engine import load_summary

    async def work(engine: Engine) -> RunSummary:
        await engine.start()
        await engine.cancel(run_id)
        await engine.writer.flush()
        return await load_summary(run_id, with_hosts=False)

    with handle_errors():
        summary = asyncio.run(with_engine(cli.settings, work, needs_vault=False))
    if as_json:
        emit_json({"run_id": run_id, "state": summary.state})
    elif summary.state == "cancelling":
        click.echo(f"run {run_id}: cancel requested; its process is winding it down")
    else:
        click.echo(f"run {run_id}: {summary.state}")


def register(group: click.Group) -> None:
    group.add_command(exec_cmd)
    group.add_command(run_cmd)
    group.add_command(runs_group)
