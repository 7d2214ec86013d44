"""The dashboard's view model (plain Python): loading, filter, sort, coalesced events, attention."""

from __future__ import annotations

from mssp.events import AgentPresenceChanged, HostStateChanged, RunFinished, RunStarted
from mssp.inventory import HostRecord
from tests.tui.helpers import fleet
from tui.model import FleetModel, HostStatus, SiteRow


def loaded(count: int = 100) -> FleetModel:
    snap = fleet(count)
    model = FleetModel()
    model.load(snap.hosts, snap.status)
    return model


def test_load_orders_by_full_name_and_counts_sites() -> None:
    model = loaded(100)
    assert len(model.order) == 100
    assert model.order == sorted(model.order)
    assert sum(s.host_count for s in model.sites.values()) == 100
    assert set(model.clients()) == {f"client{i}" for i in range(5)}
    assert model.attention.hosts_down == 10


def test_filter_free_text_fields_and_negation() -> None:
    model = loaded(100)
    model.set_filter("client1")
    assert model.order and all(n.startswith("client1/") for n in model.order)
    model.set_filter("status:down")
    assert len(model.order) == 10
    model.set_filter("status:down !os:windows")
    assert all(model.rows[n].os != "windows" for n in model.order)
    assert 0 < len(model.order) < 10
    model.set_filter("tag:web site:site0")
    assert all("web" in model.rows[n].tags and model.rows[n].site == "site0" for n in model.order)
    model.set_filter("")
    assert len(model.order) == 100


def test_scope_and_sort_keep_their_promises() -> None:
    model = loaded(100)
    model.set_scope("client2", "site1")
    assert {(model.rows[n].client, model.rows[n].site) for n in model.order} == {
        ("client2", "site1")
    }
    model.set_scope(None)
    model.set_sort("status")
    assert all(model.rows[n].status == "down" for n in model.order[:10])
    assert model.rows[model.order[10]].status == "up"
    model.set_sort("status", reverse=True)
    assert model.rows[model.order[0]].status == "up"


def test_events_are_coalesced_until_flush() -> None:
    model = loaded(20)
    host = model.order[3]
    for state in ("queued", "running", "ok", "running", "failed"):
        model.apply(HostStateChanged(run_id=7, host=host, state=state, message="exit 3"))
    assert model.rows[host].last_run == ""  # nothing applied before the flush
    result = model.flush()
    assert result.changed_hosts == {host}
    row = model.rows[host]
    assert (row.last_run, row.last_run_id, row.status, row.note) == ("failed", 7, "up", "exit 3")
    assert [line.level for line in result.log] == ["error"]
    assert model.flush().empty


def test_unreachable_marks_down_and_unknown_hosts_are_ignored() -> None:
    model = loaded(20)
    host = next(n for n in model.order if model.rows[n].status == "up")
    model.apply(HostStateChanged(run_id=1, host=host, state="unreachable"))
    model.apply(HostStateChanged(run_id=1, host="nobody/nowhere/x", state="ok"))
    result = model.flush()
    assert result.changed_hosts == {host}
    assert model.rows[host].status == "down"
    assert result.attention_changed
    assert model.attention.hosts_down == 3


def test_a_flood_logs_a_bounded_number_of_lines() -> None:
    model = loaded(200)
    for name in model.order:
        model.apply(HostStateChanged(run_id=1, host=name, state="failed"))
    result = model.flush()
    assert len(result.changed_hosts) == 200
    assert len(result.log) == model.LOG_PER_FLUSH + 1
    assert "197 more" in result.log[-1].text


def test_sorted_by_status_reorders_on_flush() -> None:
    model = loaded(20)
    model.set_sort("status")
    last = model.order[-1]
    model.apply(HostStateChanged(run_id=1, host=last, state="unreachable"))
    result = model.flush()
    assert result.reordered
    assert model.rows[model.order[0]].status == "down"
    assert model.index_of(last) is not None and model.index_of(last) < 5


def test_runs_agents_and_backups_count_as_attention() -> None:
    records = [HostRecord(client="acme", site="hq", name="a", address="x")]
    model = FleetModel()
    model.load(
        records,
        {"acme/hq/a": HostStatus(backup_state="STALE")},
        [SiteRow("acme", "branch", reach="relay", agent_online=True)],
    )
    assert model.attention.backups_unverified == 1
    model.apply(RunStarted(run_id=5, task="command", target="all", host_count=1))
    model.apply(AgentPresenceChanged(client="acme", site="branch", online=False))
    model.apply(RunFinished(run_id=5, state="finished", counts={"ok": 0, "failed": 1}))
    result = model.flush()
    assert result.sites_changed
    assert model.attention.agents_offline == 1
    assert model.attention.failed_runs == 1
    assert not model.active_runs
    assert model.attention.total == 3


def test_hostile_names_and_messages_are_neutralised() -> None:
    evil = HostRecord(client="acme", site="hq", name="web\x1b]0;pwned\x07", address="x")
    model = FleetModel()
    model.load([evil])
    row = model.rows[evil.full_name]
    assert "\x1b" not in row.name and "\x07" not in row.name
    model.apply(
        HostStateChanged(run_id=1, host=evil.full_name, state="failed", message="bad\x1b[2J\nthing")
    )
    result = model.flush()
    assert "\x1b" not in row.note and "\n" not in row.note
    assert all("\x1b" not in line.text for line in result.log)


def test_selection_survives_reload_only_for_existing_hosts() -> None:
    model = loaded(10)
    first, second = model.order[:2]
    model.toggle_selected(first)
    model.toggle_selected(second)
    model.toggle_selected("ghost/x/y")
    assert model.selected == {first, second}
    snap = fleet(10)
    model.load([h for h in snap.hosts if h.full_name != second], snap.status)
    assert model.selected == {first}


def test_runs_seen_in_the_database_are_learnt_after_the_first_look() -> None:
    from tui.services import RunInfo

    model = loaded(5)
    assert model.note_runs([RunInfo(1, "command", "all", "finished", {"ok": 5})]) == []
    lines = model.note_runs(
        [
            RunInfo(1, "command", "all", "finished", {"ok": 5}),
            RunInfo(2, "updates.apply", "client:acme", "finished", {"failed": 2}, failed=True),
        ]
    )
    assert [line.level for line in lines] == ["error"]
    assert "run 2 (updates.apply on client:acme) finished: failed 2" in lines[0].text
    assert model.attention.failed_runs == 1
    assert model.note_runs([RunInfo(2, "x", "y", "finished", failed=True)]) == []


def test_agent_presence_is_logged_when_it_changes_not_on_every_heartbeat() -> None:
    model = FleetModel()
    model.load([], {}, [SiteRow("acme", "branch", reach="relay", agent_online=True)])
    for _ in range(5):  # the relay repeats presence with the RTT every ~10 s
        model.apply(AgentPresenceChanged(client="acme", site="branch", online=True, rtt_ms=3.0))
    assert [line.text for line in model.flush().log] == []
    model.apply(AgentPresenceChanged(client="acme", site="branch", online=False))
    model.apply(AgentPresenceChanged(client="acme", site="branch", online=False))
    model.apply(AgentPresenceChanged(client="acme", site="branch", online=True))
    texts = [line.text for line in model.flush().log]
    assert texts == ["agent acme/branch OFFLINE", "agent acme/branch online"]
