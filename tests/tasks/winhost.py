"""A stateful simulated Windows host for the Windows task tests (NOT Windows).

``StatefulWindowsHost`` is the lab's WS-Management endpoint (recorded replies) with a small model
of the state the tasks change: local users and groups, pending updates and installed hot-fixes, a
pending reboot, services, and a boot time. The tasks' PowerShell scripts (recognised by their exact
text, like every recording) are answered from that model with replies shaped like the captured
ones in tests/tasks/fixtures/windows/. A reboot really drops the WinRM listener for
``reboot_downtime`` seconds and brings it back on the same port with a new boot time, so the client
sees connection errors and a stale shell, as with a real Windows reboot.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mssp.connectors.base import ConnectOptions
from mssp.lab.winrm_endpoint import WinRMEndpoint
from mssp.lab.winrm_replies import FsError, normalise_script, resolve_command
from mssp.tasks.windows import SCRIPTS
from tests.connectors.winrm_fixtures import PASSWORD, USER, EndpointThread

FIXTURES = Path(__file__).with_name("fixtures") / "windows"


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class StatefulWindowsHost(WinRMEndpoint):
    """The simulated endpoint plus a state model behind the tasks' scripts."""

    def __init__(self, *args: Any, reboot_downtime: float = 1.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reboot_downtime = reboot_downtime
        self.accounts: dict[str, dict[str, Any]] = {
            "Administrator": {"enabled": True, "groups": {"Administrators"}, "password": "x"},
            "Guest": {"enabled": False, "groups": {"Guests"}, "password": None},
        }
        self.pending = list(_fixture("wu_search_ws2022.json")["updates"])
        self.hotfixes = {h["id"]: h["installed_on"] or "" for h in _fixture("hotfixes_ws2022.json")}
        self.reboot_pending = False
        self.boot_time = "2026-11-20T03:12:44.5000000Z"
        self.reboots = 0
        self.services = {"Spooler": "Running"}
        self.passwords_seen: list[str] = []
        self.script_runs: list[str] = []
        self.command_lines: list[str] = []
        """Every command line received, with -EncodedCommand scripts decoded."""
        self._by_text = {normalise_script(text): name for name, text in SCRIPTS.items()}
        self._reboot_task: asyncio.Task[None] | None = None

    async def _execute(self, shell: Any, command: Any, command_line: str) -> None:
        resolved = resolve_command(command_line, self.recordings)
        self.command_lines.append(f"{command_line}\n{resolved.script or ''}")
        name = self._by_text.get(normalise_script(resolved.script or ""))
        handler: Callable[[dict[str, Any]], tuple[Any, int]] | None = getattr(
            self, f"_do_{name}", None
        )
        if handler is None:
            await super()._execute(shell, command, command_line)
            return
        if "[Console]::In" in (resolved.script or ""):  # as on Windows: only readers wait
            await command.stdin_closed.wait()
        request = json.loads(bytes(command.stdin).decode() or "{}")
        self.script_runs.append(name or "")
        reply, code = handler(request)
        command.out += (reply if isinstance(reply, str) else json.dumps(reply)).encode()
        command.exit_code = code
        command.changed.set()

    # -- scripts ------------------------------------------------------------------------------
    def _do_facts(self, _: dict[str, Any]) -> tuple[Any, int]:
        facts = copy.deepcopy(_fixture("ws2022_facts.json"))
        facts["last_boot"] = self.boot_time
        facts["reboot_required"] = self.reboot_pending
        facts["users"] = [
            {"name": n, "enabled": u["enabled"], "sid": f"S-1-5-21-1-2-3-{i}", "last_logon": None}
            for i, (n, u) in enumerate(self.accounts.items(), 1000)
        ]
        facts["administrators"] = [
            f"WIN-LAB01\\{n}" for n, u in self.accounts.items() if "Administrators" in u["groups"]
        ]
        return facts, 0

    def _do_wu_search(self, request: dict[str, Any]) -> tuple[Any, int]:
        updates = [
            u
            for u in self.pending
            if not request.get("security_only") or "Security Updates" in u["categories"]
        ]
        return {"reboot_required": self.reboot_pending, "updates": updates}, 0

    def _do_wu_install(self, request: dict[str, Any]) -> tuple[Any, int]:
        wanted = set(request.get("update_ids") or [])
        results = []
        for update in [u for u in self.pending if u["id"] in wanted]:
            self.pending.remove(update)
            for kb in update["kb"]:
                self.hotfixes[f"KB{kb}"] = "2026-11-26"
            needs = update["reboot_behavior"] == 1
            self.reboot_pending = self.reboot_pending or needs
            results.append(
                {"id": update["id"], "title": update["title"], "kb": update["kb"],
                 "result_code": 2, "hresult": 0, "reboot_required": needs}
            )  # fmt: skip
        code = 2 if results else 0
        return {"result_code": code, "reboot_required": self.reboot_pending, "updates": results}, 0

    def _do_hotfixes(self, _: dict[str, Any]) -> tuple[Any, int]:
        fixes = [{"id": k, "description": "Update", "installed_on": v or None}
                 for k, v in self.hotfixes.items()]  # fmt: skip
        return fixes, 0

    def _do_boot_id(self, _: dict[str, Any]) -> tuple[Any, int]:
        return self.boot_time, 0

    def _do_reboot_pending(self, _: dict[str, Any]) -> tuple[Any, int]:
        return {"reboot_required": self.reboot_pending}, 0

    def _do_reboot(self, request: dict[str, Any]) -> tuple[Any, int]:
        # shutdown.exe /r /t N returns at once; the machine goes down a little later.
        delay = min(float(request.get("delay", 2)), 0.5)
        self._reboot_task = asyncio.get_running_loop().create_task(self._reboot(delay))
        return "", 0

    async def _reboot(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.stop()  # connections drop, shells vanish (WinRM goes down with the OS)
        self.reboots += 1
        self.reboot_pending = False
        boot = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=self.reboots)
        self.boot_time = boot.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        await asyncio.sleep(self.reboot_downtime)
        await self.start()

    def _do_user_state(self, request: dict[str, Any]) -> tuple[Any, int]:
        user = self._user(request["user"])
        if user is None:
            return {"exists": False, "administrators_group": "Administrators"}, 0
        name, data = user
        return {
            "exists": True, "name": name, "enabled": data["enabled"], "sid": "S-1-5-21-1-2-3-9",
            "full_name": data.get("full_name", ""), "password_set": data["password"] is not None,
            "groups": sorted(data["groups"]), "administrators_group": "Administrators",
        }, 0  # fmt: skip

    def _do_user_apply(self, request: dict[str, Any]) -> tuple[Any, int]:
        done = []
        for action in request["actions"]:
            op = action["op"]
            found = self._user(request["user"])
            if op == "create":
                self.accounts[request["user"]] = {
                    "enabled": True, "groups": {"Users"}, "password": action["password"],
                    "full_name": action.get("full_name", ""),
                }  # fmt: skip
                self.passwords_seen.append(action["password"])
            elif found is None:
                return "", 1
            elif op == "set_password":
                found[1]["password"] = action["password"]
                self.passwords_seen.append(action["password"])
            elif op in ("enable", "disable"):
                found[1]["enabled"] = op == "enable"
            elif op == "remove":
                del self.accounts[found[0]]
            elif op == "add_group":
                found[1]["groups"].add(_canonical_group(action["group"]))
            elif op == "remove_group":
                found[1]["groups"].discard(_canonical_group(action["group"]))
            done.append(op)
        return {"done": done}, 0

    def _do_service_status(self, request: dict[str, Any]) -> tuple[Any, int]:
        status = self.services.get(request["name"])
        if status is None:
            return {"exists": False, "name": request["name"]}, 0
        return {"exists": True, "name": request["name"], "display_name": "Print Spooler",
                "status": status, "start_type": "Automatic"}, 0  # fmt: skip

    def _do_service_restart(self, request: dict[str, Any]) -> tuple[Any, int]:
        self.services[request["name"]] = "Running"
        return self._do_service_status(request)

    def _do_run_script(self, request: dict[str, Any]) -> tuple[Any, int]:
        """Not PowerShell: report what would run (the uploaded bytes and the splatted arguments)
        and delete the upload, as run_script.ps1 does in its finally block."""
        try:
            data = self.fs.read(request["path"])
        except FsError as exc:
            return str(exc), 1
        del self.fs.files[self.fs.key(request["path"])]
        return {"script": data.decode(), "args": list(request.get("args") or [])}, 0

    def _user(self, name: str) -> tuple[str, dict[str, Any]] | None:
        for key, value in self.accounts.items():
            if key.lower() == name.lower():  # SAM names are case-insensitive
                return key, value
        return None


def _canonical_group(name: str) -> str:
    return {"administrators": "Administrators", "users": "Users"}.get(name.lower(), name)


@contextmanager
def stateful_windows_host(**options: Any) -> Iterator[tuple[EndpointThread, StatefulWindowsHost]]:
    runner = EndpointThread()

    async def make() -> StatefulWindowsHost:
        options.setdefault("users", {USER: PASSWORD})
        options.setdefault("allow_unencrypted", False)
        host = StatefulWindowsHost(**options)
        await host.start()
        return host

    host = runner.call(make())
    try:
        yield runner, host
    finally:
        runner.call(host.stop())
        runner.stop()


def windows_options(host: WinRMEndpoint) -> ConnectOptions:
    """NTLM over HTTP with message encryption (what the connector uses by default on http)."""
    return ConnectOptions(
        host="acme-dental/hq/win01",
        address="127.0.0.1",
        port=host.port,
        username=USER,
        password=PASSWORD,
        connect_timeout=3.0,
        extra={"scheme": "http", "operation_timeout": "5", "read_timeout": "8"},
    )
