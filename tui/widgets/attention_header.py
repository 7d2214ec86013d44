"""The one-line header counting what needs attention: hosts down, backups, failed runs, agents."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from tui.model import Attention


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


class AttentionHeader(Static):
    """Shows an Attention value; the screen sets ``attention`` and ``host_count``."""

    DEFAULT_CSS = """
    AttentionHeader { height: 1; padding: 0 1; background: $panel; }
    AttentionHeader.-alert { background: $error 30%; }
    """

    attention: reactive[Attention] = reactive(Attention, layout=False)
    host_count: reactive[int] = reactive(0)
    running: reactive[int] = reactive(0)
    shown: reactive[int] = reactive(0)
    selected: reactive[int] = reactive(0)

    def render(self) -> Text:
        a = self.attention
        text = Text()
        text.append("mssp", style="bold")
        text.append(f"  {_plural(self.host_count, 'host', 'hosts')}")
        if self.shown != self.host_count:
            text.append(f" · {self.shown} shown", style="bold")
        if self.selected:
            text.append(f" · {self.selected} selected", style="bold yellow")
        if self.running:
            text.append(f"  ▶ {_plural(self.running, 'run', 'runs')} active", style="bold")
        text.append("   ")
        parts = [
            (a.hosts_down, _plural(a.hosts_down, "host down", "hosts down")),
            (
                a.backups_unverified,
                _plural(a.backups_unverified, "backup not VERIFIED", "backups not VERIFIED"),
            ),
            (a.failed_runs, _plural(a.failed_runs, "failed run", "failed runs")),
            (a.agents_offline, _plural(a.agents_offline, "agent offline", "agents offline")),
        ]
        if a.total == 0:
            text.append("✓ nothing needs attention", style="green")
        else:
            text.append("⚠ ", style="bold red")
            shown = [label for count, label in parts if count]
            text.append(" · ".join(shown), style="bold")
        return text

    def watch_attention(self, attention: Attention) -> None:
        self.set_class(attention.total > 0, "-alert")
