"""Connectors for relayed hosts: nested SSH through the site agent, WinRM through a local port.

They behave like the direct ones, with two differences a consultant needs: a target the agent
refuses (outside its allowlist) is a ``TargetRefused`` carrying the agent's reason, never
retried; and a command or transfer cut because the agent link died (relay killed, agent gone) is a
``RelayUnavailable`` saying why, so the engine reports the host as unreachable, not failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mssp.config import Settings
from mssp.connectors.base import CommandResult, ConnectOptions, Connector, HostKeyInfo
from mssp.connectors.relay import SiteTunnel, translate
from mssp.connectors.ssh import SSHConnector
from mssp.errors import ConfigError, ConnectError, MsspError, RelayUnavailable, TargetRefused
from mssp.inventory import HostRecord

log = logging.getLogger(__name__)


def _refused(tunnel: SiteTunnel, options: ConnectOptions) -> TargetRefused | None:
    reason = tunnel.refusals.pop((options.address, options.port), None)
    return None if reason is None else TargetRefused(reason, host=options.host)


def _lost(tunnel: SiteTunnel, host: str, during: str) -> RelayUnavailable:
    reason = tunnel.lost_reason() or "the connection to the host through the agent was lost"
    return RelayUnavailable(f"{during} cut off: {reason}", host=host)


class RelayedSSHConnector(SSHConnector):
    """SSH to a host of a relayed site, nested inside the site agent's SSH connection."""

    def __init__(self, options: ConnectOptions, *, tunnel: SiteTunnel, **kwargs: Any) -> None:
        super().__init__(options, tunnel=tunnel, **kwargs)
        self.site_tunnel = tunnel

    async def connect(self) -> None:
        self.site_tunnel.refusals.pop((self.options.address, self.options.port), None)
        try:
            await super().connect()
        except ConnectError as exc:
            refused = _refused(self.site_tunnel, self.options)
            if refused is not None:
                raise refused from None
            if not self.site_tunnel.alive and type(exc) is ConnectError:
                raise _lost(self.site_tunnel, self.options.host, "connect") from None
            raise

    def _broken(self) -> bool:
        return not self.site_tunnel.alive or not self.is_connected

    async def run(
        self,
        command: str,
        *,
        check: bool = False,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        become: bool = False,
    ) -> CommandResult:
        try:
            result = await super().run(
                command, check=False, timeout=timeout, stdin=stdin, env=env, become=become
            )
        except ConnectError as exc:
            if self._broken() and type(exc) is ConnectError:
                raise _lost(self.site_tunnel, self.options.host, "command") from None
            raise
        except MsspError:
            raise
        except Exception as exc:  # the agent link's own error surfaces through the channel
            if self._broken():
                raise _lost(self.site_tunnel, self.options.host, "command") from None
            raise translate(exc, self.options.host) from None
        if result.exit_status is None:
            # A command cut by a lost link ends without status, like one killed by a signal:
            # tell them apart by the link, so the host is unreachable rather than failed.
            await asyncio.sleep(0)
            if self._broken():
                raise _lost(self.site_tunnel, self.options.host, "command")
        return result.check() if check else result

    async def _transfer(self, work: Callable[[], Awaitable[Any]], during: str) -> Any:
        try:
            return await work()
        except Exception as exc:
            if self._broken():
                raise _lost(self.site_tunnel, self.options.host, during) from None
            if isinstance(exc, MsspError):
                raise
            raise translate(exc, self.options.host) from None

    async def put_file(self, local: Path, remote: str, *, mode: int | None = None) -> Any:
        return await self._transfer(
            lambda: super(RelayedSSHConnector, self).put_file(local, remote, mode=mode), "upload"
        )

    async def get_file(self, remote: str, local: Path) -> Any:
        return await self._transfer(
            lambda: super(RelayedSSHConnector, self).get_file(remote, local), "download"
        )


