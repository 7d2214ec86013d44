"""What the simulated Windows host answers (NOT WINDOWS: see mssp/lab/winrm_endpoint.py): the
recorded PowerShell replies (``winrm_recordings/*.json``) keyed by the decoded script or cmd.exe
line, PowerShell's "not recognized" error for anything else, and the connector's file-transfer
scripts simulated against a small in-memory filesystem."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

RECORDINGS_DIR = Path(__file__).with_name("winrm_recordings")


# ---------------------------------------------------------------- recordings and simulation ----


@dataclass(frozen=True)
class Reply:
    """One recorded reply (or a simulation) for a script or command line."""

    stdout: str = ""
    stderr: str = ""
    """Plain error text; PowerShell replies are served as CLIXML, as powershell.exe writes them."""
    exit_code: int = 0
    duration: float = 0.0
    """Seconds the command runs before it exits (recorded sleeps)."""
    repeat: int = 1
    """stdout is served this many times (large-output recordings)."""
    simulate: str = ""
    """Name of a simulation run instead of a static reply (file transfer, stdin, env)."""
    variable: str = ""
    """For the env simulation: the variable to print."""


@dataclass
class Recordings:
    """Recorded replies keyed by normalised PowerShell script text or cmd.exe command line."""

    scripts: dict[str, Reply] = field(default_factory=dict)
    cmdlines: dict[str, Reply] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path = RECORDINGS_DIR) -> Recordings:
        rec = cls()
        for path in sorted(directory.glob("*.json")):
            for entry in json.loads(path.read_text(encoding="utf-8")):
                if "script_file" in entry:
                    entry["script"] = (directory / entry.pop("script_file")).read_text("utf-8")
                script, cmdline = entry.pop("script", None), entry.pop("cmdline", None)
                entry.pop("note", None)
                reply = Reply(**entry)
                if script is not None:
                    rec.scripts[normalise_script(script)] = reply
                elif cmdline is not None:
                    rec.cmdlines[normalise_cmdline(cmdline)] = reply
        return rec


def normalise_script(script: str) -> str:
    return script.replace("\r\n", "\n").strip()


def normalise_cmdline(cmdline: str) -> str:
    return " ".join(cmdline.split())


class FsError(Exception):
    """A simulated .NET/PowerShell file error (message as Windows words it)."""


class SimulatedFilesystem:
    """An in-memory, case-insensitive Windows filesystem behind the simulated transfer cmdlets."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, bytes]] = {}
        self.dirs = {
            self.key(d)
            for d in (
                "C:\\",
                "C:\\Windows",
                "C:\\Windows\\Temp",
                "C:\\Users",
                "C:\\Users\\Administrator",
                "C:\\ProgramData",
            )
        }

    @staticmethod
    def key(path: str) -> str:
        path = path.replace("/", "\\")
        if not re.fullmatch(r"[A-Za-z]:\\.*", path) or "\\..\\" in path + "\\":
            raise FsError(f"The given path's format is not supported: '{path}'")
        return path.rstrip("\\").lower() or path.lower()

    def write(self, path: str, data: bytes) -> None:
        key = self.key(path)
        parent = key.rsplit("\\", 1)[0] if key.count("\\") > 1 else key[:2]
        if parent not in self.dirs and parent + "\\" not in self.dirs:
            raise FsError(f"Could not find a part of the path '{path}'.")
        if key in self.dirs:
            raise FsError(f"Access to the path '{path}' is denied.")
        self.files[key] = (path, data)

    def read(self, path: str) -> bytes:
        entry = self.files.get(self.key(path))
        if entry is None:
            raise FsError(f"Cannot find path '{path}' because it does not exist.")
        return entry[1]


def ps_error(message: str, line: int, text: str, category: str, error_id: str) -> str:
    """PowerShell's error-record rendering, as powershell.exe writes it to its error stream."""
    return (
        f"{message}\nAt line:{line} char:1\n+ {text}\n+ {'~' * len(text)}\n"
        f"    + CategoryInfo          : {category}\n"
        f"    + FullyQualifiedErrorId : {error_id}\n \n"
    )


