"""The audit log: every kind of tampering is detected, and a failed write fails closed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tortoise import connections

from mssp import audit, audit_checkpoints
from mssp.config import Settings
from mssp.errors import AuditError
from mssp.models.audit import AuditEntry


async def _fill(n: int = 5) -> None:
    for i in range(n):
        await audit.record(
            "run.start", actor="tester@lab", client="acme", target=f"host{i}", detail={"i": i}
        )


async def test_intact_chain_verifies(db: Settings) -> None:
    await _fill()
    seq = await audit.intent("run.start", client="acme", target="fs01")
    await audit.outcome(seq, "run.start", result="ok", client="acme", target="fs01")
    result = await audit.verify()
    assert result.ok and result.entries == 7
    entries = await audit.entries(client="acme")
    assert entries[-1].intent_seq == seq


async def test_edit_detected(db: Settings) -> None:
    await _fill()
    await AuditEntry.filter(seq=3).update(result="failed")
    result = await audit.verify()
    assert not result.ok and result.first_bad_seq == 3
    assert "changed" in result.problem


async def test_deletion_detected(db: Settings) -> None:
    await _fill()
    await AuditEntry.filter(seq=2).delete()
    result = await audit.verify()
    assert not result.ok and result.first_bad_seq == 2


async def test_insertion_detected(db: Settings) -> None:
    await _fill()
    # The forger shifts entries 3.. up by one and inserts a well-formed entry at 3.
    for seq in (5, 4, 3):
        await AuditEntry.filter(seq=seq).update(seq=seq + 1)
    prev = await AuditEntry.get(seq=2)
    forged = audit.Entry(
        seq=3,
        at=prev.at,
        actor="x",
        action="cred.use",
        client="acme",
        target="",
        detail="{}",
        result="ok",
        intent_seq=None,
        prev_hash=prev.hash,
        hash="",
    )
    await AuditEntry.create(**{**forged.__dict__, "hash": forged.computed_hash()})
    result = await audit.verify()
    assert not result.ok and result.first_bad_seq == 4


async def test_reordering_detected(db: Settings) -> None:
    await _fill()
    await AuditEntry.filter(seq=2).update(seq=100)
    await AuditEntry.filter(seq=3).update(seq=2)
    await AuditEntry.filter(seq=100).update(seq=3)
    result = await audit.verify()
    assert not result.ok and result.first_bad_seq == 2


async def test_truncation_and_rewrite_caught_by_checkpoint(db: Settings, tmp_path: Path) -> None:
    await _fill()
    key = audit_checkpoints.load_or_create_key(db.config_dir)
    head = await audit.verify()
    cp_file = tmp_path / "offsite" / "checkpoints.jsonl"
    cp_file.parent.mkdir()
    audit_checkpoints.append(cp_file, audit_checkpoints.sign(key, head.entries, head.head_hash))
    cps = audit_checkpoints.read(cp_file)
    assert (await audit.verify(cps)).ok

    # Truncation: the shorter chain is self-consistent, but the checkpoint names seq 5.
    await AuditEntry.filter(seq=5).delete()
    assert (await audit.verify()).ok
    truncated = await audit.verify(cps)
    assert not truncated.ok and "truncated" in truncated.problem

    # Rewrite: the forger recomputes every hash after editing entry 2; the checkpoint differs.
    await AuditEntry.all().delete()
    await _fill()
    chain = await audit.entries()
    prev = audit.GENESIS_HASH
    for entry in chain:
        target = "evil" if entry.seq == 2 else entry.target
        rewritten = audit.Entry(**{**entry.__dict__, "target": target, "prev_hash": prev})
        digest = rewritten.computed_hash()
        await AuditEntry.filter(seq=entry.seq).update(target=target, prev_hash=prev, hash=digest)
        prev = digest
    assert (await audit.verify()).ok
    rewritten_result = await audit.verify(cps)
    assert not rewritten_result.ok and "rewritten" in rewritten_result.problem


def test_forged_checkpoint_refused(tmp_path: Path) -> None:
    key = audit_checkpoints.load_or_create_key(tmp_path)
    cp = audit_checkpoints.sign(key, 3, "ab" * 32)
    path = tmp_path / "cps.jsonl"
    forged = {**cp.__dict__, "hash": "cd" * 32}
    path.write_text(json.dumps(forged) + "\n")
    with pytest.raises(AuditError, match="signature"):
        audit_checkpoints.read(path)
    path.write_text("not json\n")
    with pytest.raises(AuditError, match="not a checkpoint"):
        audit_checkpoints.read(path)


async def test_audit_write_failure_fails_closed(db: Settings) -> None:
    """If the audit cannot be written, record() raises AuditError (the action is refused)."""
    conn = connections.get("default")
    if db.is_postgres:
        await conn.execute_script(
            "CREATE FUNCTION audit_refuse() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'disk full'; END; $$ LANGUAGE plpgsql;"
            "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_entry "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse();"
        )
        drop = "DROP TRIGGER audit_refuse ON audit_entry; DROP FUNCTION audit_refuse();"
    else:
        await conn.execute_script(
            "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_entry "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END;"
        )
        drop = "DROP TRIGGER audit_refuse;"
    try:
        with pytest.raises(AuditError):
            await audit.intent("run.start", client="acme", target="fs01")
        assert await AuditEntry.all().count() == 0
    finally:
        await conn.execute_script(drop)


def test_cli_verify_and_list(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from mssp import db as mssp_db
    from mssp.cli import cli

    async def fill() -> None:
        async with mssp_db.database(settings):
            await _fill(3)

    asyncio.run(fill())
    monkeypatch.setenv("MSSP_HOME", str(settings.config_dir))
    runner = CliRunner()
    out = runner.invoke(cli, ["audit", "verify", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["ok"] is True
    listed = runner.invoke(cli, ["audit", "list", "--json", "--client", "acme"])
    assert [e["seq"] for e in json.loads(listed.output)] == [1, 2, 3]
    cp = settings.data_dir / "cp.jsonl"
    assert runner.invoke(cli, ["audit", "checkpoint", "--out", str(cp)]).exit_code == 0

    async def tamper() -> None:
        async with mssp_db.database(settings):
            await AuditEntry.filter(seq=2).update(actor="someone-else")

    asyncio.run(tamper())
    broken = runner.invoke(cli, ["audit", "verify", "--checkpoints", str(cp)])
    assert broken.exit_code == 1
    assert "BROKEN at entry 2" in broken.output
