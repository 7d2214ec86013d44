"""PowerShell for the WinRM connector: encoded command lines, transfer scripts, CLIXML stderr.

The transfer scripts take their parameters (paths, offsets, base64 data) through stdin as JSON or
base64 lines, never spliced into the script text: nothing from inventory or a task can become
PowerShell code, and the script text stays constant (the lab's WS-Management endpoint recognises
these exact scripts: its recordings point at the .ps1 files in winrm_ps/).
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from pathlib import Path

POWERSHELL = "powershell.exe"
POWERSHELL_ARGS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")

_SCRIPTS_DIR = Path(__file__).with_name("winrm_ps")


def _script(name: str) -> str:
    # one copy of each script: the lab's simulated host recognises these very files
    return (_SCRIPTS_DIR / f"{name}.ps1").read_text(encoding="utf-8")


# put_file: stdin line 1 = {"path": "..."}, then base64 lines; stdout {"sha256": "...", "size": n}.
# file_info: stdin {"path": "..."}; stdout {"sha256": "...", "size": n}.
# read_chunk: stdin {"path": "...", "offset": n, "length": n}; stdout base64 of the bytes read.
TRANSFER_SCRIPTS = {name: _script(name) for name in ("put_file", "file_info", "read_chunk")}
PUT_FILE_SCRIPT = TRANSFER_SCRIPTS["put_file"]
FILE_INFO_SCRIPT = TRANSFER_SCRIPTS["file_info"]
READ_CHUNK_SCRIPT = TRANSFER_SCRIPTS["read_chunk"]


def encode_powershell(script: str) -> tuple[str, list[str]]:
    """The command and arguments that run `script` as PowerShell via -EncodedCommand (UTF-16LE)."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return POWERSHELL, [*POWERSHELL_ARGS, "-EncodedCommand", encoded]


_CLIXML_HEADER = "#< CLIXML"
_PS_NS = "{http://schemas.microsoft.com/powershell/2004/04}"
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def decode_clixml(stderr: str) -> str:
    """Plain text of PowerShell's CLIXML stderr: error/warning strings kept, progress dropped.

    powershell.exe writes its error stream as CLIXML when stderr is not a console (always so under
    WinRM), often with only a "Preparing modules for first use." progress record on success.
    Text that is not CLIXML, or that was cut by the output cap, is returned unchanged.
    """
    stripped = stderr.lstrip()
    if not stripped.startswith(_CLIXML_HEADER):
        return stderr
    body = stripped[len(_CLIXML_HEADER) :].strip()
    if not body.endswith("</Objs>"):
        return stderr
    parts: list[str] = []
    try:
        # One <Objs> document per PowerShell write; they may be concatenated.
        for chunk in re.findall(r"<Objs\b.*?</Objs>", body, flags=re.DOTALL):
            # host output, bounded by the output cap; expat 2.4+ refuses entity-expansion bombs
            root = ET.fromstring(chunk)  # noqa: S314
            for node in root.iter(f"{_PS_NS}S"):
                if node.get("S") in {"Error", "Warning", "Verbose", "Debug", "Information"}:
                    parts.append(_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), node.text or ""))
    except ET.ParseError:
        return stderr
    return "".join(parts).replace("\r\n", "\n")


def encode_clixml_errors(text: str) -> str:
    """The CLIXML powershell.exe writes for `text` on its error stream (for the lab endpoint)."""
    lines = text.replace("\r\n", "\n").split("\n") if text else []
    progress = (
        '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject'
        '</T><T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing '
        "modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1"
        "</SR><SD> </SD></PR></MS></Obj>"
    )
    errors = "".join(
        f'<S S="Error">{_xml_escape(line)}_x000D__x000A_</S>'
        for line in (lines[:-1] if lines and lines[-1] == "" else lines)
    )
    return (
        f'{_CLIXML_HEADER}\r\n<Objs Version="1.1.0.1" '
        f'xmlns="http://schemas.microsoft.com/powershell/2004/04">{progress}{errors}</Objs>'
    )


def _xml_escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"_(x[0-9A-Fa-f]{4})_", r"_x005F_\1_", text)