class LocalForward:
    """A 127.0.0.1 port whose connections are carried to ``host:port`` through the agent.

    Each accepted socket opens its own channel with ``open_connection``, so a refusal keeps the
    agent's reason (a plain forwarded port would show the local client only an EOF).
    """

    def __init__(self, tunnel: SiteTunnel, host: str, port: int) -> None:
        self.tunnel = tunnel
        self.host = host
        self.port = port
        self.local_port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.local_port = self._server.sockets[0].getsockname()[1]
        return self.local_port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                remote_r, remote_w = await asyncio.wait_for(
                    self.tunnel.open_connection(self.host, self.port), 15
                )
            except Exception as exc:
                log.info("forward to %s:%d refused: %s", self.host, self.port, exc)
                return

            async def pump(src: Any, dst: Any) -> None:
                with contextlib.suppress(Exception):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                with contextlib.suppress(Exception):
                    dst.write_eof()

            await asyncio.gather(pump(reader, remote_w), pump(remote_r, writer))
            remote_w.close()
        finally:
            writer.close()
            self._tasks.discard(task)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class RelayedWinRMConnector(Connector):
    """WinRM to a host of a relayed site: the WinRM connector speaking to a local forwarded port.

    The host's HTTPS certificate must be pinned (``cert_sha256``): the connection's URL names
    127.0.0.1, so CA validation would check the wrong name.
    """

    transport = "winrm"

    def __init__(self, options: ConnectOptions, tunnel: SiteTunnel, settings: Settings) -> None:
        self.options = options
        self.tunnel = tunnel
        self.settings = settings
        self._forward: LocalForward | None = None
        self._inner: Connector | None = None

    @property
    def is_connected(self) -> bool:
        return self._inner is not None and self._inner.is_connected and self.tunnel.alive

    async def connect(self) -> None:
        from mssp.connectors.winrm import WinRMConnector

        scheme = self.options.extra.get("scheme", "https").lower()
        if scheme == "https" and not self.options.extra.get("cert_sha256"):
            raise ConfigError(
                f"{self.options.host}: WinRM through a relay needs the certificate pinned "
                "(--option cert_sha256=...), since the local end of the tunnel is 127.0.0.1"
            )
        # probe first, so a refusal shows the agent's reason instead of an HTTP error
        self.tunnel.refusals.pop((self.options.address, self.options.port), None)
        try:
            _, probe = await asyncio.wait_for(
                self.tunnel.open_connection(self.options.address, self.options.port),
                self.options.connect_timeout,
            )
            probe.close()
        except Exception as exc:
            refused = _refused(self.tunnel, self.options)
            if refused is not None:
                raise refused from None
            raise ConnectError(
                f"connect through the agent: {exc}", host=self.options.host
            ) from None
        self._forward = LocalForward(self.tunnel, self.options.address, self.options.port)
        port = await self._forward.start()
        inner = WinRMConnector(
            replace(self.options, address="127.0.0.1", port=port),
            command_timeout=self.settings.command_timeout,
        )
        try:
            await inner.connect()
        except BaseException:
            await self._forward.aclose()
            raise
        self._inner = inner

    async def close(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            await inner.close()
        if self._forward is not None:
            await self._forward.aclose()

    def _require(self) -> Connector:
        if self._inner is None:
            raise ConnectError("not connected", host=self.options.host)
        return self._inner

    async def run(self, command: str, **kwargs: Any) -> CommandResult:
        try:
            return await self._require().run(command, **kwargs)
        except ConnectError:
            if not self.tunnel.alive:
                raise _lost(self.tunnel, self.options.host, "command") from None
            raise

    async def put_file(self, local: Path, remote: str, *, mode: int | None = None) -> Any:
        return await self._require().put_file(local, remote, mode=mode)

    async def get_file(self, remote: str, local: Path) -> Any:
        return await self._require().get_file(remote, local)

    def __getattr__(self, name: str) -> Any:
        # run_cmd and other WinRM-only helpers of the inner connector
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


def relay_connector_factory(settings: Settings, base: Any = None) -> Any:
    """Relayed hosts (a SiteTunnel as tunnel) get the connectors above; others ``base``'s."""
    from mssp.connections import default_connector_factory

    fallback = base or default_connector_factory(settings)

    def make(
        host: HostRecord,
        options: ConnectOptions,
        tunnel: Any,
        on_new_host_key: Callable[[HostKeyInfo], Awaitable[None]],
    ) -> Connector:
        if not isinstance(tunnel, SiteTunnel):
            return fallback(host, options, tunnel, on_new_host_key)
        if host.transport == "ssh":
            return RelayedSSHConnector(
                options,
                tunnel=tunnel,
                on_new_host_key=on_new_host_key,
                command_timeout=settings.command_timeout,
            )
        if host.transport == "winrm":
            return RelayedWinRMConnector(options, tunnel, settings)
        raise ConfigError(f"{host.full_name}: unknown transport {host.transport!r}")

    return make
