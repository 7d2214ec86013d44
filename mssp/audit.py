"""The tamper-evident audit log: hash-chained entries, verification, and signed checkpoints.

Every privileged action is appended with who, what, where, when and the result. For actions that
change hosts, an *intent* entry is written before the action and an *outcome* entry after; if the
intent cannot be written the action must not run (``AuditError`` propagates to the caller).

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical JSON form,
so editing, deleting, inserting or reordering an entry breaks the chain at that point. Removing
the newest entries (truncation) leaves a valid shorter chain: that is caught against checkpoints,
signed records of the chain head (seq, hash) written somewhere off the machine.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mssp.audit_checkpoints import Checkpoint
from mssp.errors import AuditError

GENESIS_HASH = "0" * 64
_PG_AUDIT_LOCK = 0x61756474  # "audt"


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class Entry:
    """An audit entry as stored and hashed."""

    seq: int
    at: str
    actor: str
    action: str
    client: str
    target: str
    detail: str
    """Canonical JSON text."""
    result: str
    intent_seq: int | None
    prev_hash: str
    hash: str

    def canonical(self) -> str:
        return canonical_json(
            {
                "seq": self.seq,
                "at": self.at,
                "actor": self.actor,
                "action": self.action,
                "client": self.client,
                "target": self.target,
                "detail": self.detail,
                "result": self.result,
                "intent_seq": self.intent_seq,
            }
        )

    def computed_hash(self) -> str:
        return entry_hash(self.prev_hash, self.canonical())

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["detail"] = json.loads(self.detail)
        return out


def entry_hash(prev_hash: str, canonical: str) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical.encode("utf-8")).hexdigest()


def _from_row(row: Any) -> Entry:
    return Entry(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        client=row.client,
        target=row.target,
        detail=row.detail,
        result=row.result,
        intent_seq=row.intent_seq,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


async def record(
    action: str,
    *,
    actor: str | None = None,
    client: str = "",
    target: str = "",
    detail: Mapping[str, Any] | None = None,
    result: str = "ok",
    intent_seq: int | None = None,
) -> int:
    """Append one entry and return its seq. Raises AuditError if it cannot be written."""
    from tortoise.exceptions import BaseORMException

    from mssp.db import write_transaction
    from mssp.models.audit import AuditEntry

    try:
        detail_text = canonical_json(dict(detail or {}))
        async with write_transaction() as conn:
            if conn.capabilities.dialect == "postgres":
                await conn.execute_query("SELECT pg_advisory_xact_lock($1)", [_PG_AUDIT_LOCK])
            last = await AuditEntry.all().order_by("-seq").first()
            entry = Entry(
                seq=(last.seq + 1) if last else 1,
                at=datetime.now(UTC).isoformat(timespec="microseconds"),
                actor=actor or default_actor(),
                action=action,
                client=client,
                target=target,
                detail=detail_text,
                result=result,
                intent_seq=intent_seq,
                prev_hash=last.hash if last else GENESIS_HASH,
                hash="",
            )
            digest = entry.computed_hash()
            await AuditEntry.create(**{**entry.__dict__, "hash": digest})
            return entry.seq
    except AuditError:
        raise
    except (BaseORMException, OSError, ValueError, TypeError) as exc:
        raise AuditError(f"cannot write the audit log: {type(exc).__name__}") from None
    except Exception as exc:  # driver errors (sqlite3, asyncpg) must fail closed too
        raise AuditError(f"cannot write the audit log: {type(exc).__name__}") from None


async def intent(action: str, **kwargs: Any) -> int:
    """Write the intent entry of an action that will change hosts; returns its seq."""
    return await record(action, result="intent", **kwargs)


async def outcome(intent_seq: int, action: str, *, result: str, **kwargs: Any) -> int:
    """Write the outcome entry that completes an intent."""
    return await record(action, result=result, intent_seq=intent_seq, **kwargs)


class _Action:
    """The open audit record of one action (see ``action``): add outcome details as you go."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.detail: dict[str, Any] = {}


