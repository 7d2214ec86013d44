"""The lab's plan as pure values: which clients, sites and hosts exist, their names and addresses.

Addressing (all inside 198.18.0.0/15, the benchmarking range, or the loopback of a site's own
network namespace; nothing here ever touches another network):

- direct site number ``n`` (1..254): a veth pair between the root namespace (``mssplab<n>``,
  198.18.n.1/24) and the site's namespace (``eth0``, 198.18.n.2/24); host ``i`` (1..240) is the
  extra address 198.18.n.(10+i) on the site side, where its sshd listens on port 22.
- the relay-only site: a namespace with no veth to the core at all. Its hosts listen on
  127.0.1.(10+i) on the site's own loopback, reachable only from inside the site, i.e. by the
  site's relay agent. Its uplink (made by mssp/lab/relaylink.py, `mssp lab relay up`):
  a veth ``mssplabu<n>`` with 198.19.n.1/30 in the root namespace (where the relay listens, and
  its only root-side service) and 198.19.n.2/30 in the site; the site's rule table gets
  "ipproto tcp dport 18443 to 198.19.n.1 lookup main" (rule pref 900) so the agent can dial out
  to the relay and nothing else (netfilter and tc actions are not available on these machines;
  policy rules are). The hosts never listen on the uplink, so nothing in the root namespace
  reaches them.
- with ``--windows``, the first direct site also holds a SIMULATED Windows host (the WinRM
  helper's WS-Management endpoint with recorded replies, not Windows) at 198.18.n.9:5986 (HTTPS).
"""

from __future__ import annotations

from dataclasses import dataclass

from mssp.errors import UsageError

CLIENTS = (
    ("lab-acme", "Acme Corp (lab)"),
    ("lab-globex", "Globex (lab)"),
    ("lab-initech", "Initech (lab)"),
    ("lab-umbrella", "Umbrella (lab)"),
    ("lab-hooli", "Hooli (lab)"),
)
# role name prefix -> tag: a small office's usual servers
ROLES = (("web", "web"), ("db", "db"), ("files", "fileserver"), ("app", "app"), ("mail", "mail"))
MAX_DIRECT_SITES = 254
MAX_HOSTS_PER_SITE = 240
NETNS_PREFIX = "mssp-lab-"
VETH_PREFIX = "mssplab"
WINRM_PORT = 5986


@dataclass(frozen=True)
class LabSpec:
    """What the user asked for."""

    sites: int = 2
    """Number of sites in total (the relay-only one included)."""
    hosts_per_site: int = 5
    relay_only_site: bool = True
    """Make the last site reachable only from inside (by its future relay agent)."""
    windows_host: bool = False
    """Add a simulated Windows host (WS-Management endpoint, recorded replies) to a direct site."""

    def validate(self) -> None:
        if not 1 <= self.hosts_per_site <= MAX_HOSTS_PER_SITE:
            raise UsageError(f"--hosts-per-site must be 1..{MAX_HOSTS_PER_SITE}")
        if not 1 <= self.sites <= MAX_DIRECT_SITES:
            raise UsageError(f"--sites must be 1..{MAX_DIRECT_SITES}")
        if self.relay_only_site and self.sites < 2:
            raise UsageError(
                "a relay-only site needs --sites 2 or more (or pass --no-relay-only-site)"
            )


@dataclass(frozen=True)
class HostPlan:
    """One lab host: an sshd in its own namespaces inside its site."""

    key: str
    """Short unique id within the lab (s1h3): directory and state key."""
    client: str
    site: str
    name: str
    hostname: str
    """The host's UTS hostname."""
    address: str
    """Where its sshd listens (port 22)."""
    tags: tuple[str, ...]
    transport: str = "ssh"
    port: int = 22

    @property
    def full_name(self) -> str:
        return f"{self.client}/{self.site}/{self.name}"


@dataclass(frozen=True)
class SitePlan:
    """One lab site: a network namespace holding its hosts."""

    number: int
    client: str
    client_name: str
    slug: str
    netns: str
    reach: str
    """"direct" (veth to the core) or "relay" (no path from the core)."""
    hosts: tuple[HostPlan, ...]
    veth_root: str | None = None
    root_address: str | None = None
    """Root-namespace side of the veth (198.18.n.1), None for the relay-only site."""
    site_address: str | None = None
    windows: HostPlan | None = None
    """The simulated Windows host of this site, if any (never a real Windows)."""

    @property
    def full_name(self) -> str:
        return f"{self.client}/{self.slug}"


def plan(spec: LabSpec) -> tuple[SitePlan, ...]:
    """All sites and hosts for a spec, deterministic."""
    spec.validate()
    sites: list[SitePlan] = []
    used: dict[str, int] = {}
    windows_placed = False
    for index in range(spec.sites):
        number = index + 1
        client, client_name = CLIENTS[index % len(CLIENTS)]
        relay = spec.relay_only_site and index == spec.sites - 1
        count = used.get(client, 0)
        used[client] = count + 1
        slug = "branch" if relay else ("hq" if count == 0 else f"site{count + 1}")
        hosts = []
        for i in range(1, spec.hosts_per_site + 1):
            role, tag = ROLES[(i - 1) % len(ROLES)]
            name = f"{role}{(i - 1) // len(ROLES) + 1}"
            address = f"127.0.1.{10 + i}" if relay else f"198.18.{number}.{10 + i}"
            hosts.append(
                HostPlan(
                    key=f"s{number}h{i}",
                    client=client,
                    site=slug,
                    name=name,
                    hostname=f"{name}-{slug}-{client.removeprefix('lab-')}",
                    address=address,
                    tags=("lab", "linux", tag),
                )
            )
        windows = None
        if spec.windows_host and not relay and not windows_placed:
            windows_placed = True
            windows = HostPlan(
                key=f"s{number}win",
                client=client,
                site=slug,
                name="win1",
                hostname="WIN-LAB01",
                address=f"198.18.{number}.9",
                tags=("lab", "windows", "simulated"),
                transport="winrm",
                port=WINRM_PORT,
            )
        sites.append(
            SitePlan(
                number=number,
                client=client,
                client_name=client_name,
                slug=slug,
                netns=f"{NETNS_PREFIX}s{number}",
                reach="relay" if relay else "direct",
                hosts=tuple(hosts),
                veth_root=None if relay else f"{VETH_PREFIX}{number}",
                root_address=None if relay else f"198.18.{number}.1",
                site_address=None if relay else f"198.18.{number}.2",
                windows=windows,
            )
        )
    return tuple(sites)
