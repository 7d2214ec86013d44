"""The client-site agent: enrolment (``join``) and the long-lived link to the relay (``Agent``).

The link is an explicit state machine (Teleport's reverse-tunnel agent is the model)::

    STOPPED -> CONNECTING -> ONLINE -> (link lost) -> BACKOFF -> CONNECTING ...
    ONLINE -> DRAINING -> STOPPED          (stop(): no new sessions, wait for open ones)
    any -> REVOKED                          (the relay says the site is revoked: stop retrying)

Reconnects use full-jitter exponential backoff (delay uniform in [0, min(cap, base * 2**n)]), with
the random source and sleep injectable for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncssh

from relay import handshake, protocol, tls
from relay import token as join_token
from relay.agent_ssh import serve_session
from relay.allowlist import Allowlist
from relay.errors import ConfigError, RelayError, RelayProtocolError, SiteRevokedError, TokenError
from relay.tunnel import WebSocketTunnel

log = logging.getLogger("relay.agent")

CONFIG_FILE = "agent.json"
KEY_FILE = "host_key"
MAX_SESSIONS = 32


class AgentState(enum.Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    ONLINE = "online"
    BACKOFF = "backoff"
    DRAINING = "draining"
    REVOKED = "revoked"


@dataclass(frozen=True)
class AgentConfig:
    """What an enrolled agent keeps on disk (``agent.json``; the key is a separate 0600 file)."""

    relay_url: str
    relay_pin: str
    site_id: str
    core_public_key: str
    allowlist: Allowlist
    joined_at: float

    def save(self, state_dir: Path) -> None:
        body = {
            "relay_url": self.relay_url,
            "relay_pin": self.relay_pin,
            "site_id": self.site_id,
            "core_public_key": self.core_public_key,
            "allowlist": self.allowlist.to_json(),
            "joined_at": self.joined_at,
        }
        _write_private(state_dir / CONFIG_FILE, json.dumps(body, indent=1).encode())

    @classmethod
    def load(cls, state_dir: Path) -> AgentConfig:
        path = Path(state_dir) / CONFIG_FILE
        try:
            body = json.loads(path.read_text())
            return cls(
                relay_url=join_token.validate_relay_url(body["relay_url"]),
                relay_pin=body["relay_pin"],
                site_id=protocol.site_id(body["site_id"]),
                core_public_key=protocol.ed25519_public_key(body["core_public_key"]),
                allowlist=Allowlist.parse(
                    body["allowlist"]["networks"], body["allowlist"]["ports"]
                ),
                joined_at=float(body["joined_at"]),
            )
        except FileNotFoundError:
            raise ConfigError(
                f"{path} not found: enrol first with `mssp-agent join TOKEN`"
            ) from None
        except (OSError, ValueError, KeyError, TypeError, RelayProtocolError) as exc:
            raise ConfigError(f"{path} is unreadable: {exc}") from None


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_host_key(state_dir: Path) -> asyncssh.SSHKey:
    try:
        return asyncssh.read_private_key(Path(state_dir) / KEY_FILE)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError(f"cannot read the agent key in {state_dir}: {exc}") from None


@dataclass(frozen=True)
class JoinResult:
    """An enrolment that succeeded."""

    site_id: str
    host_key: str
    """The agent's public host key (the core pins it after checking the proof)."""
    config: AgentConfig


async def join(
    token_text: str,
    state_dir: Path,
    allowlist: Allowlist,
    *,
    now: float | None = None,
    timeout: float = 15.0,
) -> JoinResult:
    """Enrol this machine: new key, admission at the relay, proof for the core, config on disk."""
    token = join_token.parse(token_text, now=now)
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = asyncssh.generate_private_key("ssh-ed25519")
    public = protocol.normalise_key(key)
    body = {
        "site": token.site_id,
        "admission": protocol.b64u(token.admission_secret),
        "agent_key": public,
        # The relay stores this HMAC for the core and can neither check nor forge it.
        "proof": join_token.key_proof(token.binding_secret, token.site_id, public),
    }
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        try:
            async with http.post(
                token.relay_url.replace("wss://", "https://", 1) + "/v1/join",
                data=protocol.encode(body),
                headers={"Content-Type": "application/json"},
                ssl=tls.fingerprint(token.relay_pin),
            ) as resp:
                text = await resp.text()
                status = resp.status
        except aiohttp.ServerFingerprintMismatch:
            raise TokenError("the relay's certificate does not match the token's pin") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TokenError(f"cannot reach the relay at {token.relay_url}: {exc}") from None
    if status != 200:
        try:
            reason = protocol.reason(protocol.loads(text, "join refusal")["error"])
        except (KeyError, TypeError, RelayProtocolError):
            reason = f"HTTP {status}"
        raise TokenError(f"enrolment refused by the relay: {reason}")
    config = AgentConfig(
        token.relay_url,
        token.relay_pin,
        token.site_id,
        token.core_public_key,
        allowlist,
        time.time() if now is None else now,
    )
    _write_private(state_dir / KEY_FILE, key.export_private_key("openssh"))
    config.save(state_dir)
    return JoinResult(token.site_id, public, config)


@dataclass
class Backoff:
    """Full-jitter exponential backoff."""

    base: float = 1.0
    cap: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, min(self.cap, self.base * 2 ** min(attempt, 30)))


Sleep = Callable[[float], Awaitable[None]]


