"""A simulated Windows host: a WS-Management endpoint that answers from recorded PowerShell replies.

THIS IS NOT WINDOWS. Windows cannot run here, so tests and the lab serve this endpoint instead: it
speaks the WinRS shell protocol pywinrm uses (Create, Command, Send, Receive, Signal, Delete) at
``/wsman``, with Basic over HTTPS, NTLM over HTTPS (channel binding) and NTLM with message
encryption over HTTP (pyspnego is the NTLM acceptor). What a "command" prints comes from a table
of replies recorded from PowerShell (``winrm_recordings/*.json``), keyed by the decoded
``-EncodedCommand`` script or by the cmd.exe command line; anything else gets PowerShell's (or
cmd.exe's) "not recognized" error and exit code 1. The file-transfer scripts of the WinRM connector
are simulated against a small in-memory filesystem: a simulation of ``[System.IO.File]``,
``Get-Item`` and ``Get-FileHash``, not a disk. The replies and that simulation live in
winrm_replies.py, the test PKI in winrm_pki.py.

NTLM acceptance reads credentials from the file named by the ``NTLM_USER_FILE`` environment
variable (pyspnego's only acceptor store), so starting an NTLM endpoint sets that variable for
the process to a private 0600 file holding the users of every running endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import re
import signal
import ssl
import struct
import tempfile
import threading
import uuid
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import spnego
import spnego.channel_bindings
from aiohttp import web

from mssp.connectors.winrm_scripts import encode_clixml_errors
from mssp.lab.winrm_pki import TLSFiles
from mssp.lab.winrm_replies import (
    Recordings,
    SimulatedFilesystem,
    resolve_command,
    simulate,
)

LABEL = "simulated Windows host (WS-Management endpoint with recorded PowerShell replies)"
RECEIVE_CHUNK = 64 * 1024  # output bytes per Receive reply, like WinRM's envelope-size limit

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
DONE = f"{SHELL_URI}/CommandState/Done"
RUNNING = f"{SHELL_URI}/CommandState/Running"
FAULT_TIMEOUT = 2150858793
FAULT_NO_SHELL = 2150858843
ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"


# ----------------------------------------------------------------- NTLM credential store ----

_ntlm_lock = threading.Lock()
_ntlm_users: dict[int, list[str]] = {}
_ntlm_file: Path | None = None


def _publish_ntlm_users(owner: int, users: Mapping[str, str] | None) -> None:
    """Rewrite the process-wide NTLM_USER_FILE with the users of every running endpoint."""
    global _ntlm_file
    with _ntlm_lock:
        if users is None:
            _ntlm_users.pop(owner, None)
        else:
            _ntlm_users[owner] = [
                f"{name.rpartition(chr(92))[0]}:{name.rpartition(chr(92))[2]}:{password}"
                for name, password in users.items()
            ]
        if not _ntlm_users:  # the last NTLM endpoint stopped: leave nothing behind
            if _ntlm_file is not None:
                _ntlm_file.unlink(missing_ok=True)
                if os.environ.get("NTLM_USER_FILE") == str(_ntlm_file):
                    del os.environ["NTLM_USER_FILE"]
                _ntlm_file = None
            return
        if _ntlm_file is None:
            fd, name = tempfile.mkstemp(prefix="mssp-winrm-ntlm-", suffix=".txt")  # 0600
            os.close(fd)
            _ntlm_file = Path(name)
        lines = [line for owned in _ntlm_users.values() for line in owned]
        _ntlm_file.write_text("\n".join(lines) + "\n")
        os.environ["NTLM_USER_FILE"] = str(_ntlm_file)


# -------------------------------------------------------------------- shells and commands ----


@dataclass(eq=False)
class _Command:
    id: str
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    stdin: bytearray = field(default_factory=bytearray)
    stdin_closed: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int | None = None
    task: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _Shell:
    id: str
    env: dict[str, str]
    commands: dict[str, _Command] = field(default_factory=dict)


@dataclass(eq=False)
class _Conn:
    pending: object | None = None  # NTLM context between challenge and authenticate
    ntlm: object | None = None  # the authenticated NTLM context of this TCP connection


class _Fault(Exception):
    def __init__(self, code: int, subcode: str, reason: str, status: int = 500) -> None:
        super().__init__(reason)
        self.code, self.subcode, self.reason, self.status = code, subcode, reason, status


class WinRMEndpoint:
    """One listener (HTTP or HTTPS) of a simulated Windows host. Not Windows: see the module doc."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: Mapping[str, str],
        tls: TLSFiles | None = None,
        auth: tuple[str, ...] = ("ntlm", "basic"),
        allow_unencrypted: bool = False,
        recordings: Recordings | None = None,
        computer_name: str = "WIN-LAB01",
        capture: bool = False,
    ) -> None:
        self.host, self.port, self.tls, self.auth = host, port, tls, auth
        self.users = dict(users)
        self.allow_unencrypted = allow_unencrypted
        self.recordings = recordings or Recordings.load()
        self.computer_name = computer_name
        self.fs = SimulatedFilesystem()
        self.capture = capture
        self.wire: list[bytes] = []
        """Raw HTTP bodies as they crossed the socket (requests and replies), when capturing."""
        self.plaintext: list[bytes] = []
        """The same SOAP messages (requests and replies) in the clear, when capturing."""
        self.requests_seen = 0
        self.shells_created = 0
        self.corrupt_writes = False
        """Fault injection: flip a byte of every file written (tests the hash verification)."""
        self._shells: dict[str, _Shell] = {}
        self._conns: weakref.WeakKeyDictionary[object, _Conn] = weakref.WeakKeyDictionary()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/wsman"

    async def start(self) -> None:
        if "ntlm" in self.auth:
            _publish_ntlm_users(id(self), self.users)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/wsman", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls.cert, self.tls.key)
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=context)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening, drop every connection and end every running command."""
        self.reboot()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if "ntlm" in self.auth:
            _publish_ntlm_users(id(self), None)

    def reboot(self) -> None:
        """Forget every shell, as a Windows reboot does (clients then get fault 2150858843)."""
        for shell in self._shells.values():
            for command in shell.commands.values():
                if command.task is not None:
                    command.task.cancel()
        self._shells.clear()

    # -- HTTP, authentication, message encryption -----------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests_seen += 1
        if self.capture:
            self.wire.append(body)
        conn = self._conns.setdefault(request.transport, _Conn())
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            raw_token = base64.b64decode(token, validate=True)
        except ValueError:
            return self._challenge()
        if scheme.lower() == "basic":
            if "basic" not in self.auth or not (self.tls or self.allow_unencrypted):
                return self._challenge()
            user, _, password = raw_token.decode("utf-8", "replace").partition(":")
            if self.users.get(user) != password:
                return self._challenge()
        elif scheme.lower() in {"negotiate", "ntlm"} and "ntlm" in self.auth:
            refused = self._ntlm_step(conn, scheme, raw_token)
            if refused is not None:
                return refused
        elif conn.ntlm is None:
            return self._challenge()
        if not body:
            return web.Response(status=200)
        encrypted = request.headers.get("Content-Type", "").startswith("multipart/encrypted")
        if encrypted:
            if conn.ntlm is None:
                return web.Response(status=400)
            try:
                message = _unwrap(conn.ntlm, body)
            except Exception:  # a wrong key or a tampered body: refuse, as Windows does
                return web.Response(status=400)
        elif not (self.tls or self.allow_unencrypted):
            return web.Response(status=400, text="unencrypted traffic is disabled")
        else:
            message = body
        if self.capture:
            self.plaintext.append(message)
        try:
            status, reply = await self._soap(message)
        except ET.ParseError:
            return web.Response(status=400, text="malformed SOAP envelope")
        out = reply.encode("utf-8")
        if self.capture:
            self.plaintext.append(out)
        headers = {"Content-Type": "application/soap+xml;charset=UTF-8"}
        if encrypted:
            out = _wrap(conn.ntlm, out)
            headers["Content-Type"] = (
                f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'
            )
        if self.capture:
            self.wire.append(out)
        return web.Response(status=status, body=out, headers=headers)

    def _challenge(self) -> web.Response:
        offers = []
        if "ntlm" in self.auth:
            offers.append("Negotiate")
        if "basic" in self.auth and (self.tls or self.allow_unencrypted):
            offers.append('Basic realm="WSMAN"')
        return web.Response(status=401, headers={"WWW-Authenticate": ", ".join(offers)})

    def _ntlm_step(self, conn: _Conn, scheme: str, token: bytes) -> web.Response | None:
        if token[8:12] == b"\x01\x00\x00\x00":  # NEGOTIATE_MESSAGE: start a new context
            bindings = None
            if self.tls is not None:  # RFC 5929 tls-server-end-point (our certs are SHA-256)
                digest = hashlib.sha256(_der(self.tls.cert)).digest()
                bindings = spnego.channel_bindings.GssChannelBindings(
                    application_data=b"tls-server-end-point:" + digest
                )
            context = spnego.server(protocol="ntlm", channel_bindings=bindings)
            challenge = context.step(token) or b""
            conn.pending, conn.ntlm = context, None
            value = f"{scheme} {base64.b64encode(challenge).decode()}"
            return web.Response(status=401, headers={"WWW-Authenticate": value})
        context, conn.pending = conn.pending, None
        try:
            if context is None:
                raise ValueError("AUTHENTICATE without a challenge")
            context.step(token)  # type: ignore[attr-defined]
        except Exception:  # wrong password, bad channel binding, garbage: all are a 401
            return self._challenge()
        conn.ntlm = context
        return None

    # -- SOAP --------------------------------------------------------------------------------

    async def _soap(self, message: bytes) -> tuple[int, str]:
        # bodies are capped by client_max_size; expat 2.4+ refuses entity-expansion bombs
        root = ET.fromstring(message)  # noqa: S314
        header = root.find("s:Header", NS)
        body = root.find("s:Body", NS)
        action = header.findtext("a:Action", "", NS) if header is not None else ""
        message_id = header.findtext("a:MessageID", "", NS) if header is not None else ""
        shell_id = ""
        if header is not None:
            for selector in header.iterfind("w:SelectorSet/w:Selector", NS):
                if selector.get("Name") == "ShellId":
                    shell_id = selector.text or ""
        timeout_text = header.findtext("w:OperationTimeout", "PT20S", NS) if header else "PT20S"
        timeout = float(re.sub(r"[^0-9.]", "", timeout_text) or 20)
        verb = action.rsplit("/", 1)[-1]
        try:
            if verb == "Create":
                content = self._create(body)
            elif verb in {"Command", "Send", "Receive", "Signal", "Delete"}:
                shell = self._shells.get(shell_id)
                if shell is None:
                    raise _Fault(
                        FAULT_NO_SHELL,
                        "w:InvalidSelectors",
                        f"The request for the Windows Remote Shell with ShellId {shell_id} failed "
                        "because the shell was not found on the server. Possible causes are: the "
                        "specified ShellId is incorrect or the shell no longer exists on the "
                        "server. Provide the correct ShellId or create a new shell and retry the "
                        "operation.",
                    )
                handler = getattr(self, f"_{verb.lower()}")
                content = await handler(shell, body, timeout)
            else:
                raise _Fault(0, "w:ActionNotSupported", f"The action {action} is not supported.")
        except _Fault as fault:
            return fault.status, self._envelope(
                f"{NS['a']}/fault", message_id, _fault_body(fault, self.computer_name)
            )
        return 200, self._envelope(action + "Response", message_id, content)

    def _envelope(self, action: str, relates_to: str, content: str) -> str:
        return (
            f'<s:Envelope xml:lang="en-US" xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" '
            f'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" xmlns:w="{NS["w"]}" '
            f'xmlns:rsp="{NS["rsp"]}"><s:Header><a:Action>{action}</a:Action>'
            f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
            "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
            f"<a:RelatesTo>{_esc(relates_to)}</a:RelatesTo></s:Header>"
            f"<s:Body>{content}</s:Body></s:Envelope>"
        )

    def _create(self, body: ET.Element | None) -> str:
        env: dict[str, str] = {}
        if body is not None:
            for var in body.iterfind("rsp:Shell/rsp:Environment/rsp:Variable", NS):
                env[var.get("Name", "")] = var.text or ""
        shell = _Shell(str(uuid.uuid4()).upper(), env)
        self._shells[shell.id] = shell
        self.shells_created += 1
        return (
            f"<x:ResourceCreated><a:Address>{_esc(self.url)}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{SHELL_URI}/cmd</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell.id}</w:Selector></w:SelectorSet>'
            f"</a:ReferenceParameters></x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell.id}"
            "</rsp:ShellId><rsp:ResourceUri>http://schemas.microsoft.com/wbem/wsman/1/windows/"
            "shell/cmd</rsp:ResourceUri><rsp:InputStreams>stdin</rsp:InputStreams>"
            "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
        )

    async def _command(self, shell: _Shell, body: ET.Element | None, _timeout: float) -> str:
        line = body.find("rsp:CommandLine", NS) if body is not None else None
        if line is None:
            raise _Fault(2150858778, "w:SchemaValidationError", "No CommandLine in the request.")
        command_line = " ".join(
            part
            for part in (
                line.findtext("rsp:Command", "", NS),
                line.findtext("rsp:Arguments", "", NS),
            )
            if part
        )
        command = _Command(str(uuid.uuid4()).upper())
        shell.commands[command.id] = command
        command.task = asyncio.get_running_loop().create_task(
            self._execute(shell, command, command_line)
        )
        return (
            f"<rsp:CommandResponse><rsp:CommandId>{command.id}</rsp:CommandId>"
            "</rsp:CommandResponse>"
        )

    async def _execute(self, shell: _Shell, command: _Command, command_line: str) -> None:
        resolved = resolve_command(command_line, self.recordings)
        reply = resolved.reply
        if reply.simulate:
            if reply.simulate != "echo_env":  # the others read stdin to its end first
                await command.stdin_closed.wait()
            stdout, stderr, code = simulate(
                reply,
                resolved.script or "",
                bytes(command.stdin),
                shell.env,
                self.fs,
                corrupt=self.corrupt_writes,
            )
        else:
            stdout, stderr, code = (
                reply.stdout.encode() * reply.repeat,
                reply.stderr,
                reply.exit_code,
            )
        if reply.duration:
            await asyncio.sleep(reply.duration)
        command.out += stdout
        if resolved.script is not None:  # powershell.exe writes its error stream as CLIXML
            command.err += encode_clixml_errors(stderr).encode()
        else:
            command.err += stderr.encode()
        command.exit_code = code
        command.changed.set()

    async def _send(self, shell: _Shell, body: ET.Element | None, _timeout: float) -> str:
        stream = body.find("rsp:Send/rsp:Stream", NS) if body is not None else None
        command = shell.commands.get(stream.get("CommandId", "")) if stream is not None else None
        if command is None or stream is None:
            raise _Fault(2150858843, "w:InvalidSelectors", "The command was not found.")
        command.stdin += base64.b64decode(stream.text or "")
        if stream.get("End", "false").lower() == "true":
            command.stdin_closed.set()
        return "<rsp:SendResponse/>"

    async def _receive(self, shell: _Shell, body: ET.Element | None, timeout: float) -> str:
        desired = body.find("rsp:Receive/rsp:DesiredStream", NS) if body is not None else None
        command = shell.commands.get(desired.get("CommandId", "")) if desired is not None else None
        if command is None:
            raise _Fault(2150858843, "w:InvalidSelectors", "The command was not found.")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (command.out or command.err or command.exit_code is not None):
            command.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(command.changed.wait(), max(0.0, deadline - loop.time()))
            if loop.time() >= deadline and not (command.out or command.err):
                if command.exit_code is None:
                    raise _Fault(
                        FAULT_TIMEOUT,
                        "w:TimedOut",
                        "The WS-Management service cannot complete the operation within the time "
                        "specified in OperationTimeout.",
                    )
        streams = []
        budget = RECEIVE_CHUNK
        for name, buffer in (("stdout", command.out), ("stderr", command.err)):
            piece = bytes(buffer[:budget])
            del buffer[: len(piece)]
            budget -= len(piece)
            if piece:
                streams.append(
                    f'<rsp:Stream Name="{name}" CommandId="{command.id}">'
                    f"{base64.b64encode(piece).decode()}</rsp:Stream>"
                )
        finished = command.exit_code is not None and not command.out and not command.err
        state = (
            f'<rsp:CommandState CommandId="{command.id}" State="{DONE}">'
            f"<rsp:ExitCode>{command.exit_code}</rsp:ExitCode></rsp:CommandState>"
            if finished
            else f'<rsp:CommandState CommandId="{command.id}" State="{RUNNING}"/>'
        )
        return f"<rsp:ReceiveResponse>{''.join(streams)}{state}</rsp:ReceiveResponse>"

    async def _signal(self, shell: _Shell, body: ET.Element | None, _timeout: float) -> str:
        signal = body.find("rsp:Signal", NS) if body is not None else None
        command = (
            shell.commands.pop(signal.get("CommandId", ""), None) if signal is not None else None
        )
        if command is not None and command.task is not None:
            command.task.cancel()
        return "<rsp:SignalResponse/>"

    async def _delete(self, shell: _Shell, _body: ET.Element | None, _timeout: float) -> str:
        for command in shell.commands.values():
            if command.task is not None:
                command.task.cancel()
        self._shells.pop(shell.id, None)
        return ""


def _fault_body(fault: _Fault, machine: str) -> str:
    return (
        f"<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{fault.subcode}"
        f'</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{_esc(fault.reason)}'
        '</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/'
        f'wsman/1/wsmanfault" Code="{fault.code}" Machine="{machine}"><f:Message>'
        f"{_esc(fault.reason)}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _der(cert_path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert_path.read_text())


def _unwrap(context: object, body: bytes) -> bytes:
    """Decrypt pywinrm's multipart/encrypted body ([MS-WSMV] 2.2.9.1.1) and check its length."""
    parts = [p for p in body.split(BOUNDARY + b"\r\n") if p]
    header, payload = parts[0], parts[1]
    expected = int(header.split(b"Length=")[1].strip())
    if payload.endswith(BOUNDARY + b"--\r\n"):
        payload = payload[: -len(BOUNDARY + b"--\r\n")]
    data = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
    sig_len = struct.unpack("<i", data[:4])[0]
    message = context.unwrap(data[4 : 4 + sig_len] + data[4 + sig_len :]).data  # type: ignore[attr-defined]
    if len(message) != expected:
        raise ValueError("length mismatch")
    return message


