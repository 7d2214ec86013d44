"""The tree of clients → sites, with each relayed site's agent presence; choosing a node scopes."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tui.model import SiteRow
from tui.text import one_line
from tui.widgets.host_table import format_age


@dataclass(frozen=True)
class Scope:
    client: str | None
    site: str | None = None


def site_label(site: SiteRow, now: float | None = None) -> Text:
    now = time.time() if now is None else now
    text = Text(one_line(site.site))
    text.append(f" ({site.host_count})", style="dim")
    if site.agent_online is None:
        if site.reach == "relay":
            text.append("  agent ?", style="dim")
        return text
    age = format_age(now - site.agent_last_seen) if site.agent_last_seen else "-"
    if site.agent_online:
        text.append(f"  ● online {age}", style="green")
    else:
        text.append(f"  ● OFFLINE {age}", style="bold red")
    return text


class ClientTree(Tree[Scope]):
    """Clients and their sites. Emits ScopeChosen when the user picks a node."""

    DEFAULT_CSS = """
    ClientTree { width: 34; border-right: solid $panel-lighten-2; }
    """

    class ScopeChosen(Message):
        def __init__(self, tree: ClientTree, scope: Scope) -> None:
            super().__init__()
            self.tree, self.scope = tree, scope

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("All clients", data=Scope(None), id=id)
        self._shape: tuple = ()
        self._site_nodes: dict[tuple[str, str], TreeNode[Scope]] = {}
        self.root.expand()

    def show(self, clients: dict[str, list[SiteRow]]) -> None:
        """Show these clients and sites; rebuilds only when the set of sites changed."""
        shape = tuple((c, tuple(s.site for s in sites)) for c, sites in clients.items())
        now = time.time()
        if shape != self._shape:
            self._shape = shape
            self.root.remove_children()
            self._site_nodes.clear()
            for client, sites in clients.items():
                hosts = sum(s.host_count for s in sites)
                label = Text(one_line(client), style="bold")
                label.append(f" ({hosts})", style="dim")
                node = self.root.add(label, data=Scope(client), expand=len(clients) <= 20)
                for site in sites:
                    leaf = node.add_leaf(site_label(site, now), data=Scope(client, site.site))
                    self._site_nodes[(client, site.site)] = leaf
            return
        for sites in clients.values():
            for site in sites:
                label = site_label(site, now)
                node = self._site_nodes[(site.client, site.site)]
                if node.label.plain != label.plain:  # relabel only what changed (ages, presence)
                    node.set_label(label)

    def on_tree_node_selected(self, event: Tree.NodeSelected[Scope]) -> None:
        event.stop()
        if event.node.data is not None:
            self.post_message(self.ScopeChosen(self, event.node.data))
