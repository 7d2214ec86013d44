"""PowerShell for the WinRM connector: encoded command lines, transfer scripts, CLIXML stderr.

The transfer scripts take their parameters (paths, offsets, base64 data) through stdin as JSON or
base64 lines, never spliced into the script text: nothing from inventory or a task can become
PowerShell code, and the script text stays constant (the lab's WS-Management endpoint recognises
these exact scripts; its recordings hold copies and a test keeps them equal).
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

POWERSHELL = "powershell.exe"
POWERSHELL_ARGS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")

# stdin: line 1 = {"path": "..."}; then base64 lines. stdout: {"sha256": "...", "size": n}.
PUT_FILE_SCRIPT = """\
$ErrorActionPreference = 'Stop'
$reader = [Console]::In
$path = ($reader.ReadLine() | ConvertFrom-Json).path
$stream = [System.IO.File]::Create($path)
try {
    while ($null -ne ($line = $reader.ReadLine())) {
        if ($line.Length -eq 0) { continue }
        $bytes = [Convert]::FromBase64String($line)
        $stream.Write($bytes, 0, $bytes.Length)
    }
} finally {
    $stream.Dispose()
}
$hash = Get-FileHash -LiteralPath $path -Algorithm SHA256
$size = (Get-Item -LiteralPath $path).Length
[Console]::Out.Write((@{ sha256 = $hash.Hash.ToLower(); size = $size } | ConvertTo-Json -Compress))
"""

# stdin: {"path": "..."}. stdout: {"sha256": "...", "size": n}.
FILE_INFO_SCRIPT = """\
$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$size = (Get-Item -LiteralPath $request.path).Length
$hash = Get-FileHash -LiteralPath $request.path -Algorithm SHA256
[Console]::Out.Write((@{ sha256 = $hash.Hash.ToLower(); size = $size } | ConvertTo-Json -Compress))
"""

# stdin: {"path": "...", "offset": n, "length": n}. stdout: base64 of the bytes read.
READ_CHUNK_SCRIPT = """\
$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$stream = [System.IO.File]::OpenRead($request.path)
try {
    $null = $stream.Seek([long]$request.offset, [System.IO.SeekOrigin]::Begin)
    $buffer = New-Object byte[] ([int]$request.length)
    $count = $stream.Read($buffer, 0, $buffer.Length)
    [Console]::Out.Write([Convert]::ToBase64String($buffer, 0, $count))
} finally {
    $stream.Dispose()
}
"""

TRANSFER_SCRIPTS = {
    "put_file": PUT_FILE_SCRIPT,
    "file_info": FILE_INFO_SCRIPT,
    "read_chunk": READ_CHUNK_SCRIPT,
}


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