def _wrap(context: object, message: bytes) -> bytes:
    sealed = context.wrap(message, encrypt=True).data  # type: ignore[attr-defined]
    return (
        BOUNDARY + b"\r\n\tContent-Type: " + ENCRYPTED_PROTOCOL.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(message)).encode()
        + b"\r\n"
        + BOUNDARY
        + b"\r\n"
        b"\tContent-Type: application/octet-stream\r\n"
        + struct.pack("<i", 16)
        + sealed
        + BOUNDARY
        + b"--\r\n"
    )


async def serve(host: str, port: int, **options: object) -> WinRMEndpoint:
    """Start a simulated Windows host's WinRM listener; the caller stops it (``ep.stop()``)."""
    endpoint = WinRMEndpoint(host, port, **options)  # type: ignore[arg-type]
    await endpoint.start()
    return endpoint


def main(argv: list[str] | None = None) -> None:
    """Run one endpoint until interrupted (the lab starts it this way inside a namespace)."""
    parser = argparse.ArgumentParser(description=f"Serve a {LABEL}.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5986)
    parser.add_argument("--tls-dir", type=Path, help="directory with winrm-cert.pem/winrm-key.pem")
    parser.add_argument("--users-file", type=Path, required=True, help="USER:PASSWORD lines")
    args = parser.parse_args(argv)
    users = dict(
        line.split(":", 1) for line in args.users_file.read_text().splitlines() if ":" in line
    )
    tls = None
    if args.tls_dir:
        cert = args.tls_dir / "winrm-cert.pem"
        fingerprint = hashlib.sha256(_der(cert)).hexdigest()
        tls = TLSFiles(args.tls_dir / "ca.pem", cert, args.tls_dir / "winrm-key.pem", fingerprint)

    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        endpoint = await serve(args.host, args.port, users=users, tls=tls)
        print(f"{LABEL} listening on {endpoint.url}", flush=True)
        try:
            await stopping.wait()
        finally:
            await endpoint.stop()  # also removes the NTLM user file

    asyncio.run(run())


if __name__ == "__main__":
    main()
