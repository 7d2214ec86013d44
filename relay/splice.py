"""Session routes of the relay: a core stream (``/v1/connect``) spliced to an agent stream.

The core asks for a site; the relay tells that site's agent (``open`` on its control link); the
agent opens ``/v1/session`` for that session id; the relay then copies binary messages both ways,
never decoding them, until either side ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from relay import protocol
from relay.hub import Refused, Splice

if TYPE_CHECKING:
    from relay.server import RelayServer

MAX_SESSIONS_PER_SITE = 32
"""The core keeps one SSH connection per agent; more than this is a bug or abuse."""


async def agent_session(server: RelayServer, request: web.Request) -> web.WebSocketResponse:
    ws = await server.open_ws(request)
    channel = "session-agent"
    try:
        hello = await server.authenticate(request, ws, channel)
        splice = server.hub.splices.get(hello["session"])
        if splice is None or splice.site_id != hello["site"] or splice.agent_ws.done():
            raise Refused("protocol", "no such pending session")
    except Refused as err:
        await server.refuse(ws, channel, err)
        return ws
    splice.agent_ws.set_result(ws)
    # The core's handler owns the splice; this handler only keeps the agent's socket open.
    await splice.done.wait()
    return ws


async def core_connect(server: RelayServer, request: web.Request) -> web.WebSocketResponse:
    ws = await server.open_ws(request)
    channel = "session-core"
    try:
        hello = await server.authenticate(request, ws, channel)
    except Refused as err:
        await server.refuse(ws, channel, err)
        return ws
    site = hello["site"]
    splice = Splice(
        protocol.b64u(secrets.token_bytes(24)), site, ws, asyncio.get_running_loop().create_future()
    )
    try:
        agent_ws = await _pair(server, splice)
    except Refused as err:
        server.hub.remove_splice(splice)
        await server.refuse(ws, channel, err)
        return ws
    except BaseException:
        server.hub.remove_splice(splice)
        raise
    try:
        await server.send(agent_ws, "session-agent", {"t": "ok"})
        await server.send(ws, channel, {"t": "ok"})
        server.hub.publish(site)
        pumps = [
            asyncio.create_task(_pump(server, ws, agent_ws, channel)),
            asyncio.create_task(_pump(server, agent_ws, ws, "session-agent")),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
    finally:
        for side in (ws, agent_ws):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(side.close(), 2)
        server.hub.remove_splice(splice)
        server.hub.publish(site)
    return ws


async def _pair(server: RelayServer, splice: Splice) -> web.WebSocketResponse:
    """Ask the site's agent for a session stream and wait for it."""
    link = server.hub.agents.get(splice.site_id)
    if link is None:
        raise Refused("offline", f"site {splice.site_id}: agent offline")
    if link.draining:
        raise Refused("draining", f"site {splice.site_id}: agent is draining")
    if len(server.hub.sessions_by_site.get(splice.site_id, ())) >= MAX_SESSIONS_PER_SITE:
        raise Refused("busy", f"site {splice.site_id}: too many open sessions")
    server.hub.add_splice(splice)
    await server.send(link.ws, "agent", {"t": "open", "session": splice.session_id})
    try:
        return await asyncio.wait_for(
            asyncio.shield(splice.agent_ws), server.config.session_open_timeout
        )
    except TimeoutError:
        raise Refused("timeout", f"site {splice.site_id}: agent did not open the session") from None


async def _pump(
    server: RelayServer, src: web.WebSocketResponse, dst: web.WebSocketResponse, channel: str
) -> None:
    # Blind: bytes go from one socket to the other, never decoded. Awaiting the send is the
    # backpressure: a slow side slows the fast side, and the relay buffers nothing.
    async for msg in src:
        if msg.type != WSMsgType.BINARY:
            return
        server.observe(channel, "in", msg.data)
        server.observe(channel, "out", msg.data)
        await dst.send_bytes(msg.data)
