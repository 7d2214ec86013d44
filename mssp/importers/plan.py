"""Import plans: what a reader found, what the database holds, and the preview between them.

Readers (ssh_config, ansible, csv_import) turn a file into a ``ParsedInventory``; ``make_plan``
compares it with an ``ExistingInventory`` snapshot and says, per client, site and host, whether
it will be created, updated or left unchanged. Nothing here touches the database.

Merge rule on update (so a re-import never destroys what the consultant added by hand): address,
port, user and transport are taken from the file; tags and options are added to the existing
ones, never removed. An import never deletes anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mssp.errors import InventoryError, UsageError
from mssp.store import names

_TAG_JUNK = re.compile(r"[^a-z0-9._-]+")


def slugify(text: str) -> str:
    """A group or display name as a client/site slug (``Acme_Dental`` → ``acme-dental``)."""
    return names.slugify(text)


@dataclass(frozen=True)
class ImportedHost:
    """One host as a reader found it, already placed in a client and site."""

    client: str
    site: str
    name: str
    address: str
    port: int = 22
    username: str = "root"
    transport: str = "ssh"
    tags: frozenset[str] = frozenset()
    options: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    """Where it was defined: ``file:line``."""
    placement: str = ""
    """Why it lands in this client/site (the mapping rule applied), for the preview."""

    @property
    def full_name(self) -> str:
        return f"{self.client}/{self.site}/{self.name}"


@dataclass(frozen=True)
class ImportNotice:
    """Something the preview must say: a value not imported, a rule applied conservatively."""

    level: str
    """"warning" (something was left out or may be wrong) or "info"."""
    message: str
    source: str = ""
    host: str = ""


@dataclass(frozen=True)
class ParsedInventory:
    """Everything one file (and what it includes) describes."""

    format: str
    path: str
    hosts: tuple[ImportedHost, ...]
    notices: tuple[ImportNotice, ...] = ()
    rule: str = ""
    """The client/site mapping rule in one sentence."""
    display_names: Mapping[str, str] = field(default_factory=dict)
    """Display name per new client slug or ``client/site`` (the group name as written)."""


@dataclass(frozen=True)
class ExistingHost:
    """The fields of a host row an import can change."""

    address: str
    port: int
    username: str
    transport: str
    tags: frozenset[str]
    options: Mapping[str, Any]


@dataclass(frozen=True)
class ExistingInventory:
    """A snapshot of the database, keyed by slug, ``client/site`` and full host name."""

    clients: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()
    hosts: Mapping[str, ExistingHost] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class PlannedChange:
    """One row of the preview."""

    action: str
    """"create", "update", "unchanged", or "left" (in the database, not in the file: kept)."""
    kind: str
    """"client", "site" or "host"."""
    name: str
    """Slug, ``client/site`` or ``client/site/host``."""
    changes: tuple[FieldChange, ...] = ()
    host: ImportedHost | None = None
    display_name: str = ""


@dataclass(frozen=True)
class ImportPlan:
    """The preview: every change, in the order it will be written, and the notices."""

    parsed: ParsedInventory
    changes: tuple[PlannedChange, ...]

    def count(self, action: str, kind: str | None = None) -> int:
        return sum(1 for c in self.changes if c.action == action and kind in (None, c.kind))

    @property
    def has_writes(self) -> bool:
        return any(c.action in ("create", "update") for c in self.changes)

    def summary(self) -> str:
        parts = []
        for kind in ("client", "site", "host"):
            made = self.count("create", kind)
            upd = self.count("update", kind)
            same = self.count("unchanged", kind)
            left = f", {self.count('left', kind)} left as they are" if kind == "host" else ""
            parts.append(f"{kind}s: {made} new, {upd} updated, {same} unchanged{left}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.parsed.format,
            "path": self.parsed.path,
            "rule": self.parsed.rule,
            "summary": {
                action: {k: self.count(action, k) for k in ("client", "site", "host")}
                for action in ("create", "update", "unchanged", "left")
            },
            "changes": [
                {
                    "action": c.action,
                    "kind": c.kind,
                    "name": c.name,
                    "changes": {f.field: {"old": f.old, "new": f.new} for f in c.changes},
                    **(_host_dict(c.host) if c.host else {}),
                }
                for c in self.changes
            ],
            "notices": [
                {"level": n.level, "message": n.message, "source": n.source, "host": n.host}
                for n in self.parsed.notices
            ],
        }

    def render(self) -> list[str]:
        """The preview as plain lines (the CLI prints them; no colours, output is often piped)."""
        lines = [
            f"{self.parsed.format} inventory {self.parsed.path}",
            f"mapping: {self.parsed.rule}",
        ]
        for c in self.changes:
            detail = ""
            if c.action == "update":
                detail = "  " + ", ".join(f"{f.field}: {f.old!r} -> {f.new!r}" for f in c.changes)
            elif c.action == "create" and c.host is not None:
                h = c.host
                detail = f"  {h.transport}://{h.username}@{h.address}:{h.port}"
                if h.tags:
                    detail += "  tags=" + ",".join(sorted(h.tags))
            elif c.action == "create" and c.display_name and c.display_name != c.name:
                detail = f"  (from {c.display_name!r})"
            elif c.action == "left":
                detail = "  (not in the file: kept, imports never delete)"
            lines.append(f"  {c.action:<9} {c.kind:<6} {c.name}{detail}")
        for n in self.parsed.notices:
            where = f" [{n.source}]" if n.source else ""
            who = ""
            if n.host:
                hosts = n.host.split(", ")
                more = f" and {len(hosts) - 5} more" if len(hosts) > 5 else ""
                who = f" (hosts: {', '.join(hosts[:5])}{more})"
            lines.append(f"  {n.level}: {n.message}{who}{where}")
        lines.append(self.summary())
        return lines


def _host_dict(h: ImportedHost) -> dict[str, Any]:
    return {
        "host": {
            "address": h.address,
            "port": h.port,
            "user": h.username,
            "transport": h.transport,
            "tags": sorted(h.tags),
            "options": dict(h.options),
            "source": h.source,
            "placement": h.placement,
        }
    }


def merge_notices(notices: Iterable[ImportNotice]) -> tuple[ImportNotice, ...]:
    """One notice per (level, message, source), naming every host it concerns."""
    merged: dict[tuple[str, str, str], list[str]] = {}
    for n in notices:
        hosts = merged.setdefault((n.level, n.message, n.source), [])
        if n.host and n.host not in hosts:
            hosts.append(n.host)
    return tuple(
        ImportNotice(level, message, source, ", ".join(hosts))
        for (level, message, source), hosts in merged.items()
    )


def normalize_host(host: ImportedHost) -> ImportedHost:
    """The host as the store keeps it, checked by the same rules as ``mssp host add``
    (mssp.store.names): lower-case names and tags; InventoryError naming the source line."""
    path, line = _split_source(host.source)
    tags = frozenset(
        t for t in (_TAG_JUNK.sub("-", tag.lower()).lstrip("._-")[:63] for tag in host.tags) if t
    )
    try:
        names.check_slug(host.client, "client")
        names.check_slug(host.site, "site")
        name = names.check_host_name(host.name.lower())
        address = names.check_address(host.address)
        names.check_port(host.port)
        names.check_username(host.username)
        names.check_transport(host.transport)
        names.check_tags(tags)
        options = names.check_options(host.options)
    except UsageError as exc:
        raise InventoryError(f"host {host.name!r}: {exc.message}", path=path, line=line) from None
    return replace(host, name=name, address=address, tags=tags, options=options)


def _split_source(source: str) -> tuple[str | None, int | None]:
    if not source:
        return None, None
    path, sep, line = source.rpartition(":")
    if sep and line.isdigit():
        return path, int(line)
    return source, None


def parse_port(value: object, *, what: str, path: str, line: int | None) -> int:
    """An integer port from file text, or InventoryError naming file and line."""
    try:
        port = int(str(value).strip(), 10)
    except ValueError:
        raise InventoryError(
            f"{what}: {value!r} is not a port number", path=path, line=line
        ) from None
    if not 1 <= port <= 65535:
        raise InventoryError(f"{what}: {port} is outside 1-65535", path=path, line=line)
    return port


def make_plan(parsed: ParsedInventory, existing: ExistingInventory) -> ImportPlan:
    """Compare what the file says with what the database holds. Pure."""
    seen: dict[str, ImportedHost] = {}
    hosts = [normalize_host(h) for h in parsed.hosts]
    for host in hosts:
        other = seen.get(host.full_name)
        if other is not None:
            path, line = _split_source(host.source)
            raise InventoryError(
                f"host {host.full_name} is defined twice (also at {other.source})",
                path=path,
                line=line,
            )
        seen[host.full_name] = host
    changes: list[PlannedChange] = []
    for slug in _ordered(h.client for h in hosts):
        action = "unchanged" if slug in existing.clients else "create"
        changes.append(
            PlannedChange(action, "client", slug, display_name=parsed.display_names.get(slug, ""))
        )
    for key in _ordered(f"{h.client}/{h.site}" for h in hosts):
        action = "unchanged" if key in existing.sites else "create"
        changes.append(
            PlannedChange(action, "site", key, display_name=parsed.display_names.get(key, ""))
        )
    for host in hosts:
        old = existing.hosts.get(host.full_name)
        if old is None:
            changes.append(PlannedChange("create", "host", host.full_name, host=host))
            continue
        diff = tuple(_host_diff(old, host))
        action = "update" if diff else "unchanged"
        changes.append(PlannedChange(action, "host", host.full_name, diff, host=host))
    touched_sites = {f"{h.client}/{h.site}/" for h in hosts}
    for full_name in sorted(existing.hosts):
        if full_name not in seen and full_name[: full_name.rindex("/") + 1] in touched_sites:
            changes.append(PlannedChange("left", "host", full_name))
    return ImportPlan(parsed, tuple(changes))


def merged_fields(old: ExistingHost, new: ImportedHost) -> dict[str, Any]:
    """The row values after an update, by the merge rule in this module's docstring."""
    return {
        "address": new.address,
        "port": new.port,
        "username": new.username,
        "transport": new.transport,
        "tags": old.tags | {t.lower() for t in new.tags},
        "options": {**dict(old.options), **dict(new.options)},
    }


def _host_diff(old: ExistingHost, new: ImportedHost) -> Iterable[FieldChange]:
    merged = merged_fields(old, new)
    for name in ("address", "port", "username", "transport"):
        if getattr(old, name) != merged[name]:
            yield FieldChange(name, getattr(old, name), merged[name])
    if merged["tags"] != old.tags:
        yield FieldChange("tags", ",".join(sorted(old.tags)), ",".join(sorted(merged["tags"])))
    if merged["options"] != dict(old.options):
        yield FieldChange("options", dict(old.options), merged["options"])


def _ordered(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
