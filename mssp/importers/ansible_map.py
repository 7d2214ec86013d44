"""Map one Ansible host's merged variables to an mssp host: address, port, user, transport, place.

Connection variables: ``ansible_host``/``ansible_port``/``ansible_user``; the legacy
``ansible_ssh_*`` names win when both are set, as in Ansible's ssh plugin (``ansible_winrm_*``
likewise for winrm). ``ansible_connection=winrm`` gives transport winrm; ``ansible_winrm_scheme``,
``_transport`` (ntlm/basic), ``_ca_trust_path`` and ``_message_encryption`` become the WinRM
connector's host options (scheme, auth, ca_file, message_encryption);
``server_cert_validation=ignore`` is refused with a warning (mssp always validates or pins the
certificate). Other connections (local, docker, psrp...) are skipped with a warning.
"""

from __future__ import annotations

import getpass
from typing import Any

from mssp.errors import InventoryError
from mssp.importers.ansible_model import Inventory, VaultValue
from mssp.importers.plan import ImportedHost, ImportNotice, parse_port, slugify

SSH_CONNECTIONS = {"ssh", "smart", "paramiko", "paramiko_ssh"}
WINRM_AUTH = ("ntlm", "basic")
DEFAULT_SITE = "main"


def _pick(values: dict[str, Any], *names: str) -> tuple[str, Any] | None:
    """The last of ``names`` that is set, as Ansible's connection options resolve aliases."""
    found = None
    for name in names:
        if values.get(name) is not None:
            found = (name, values[name])
    return found


def map_host(
    inv: Inventory,
    name: str,
    values: dict[str, Any],
    sources: dict[str, str],
    client: str | None,
    site: str | None,
    local_user: str | None,
    names: dict[str, str],
    notices: list[ImportNotice],
) -> ImportedHost | None:
    """The mssp host for Ansible host ``name`` (None, with a warning, if it cannot be one)."""
    source = inv.hosts[name].source
    path, _, line_text = source.rpartition(":")
    line = int(line_text) if line_text.isdigit() else None
    path = path if line is not None else source

    connection = str(values.get("ansible_connection") or "ssh").lower()
    if connection == "winrm":
        transport = "winrm"
    elif connection in SSH_CONNECTIONS:
        transport = "ssh"
    else:
        notices.append(
            ImportNotice(
                "warning",
                f"ansible_connection={connection} is not ssh or winrm: host skipped",
                sources.get("ansible_connection", source),
                name,
            )
        )
        return None
    prefix = "ansible_winrm" if transport == "winrm" else "ansible_ssh"
    addr = _pick(values, "ansible_host", f"{prefix}_host")
    user = _pick(values, "ansible_user", f"{prefix}_user")
    port_var = _pick(values, "ansible_port", f"{prefix}_port")
    address = _plain(addr, name, name, sources, notices) or name
    options: dict[str, str] = {}
    scheme = values.get("ansible_winrm_scheme")
    default_port = 22
    if transport == "winrm":
        default_port = 5985 if str(scheme).lower() == "http" else 5986
    port = default_port
    if port_var is not None and _is_template(port_var[1]):
        _template_notice(port_var[0], str(default_port), name, sources, notices)
    elif port_var is not None and not isinstance(port_var[1], VaultValue):
        var_src = sources.get(port_var[0], source)
        vpath, _, vline = var_src.rpartition(":")
        port = parse_port(
            _scalar(port_var[0], port_var[1], name, sources),
            what=f"{port_var[0]} of {name}",
            path=vpath if vline.isdigit() else var_src,
            line=int(vline) if vline.isdigit() else None,
        )
    if transport == "winrm":
        options = _winrm_options(name, values, port, sources, notices)
    default_user = "Administrator" if transport == "winrm" else (local_user or getpass.getuser())
    username = _plain(user, name, default_user, sources, notices)
    key_file = values.get("ansible_ssh_private_key_file") or values.get("ansible_private_key_file")
    if transport == "ssh" and isinstance(key_file, str) and key_file:
        options["identity_file"] = key_file

    client_slug, site_slug, placement, used = _place(inv, name, values, client, site, path, line)
    for group in sorted(used):
        key = client_slug if slugify(group) == client_slug else f"{client_slug}/{site_slug}"
        names.setdefault(key, group)
    groups = inv.host_groups(name) - {"ungrouped"} - used
    tags = {g.lower() for g in groups}
    extra = values.get("mssp_tags")
    if isinstance(extra, str):
        tags |= {t.strip().lower() for t in extra.split(",") if t.strip()}
    elif isinstance(extra, list):
        tags |= {
            str(t).strip().lower() for t in extra if isinstance(t, str | int) and str(t).strip()
        }
    return ImportedHost(
        client=client_slug,
        site=site_slug,
        name=name,
        address=address,
        port=port,
        username=username,
        transport=transport,
        tags=frozenset(tags),
        options=options,
        source=source,
        placement=placement,
    )


def _plain(
    picked: tuple[str, Any] | None,
    host: str,
    default: str,
    sources: dict[str, str],
    notices: list[ImportNotice],
) -> str:
    if picked is None:
        return default
    var, value = picked
    if isinstance(value, VaultValue):
        notices.append(
            ImportNotice(
                "warning",
                f"{var} is vault-encrypted; using {default!r} instead",
                sources.get(var, ""),
                host,
            )
        )
        return default
    if _is_template(value):
        _template_notice(var, default, host, sources, notices)
        return default
    return _scalar(var, value, host, sources)