def not_recognized(script: str) -> Reply:
    first_line = normalise_script(script).split("\n", 1)[0]
    token = first_line.split()[0] if first_line.split() else first_line
    message = (
        f"{token} : The term '{token}' is not recognized as the name of a cmdlet, function, script "
        "file, or operable program. Check the spelling of the name, or if a path was included, "
        "verify that the path is correct and try again."
    )
    return Reply(
        stderr=ps_error(
            message,
            1,
            first_line,
            f"ObjectNotFound: ({token}:String) [], CommandNotFoundException",
            "CommandNotFoundException",
        ),
        exit_code=1,
    )


def _script_line(script: str, needle: str) -> tuple[int, str]:
    for number, text in enumerate(script.splitlines(), 1):
        if needle in text:
            return number, text.strip()
    return 1, script.splitlines()[0] if script else ""


def simulate(
    reply: Reply,
    script: str,
    stdin: bytes,
    env: Mapping[str, str],
    fs: SimulatedFilesystem,
    *,
    corrupt: bool = False,
) -> tuple[bytes, str, int]:
    """Run a simulation: (stdout bytes, plain stderr text, exit code).

    `corrupt` flips the first byte of a written file, as a broken disk or transfer would.
    """
    try:
        if reply.simulate == "echo_stdin":
            return stdin, "", 0
        if reply.simulate == "echo_env":
            return env.get(reply.variable, "").encode(), "", 0
        text = stdin.decode("utf-8", "replace")
        if reply.simulate == "put_file":
            header, _, rest = text.partition("\n")
            path = json.loads(header)["path"]
            data = b"".join(base64.b64decode(line) for line in rest.split() if line)
            if corrupt and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            fs.write(path, data)
            return _file_info(fs, path), "", 0
        request = json.loads(text)
        if reply.simulate == "file_info":
            return _file_info(fs, request["path"]), "", 0
        if reply.simulate == "read_chunk":
            data = fs.read(request["path"])
            offset, length = int(request["offset"]), int(request["length"])
            return base64.b64encode(data[offset : offset + length]), "", 0
    except FsError as exc:
        number, line = _script_line(script, "Create(" if "Create(" in script else "$request.path")
        message = str(exc)
        if "Create(" in line or "OpenRead(" in line:
            method = "Create" if "Create(" in line else "OpenRead"
            message = f'Exception calling "{method}" with "1" argument(s): "{message}"'
            category, error_id = "NotSpecified: (:) [], MethodInvocationException", "IOException"
        else:
            category = "ObjectNotFound: (:String) [Get-Item], ItemNotFoundException"
            error_id = "PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand"
            message = f"Get-Item : {message}"
        return b"", ps_error(message, number, line, category, error_id), 1
    except (ValueError, KeyError, TypeError) as exc:
        message = f"ConvertFrom-Json : Invalid JSON primitive: {type(exc).__name__}."
        return b"", ps_error(message, 3, "ConvertFrom-Json", "NotSpecified", "JsonError"), 1
    raise ValueError(f"unknown simulation {reply.simulate!r} in the recordings")


def _file_info(fs: SimulatedFilesystem, path: str) -> bytes:
    data = fs.read(path)
    return json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}).encode()


@dataclass(frozen=True)
class ResolvedCommand:
    """What a command line means to the simulated host."""

    reply: Reply
    script: str | None
    """The decoded PowerShell script, or None for a cmd.exe command line."""


def resolve_command(command_line: str, recordings: Recordings) -> ResolvedCommand:
    """Find the recorded reply for a command line (decoding -EncodedCommand scripts)."""
    tokens = command_line.split()
    exe = tokens[0].lower().rsplit("\\", 1)[-1] if tokens else ""
    if exe in {"powershell", "powershell.exe", "pwsh", "pwsh.exe"}:
        for i, token in enumerate(tokens[:-1]):
            if token.lower() in {"-encodedcommand", "-enc", "-e", "-ec"}:
                script = base64.b64decode(tokens[i + 1]).decode("utf-16-le")
                reply = recordings.scripts.get(normalise_script(script)) or not_recognized(script)
                return ResolvedCommand(reply, script)
    reply = recordings.cmdlines.get(normalise_cmdline(command_line))
    if reply is None:
        token = tokens[0] if tokens else ""
        reply = Reply(
            stderr=f"'{token}' is not recognized as an internal or external command,\r\n"
            "operable program or batch file.\r\n",
            exit_code=1,
        )
    return ResolvedCommand(reply, None)
