"""The client side of run hand-off (mssp/handoff.py): send a run to the daemon, show it as if it
ran here. Imports stay light: this path must not load the ORM, asyncssh or the vault."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import click

from mssp import handoff
from mssp.cli._runview import CancelOnSignals, Progress, View, show_summary
from mssp.config import Settings
from mssp.errors import RunError
from mssp.events import from_json as event_from_json

log = logging.getLogger(__name__)


def request(
    settings: Settings, task: str, target: str, params: dict[str, Any], options: Any, view: View
) -> dict[str, Any]:
    return {
        "v": handoff.VERSION,
        "op": "run",
        "task": task,
        "target": target,
        "params": params,
        "options": options.to_json(),
        "jsonl": view.jsonl,
        "db": handoff.database_fingerprint(settings),
    }


async def hand_off(settings: Settings, message: dict[str, Any], view: View) -> int | None:
    """Run through the daemon; its exit code, or None when no daemon takes the run (then nothing
    was started and the caller runs it itself)."""
    path = handoff.socket_path(settings)
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=handoff.MAX_MESSAGE)
    except OSError:
        return None  # no daemon (or a stale socket of one that died)
    try:
        writer.write(handoff.encode(message))
        with contextlib.suppress(ConnectionError):  # the answer may still be there to read
            await writer.drain()
        first = await _read(reader)
        if first is None or first.get("type") == "declined":
            reason = first.get("reason") if first else "it closed the connection"
            log.info("the daemon did not take the run (%s): running it here", reason)
            return None
        if first.get("type") == "error":
            raise handoff.error_from(first)
        return await _follow(int(first["run_id"]), reader, writer, view)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _read(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        line = await reader.readline()
    except (ConnectionError, ValueError):
        return None
    if not line:
        return None
    try:
        return handoff.decode(line)
    except ValueError:
        raise RunError("the daemon sent something that is not a message") from None


async def _follow(
    run_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, view: View
) -> int:
    from mssp.engine.options import RunSummary

    progress = Progress(view)
    progress.run_id = run_id
    if view.live:
        click.echo(
            f"run {run_id} started by the daemon; Ctrl-C cancels (twice: stop at once)", err=True
        )

    def cancel(immediate: bool) -> None:
        writer.write(handoff.encode({"op": "cancel", "immediate": immediate}))

    signals = CancelOnSignals(view, cancel, "a grace period")
    hosts: list[Any] = []
    ticker = asyncio.create_task(progress.tick())
    try:
        while True:
            message = await _read(reader)
            if message is None:
                raise RunError(
                    f"the daemon stopped answering during run {run_id}; "
                    f"`mssp runs show {run_id}` has its recorded state"
                )
            kind = message.get("type")
            if kind == "event":
                try:
                    event = event_from_json(message.get("event") or {})
                except ValueError as exc:
                    log.warning("ignored an event of the daemon: %s", exc)
                    continue
                if event is not None:
                    progress.handle(event)
            elif kind == "host":
                hosts.append(message.get("host"))
            elif kind == "summary":
                try:
                    document = {**(message.get("summary") or {}), "hosts": hosts}
                    summary = RunSummary.from_json(document)
                except ValueError as exc:
                    raise RunError(f"run {run_id}: the daemon's summary is unreadable") from exc
                break
            elif kind == "error":
                raise handoff.error_from(message)
    finally:
        ticker.cancel()
        signals.remove()
    progress.clear()
    show_summary(summary, view)
    if view.interrupts > 1:
        return 130
    return summary.exit_code