def _scalar(var: str, value: Any, host: str, sources: dict[str, str]) -> str:
    """A connection variable as text; lists and mappings are refused (and never str()-ed:
    YAML aliases can make one that prints to gigabytes)."""
    if isinstance(value, str | int | float | bool):
        return str(value)
    where = sources.get(var, "")
    vpath, _, vline = where.rpartition(":")
    raise InventoryError(
        f"{var} of {host} must be a single value, not a {type(value).__name__}",
        path=vpath if vline.isdigit() else (where or None),
        line=int(vline) if vline.isdigit() else None,
    )


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _template_notice(
    var: str, default: str, host: str, sources: dict[str, str], notices: list[ImportNotice]
) -> None:
    notices.append(
        ImportNotice(
            "warning",
            f"{var} is a Jinja template, which mssp does not evaluate: using {default!r}; "
            "fix it after the import (mssp host set) or render the inventory with "
            "`ansible-inventory --list -y` first",
            sources.get(var, ""),
            host,
        )
    )


def _winrm_options(
    name: str,
    values: dict[str, Any],
    port: int,
    sources: dict[str, str],
    notices: list[ImportNotice],
) -> dict[str, str]:
    """ansible_winrm_* as the options mssp's WinRM connector reads (scheme, auth, ca_file...)."""

    def warn(var: str, message: str) -> None:
        notices.append(ImportNotice("warning", message, sources.get(var, ""), name))

    def plain(var: str) -> str | None:
        value = values.get(var)
        if value is None or isinstance(value, VaultValue):
            return None
        if _is_template(value):
            _template_notice(var, "the default", name, sources, notices)
            return None
        if isinstance(value, list):
            return ",".join(_scalar(var, item, name, sources) for item in value)
        return _scalar(var, value, name, sources)

    # Ansible's default: https, unless the port is 5985
    scheme = (plain("ansible_winrm_scheme") or ("http" if port == 5985 else "https")).lower()
    options = {"scheme": scheme}
    transports = [t.strip().lower() for t in (plain("ansible_winrm_transport") or "").split(",")]
    transports = [t for t in transports if t]
    supported = [t for t in transports if t in WINRM_AUTH]
    if supported:
        options["auth"] = supported[0]
    elif transports:
        warn(
            "ansible_winrm_transport",
            f"WinRM transport {','.join(transports)} is not supported (ntlm, basic): "
            "mssp will use ntlm",
        )
    if scheme == "http" and options.get("auth") == "basic":
        warn(
            "ansible_winrm_transport",
            "WinRM Basic auth over plain HTTP: imported, but mssp refuses to connect like "
            "this (use HTTPS, or NTLM with message encryption)",
        )
    validation = (plain("ansible_winrm_server_cert_validation") or "validate").lower()
    if validation == "ignore":
        warn(
            "ansible_winrm_server_cert_validation",
            "server_cert_validation=ignore is not imported: mssp always checks the "
            "certificate; pin it (cert_sha256) or give its CA (ca_file)",
        )
    ca = plain("ansible_winrm_ca_trust_path")
    if ca:
        options["ca_file"] = ca
    encryption = plain("ansible_winrm_message_encryption")
    if encryption:
        options["message_encryption"] = encryption.lower()
    path = plain("ansible_winrm_path")
    if path and path != "/wsman":
        warn("ansible_winrm_path", f"WinRM path {path} is not supported: mssp uses /wsman")
    return options


def _place(
    inv: Inventory,
    name: str,
    values: dict[str, Any],
    client: str | None,
    site: str | None,
    path: str,
    line: int | None,
) -> tuple[str, str, str, set[str]]:
    """(client slug, site slug, why, groups used for placement) for one host."""
    if client and site:
        return client, site, "--client/--site", set()
    var_client, var_site = values.get("mssp_client"), values.get("mssp_site")
    for var, value in (("mssp_client", var_client), ("mssp_site", var_site)):
        if value is not None and not isinstance(value, str | int):
            raise InventoryError(
                f"host {name!r}: {var} must be a name, not a {type(value).__name__}",
                path=path,
                line=line,
            )
    used: set[str] = set()
    why: list[str] = []
    member = inv.host_groups(name)
    top = [g for g in inv.groups["all"].children if g in member and g != "ungrouped"]

    def choose(cands: list[str], what: str) -> str:
        if len(cands) > 1:
            with_children = [g for g in cands if inv.groups[g].children]
            if len(with_children) == 1:
                cands = with_children
        if len(cands) != 1:
            found = ", ".join(cands) if cands else "none"
            raise InventoryError(
                f"host {name!r}: cannot tell its {what} from its groups ({found}); set "
                f"mssp_{what} for it or pass --{what}",
                path=path,
                line=line,
            )
        return cands[0]

    if client:
        client_slug, client_group = client, None
        why.append("--client")
    elif var_client:
        client_slug, client_group = slugify(str(var_client)), None
        why.append("mssp_client var")
    else:
        client_group = choose(top, "client")
        client_slug = slugify(client_group)
        used.add(client_group)
        why.append(f"group {client_group}")
    if site:
        site_slug = site
        why.append("--site")
    elif var_site:
        site_slug = slugify(str(var_site))
        why.append("mssp_site var")
    elif client_group is None and client:
        site_group = choose(top, "site")
        site_slug = slugify(site_group)
        used.add(site_group)
        why.append(f"group {site_group}")
    elif client_group is None:
        site_slug = DEFAULT_SITE
        why.append(f"default site {DEFAULT_SITE!r}")
    else:
        kids = [g for g in inv.groups[client_group].children if g in member]
        if kids:
            site_group = choose(kids, "site")
            site_slug = slugify(site_group)
            used.add(site_group)
            why.append(f"group {site_group}")
        else:
            site_slug = DEFAULT_SITE
            why.append(f"default site {DEFAULT_SITE!r}")
    return client_slug, site_slug, " + ".join(why), used