class Agent:
    """Keeps the link to the relay and serves one SSH session per ``open`` from the relay."""

    def __init__(
        self,
        config: AgentConfig,
        host_key: asyncssh.SSHKey,
        *,
        heartbeat: float = 20.0,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        connect_timeout: float = 10.0,
        on_state: Callable[[AgentState], None] | None = None,
    ) -> None:
        self.config = config
        self._host_key = host_key
        self._core_key = asyncssh.import_public_key(config.core_public_key)
        self.heartbeat = heartbeat
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._timeout = connect_timeout
        self._on_state = on_state
        self.state = AgentState.STOPPED
        self.connects = 0
        """Successful authentications at the relay (1 + reconnects)."""
        self.last_error = ""
        self._sessions: set[asyncio.Task[None]] = set()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stop = asyncio.Event()
        self._draining = False
        self._http: aiohttp.ClientSession | None = None

    def _set(self, state: AgentState) -> None:
        if state is not self.state:
            log.info("agent %s: %s -> %s", self.config.site_id, self.state.value, state.value)
            self.state = state
            if self._on_state is not None:
                self._on_state(state)

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    async def run(self) -> AgentState:
        """Run until ``stop()`` or revocation; returns the final state."""
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            self._http = http
            attempt = 0
            try:
                while not self._stop.is_set():
                    self._set(AgentState.CONNECTING)
                    was_online = False
                    try:
                        was_online = await self._link_once()
                    except SiteRevokedError as exc:
                        self.last_error = str(exc)
                        self._set(AgentState.REVOKED)
                        break
                    except (RelayError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                        self.last_error = str(exc)
                        log.warning("agent %s: %s", self.config.site_id, exc)
                    except Exception as exc:  # the relay is not trusted: whatever one message
                        # does to the link, the agent reconnects instead of exiting
                        self.last_error = f"{type(exc).__name__}: {exc}"
                        log.exception("agent %s: link failed unexpectedly", self.config.site_id)
                    if self._stop.is_set():
                        break
                    attempt = 0 if was_online else attempt + 1
                    self._set(AgentState.BACKOFF)
                    delay = self.backoff.delay(attempt)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wait_stop_or(self._sleep(delay)), delay + 1)
            finally:
                await self._cancel_sessions()
            if self.state is not AgentState.REVOKED:
                self._set(AgentState.STOPPED)
        return self.state

    async def _wait_stop_or(self, aw: Awaitable[None]) -> None:
        sleeper = asyncio.ensure_future(aw)
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)

    async def _link_once(self) -> bool:
        assert self._http is not None
        ws = await handshake.open_authenticated(
            self._http,
            self.config.relay_url,
            self.config.relay_pin,
            "/v1/agent",
            self._host_key,
            site=self.config.site_id,
            timeout=self._timeout,
            heartbeat=self.heartbeat,
        )
        if self._stop.is_set():  # stop() came while the handshake was in flight
            await ws.close()
            return False
        self._ws = ws
        self.connects += 1
        self._set(AgentState.DRAINING if self._draining else AgentState.ONLINE)
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                kind = protocol.kind(msg.data)
                if kind == "ping":
                    ping = protocol.decode(msg.data, protocol.PING, "ping")
                    await ws.send_str(protocol.encode({"t": "pong", "n": ping["n"]}))
                elif kind == "open":
                    opened = protocol.decode(msg.data, protocol.OPEN, "open")
                    # A relay asking for more sessions than the core ever uses is ignored.
                    if not self._draining and len(self._sessions) < MAX_SESSIONS:
                        task = asyncio.create_task(self._session(opened["session"]))
                        self._sessions.add(task)
                        task.add_done_callback(self._sessions.discard)
                elif kind == "error":
                    handshake.raise_refusal(msg.data, "relay link")
                else:
                    raise RelayProtocolError(f"unexpected relay message {kind[:20]!r}")
        finally:
            self._ws = None
            await ws.close()
        return True

    async def _session(self, session_id: str) -> None:
        label = f"{self.config.site_id} session {session_id[:8]}"
        assert self._http is not None
        try:
            ws = await handshake.open_authenticated(
                self._http,
                self.config.relay_url,
                self.config.relay_pin,
                "/v1/session",
                self._host_key,
                site=self.config.site_id,
                session=session_id,
                timeout=self._timeout,
                heartbeat=None,
            )

            async def opened() -> aiohttp.ClientWebSocketResponse:
                return ws

            tunnel = WebSocketTunnel(opened, label=label)
            await serve_session(
                tunnel, self._host_key, self._core_key, self.config.allowlist, label=label
            )
        except asyncio.CancelledError:
            raise
        except (RelayError, asyncssh.Error, OSError, TimeoutError) as exc:
            log.info("%s ended: %s", label, exc)
        except Exception:  # whatever the relay sends, one session never takes the agent down
            log.exception("%s ended unexpectedly", label)

    async def _cancel_sessions(self) -> None:
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Drain (no new sessions; open ones may finish within ``drain_timeout``), then stop."""
        self._draining = True
        if self._ws is not None and not self._ws.closed:
            self._set(AgentState.DRAINING)
            with contextlib.suppress(Exception):
                await self._ws.send_str(protocol.encode({"t": "draining"}))
        if self._sessions:
            await asyncio.wait(set(self._sessions), timeout=drain_timeout)
        self._stop.set()
        if self._ws is not None:
            await self._ws.close()