@contextlib.asynccontextmanager
async def action(
    name: str, *, client: str = "", target: str = "", detail: Mapping[str, Any] | None = None
) -> AsyncIterator[_Action]:
    """``async with audit.action("site.enroll", client=..., target=...) as a:`` writes the
    intent before the block (AuditError refuses the action) and the outcome after it: "ok", or
    "failed" with the error's title when the block raises (the error propagates)."""
    seq = await intent(name, client=client, target=target, detail=detail)
    handle = _Action(seq)
    try:
        yield handle
    except BaseException as exc:
        title = getattr(exc, "title", type(exc).__name__)
        await outcome(
            seq,
            name,
            result="failed",
            client=client,
            target=target,
            detail={**handle.detail, "error": title},
        )
        raise
    await outcome(seq, name, result="ok", client=client, target=target, detail=handle.detail)


async def entries(
    *,
    client: str | None = None,
    action: str | None = None,
    since: str | None = None,
    limit: int | None = None,
) -> list[Entry]:
    from mssp.models.audit import AuditEntry

    query = AuditEntry.all().order_by("seq")
    if client is not None:
        query = query.filter(client=client)
    if action is not None:
        query = query.filter(action__startswith=action)
    if since is not None:
        query = query.filter(at__gte=since)
    rows = await query
    out = [_from_row(r) for r in rows]
    return out[-limit:] if limit else out


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking the chain (and checkpoints, if given)."""

    ok: bool
    entries: int
    """How many entries were read."""
    first_bad_seq: int | None = None
    """The first position where the chain breaks (None when ok)."""
    problem: str = ""
    """What broke there, in words."""
    head_hash: str = GENESIS_HASH


def verify_chain(chain: Sequence[Entry]) -> VerifyResult:
    """Check an ordered chain; report the first entry where it breaks."""
    prev_hash = GENESIS_HASH
    for position, entry in enumerate(chain, start=1):
        if entry.seq != position:
            kind = "missing entries (deleted)" if entry.seq > position else "out of order"
            return VerifyResult(False, len(chain), position, f"seq {entry.seq} at {kind}")
        if entry.prev_hash != prev_hash:
            return VerifyResult(
                False,
                len(chain),
                entry.seq,
                "does not follow the previous entry (inserted, deleted or reordered)",
            )
        if entry.computed_hash() != entry.hash:
            return VerifyResult(False, len(chain), entry.seq, "content was changed")
        prev_hash = entry.hash
    return VerifyResult(True, len(chain), head_hash=prev_hash)


def verify_against_checkpoints(
    chain: Sequence[Entry], checkpoints: Sequence[Checkpoint]
) -> VerifyResult:
    """A chain that verifies must also contain every checkpointed head unchanged."""
    by_seq = {e.seq: e for e in chain}
    for cp in sorted(checkpoints, key=lambda c: c.seq):
        entry = by_seq.get(cp.seq)
        if entry is None:
            return VerifyResult(
                False, len(chain), cp.seq, f"truncated: checkpoint of {cp.at} names seq {cp.seq}"
            )
        if entry.hash != cp.hash:
            return VerifyResult(
                False, len(chain), cp.seq, f"rewritten: differs from the checkpoint of {cp.at}"
            )
    return VerifyResult(True, len(chain), head_hash=chain[-1].hash if chain else GENESIS_HASH)


async def verify(checkpoints: Sequence[Checkpoint] = ()) -> VerifyResult:
    chain = await entries()
    result = verify_chain(chain)
    if not result.ok or not checkpoints:
        return result
    return verify_against_checkpoints(chain, checkpoints)


__all__ = [
    "Checkpoint",
    "Entry",
    "VerifyResult",
    "entries",
    "intent",
    "outcome",
    "record",
    "verify",
    "verify_chain",
]
