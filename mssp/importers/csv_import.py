"""Read a CSV inventory with a header row: client, site, name, address, port, user, transport, tags.

Columns may come in any order; ``name`` and ``address`` are required, ``client`` and ``site``
unless ``--client``/``--site`` are given (a non-empty cell wins over the flag only when the flag is
absent). ``tags`` holds several tags separated by ``;``, ``|`` or spaces (or commas inside a
quoted cell). Client and site cells are turned into slugs (``Acme Dental`` → ``acme-dental``).
Unknown columns are an error: a typo must not silently drop data.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from mssp.errors import InventoryError
from mssp.importers.files import read_text
from mssp.importers.plan import ImportedHost, ParsedInventory, parse_port, slugify

COLUMNS = ("client", "site", "name", "address", "port", "user", "transport", "tags")
_ALIASES = {"host": "name", "hostname": "name", "username": "user", "ip": "address"}
_TAG_SPLIT = re.compile(r"[;|,\s]+")
_DEFAULT_PORTS = {"ssh": 22, "winrm": 5986}


def read_csv(path: Path, *, client: str | None = None, site: str | None = None) -> ParsedInventory:
    """Parse a CSV file; InventoryError naming file and line for the first bad row."""
    text = read_text(path, allow_bom=True)
    where = str(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header_row = next(reader, None)
    except csv.Error as exc:
        raise InventoryError(f"bad CSV: {exc}", path=where, line=reader.line_num) from None
    if header_row is None:
        raise InventoryError("empty file: expected a header row", path=where, line=1)
    header = [_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header_row]
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise InventoryError(
            f"unknown column(s) {', '.join(map(repr, unknown))}; expected {', '.join(COLUMNS)}",
            path=where,
            line=1,
        )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InventoryError(f"column(s) given twice: {', '.join(dupes)}", path=where, line=1)
    for needed, flag in (("name", None), ("address", None), ("client", client), ("site", site)):
        if needed not in header and not flag:
            hint = f" (or pass --{needed})" if needed in ("client", "site") else ""
            raise InventoryError(f"missing column {needed!r}{hint}", path=where, line=1)
    hosts: list[ImportedHost] = []
    names: dict[str, str] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InventoryError(f"bad CSV: {exc}", path=where, line=reader.line_num) from None
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InventoryError(
                f"{len(row)} cells, but the header has {len(header)}", path=where, line=line
            )
        cells = {h: v.strip() for h, v in zip(header, row, strict=True)}
        hosts.append(_host(cells, client, site, names, where, line))
    return ParsedInventory(
        format="csv",
        path=where,
        hosts=tuple(hosts),
        rule=(
            f"every row goes to {client or '<client column>'}/{site or '<site column>'}"
            if client or site
            else "the client and site columns name each host's place (as slugs)"
        ),
        display_names=names,
    )


def _host(
    cells: dict[str, str],
    client: str | None,
    site: str | None,
    names: dict[str, str],
    where: str,
    line: int,
) -> ImportedHost:
    def need(col: str) -> str:
        value = cells.get(col, "")
        if not value:
            raise InventoryError(f"empty {col!r} cell", path=where, line=line)
        return value

    client_cell = client or need("client")
    site_cell = site or need("site")
    client_slug, site_slug = slugify(client_cell), slugify(site_cell)
    if not client_slug or not site_slug:
        raise InventoryError("client and site need letters or digits", path=where, line=line)
    names.setdefault(client_slug, client_cell)
    names.setdefault(f"{client_slug}/{site_slug}", site_cell)
    transport = (cells.get("transport") or "ssh").lower()
    if transport not in _DEFAULT_PORTS:
        raise InventoryError(f"transport {transport!r} is not ssh or winrm", path=where, line=line)
    port = _DEFAULT_PORTS[transport]
    if cells.get("port"):
        port = parse_port(cells["port"], what="port", path=where, line=line)
    tags = frozenset(t.lower() for t in _TAG_SPLIT.split(cells.get("tags", "")) if t)
    default_user = "Administrator" if transport == "winrm" else "root"
    options = {"scheme": "http" if port == 5985 else "https"} if transport == "winrm" else {}
    return ImportedHost(
        client=client_slug,
        site=site_slug,
        name=need("name"),
        address=need("address"),
        port=port,
        username=cells.get("user") or default_user,
        transport=transport,
        tags=tags,
        options=options,
        source=f"{where}:{line}",
        placement="--client/--site" if client and site else "csv columns",
    )
