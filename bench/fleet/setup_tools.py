"""Everything each tool needs to reach the bench hosts: a throw-away mssp home (init, clients,
sites, CSV import, credential, host keys pinned by a first run), Ansible INI and pyinfra
inventories, host lists; and the command line of every (tool, mode) the bench times."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from arena import Arena

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROJECT_PY = REPO / ".venv" / "bin" / "python"
MSSP = REPO / ".venv" / "bin" / "mssp"
ANSIBLE = REPO / ".venv" / "bin" / "ansible"
CLIENTS = 10
"""Bench hosts are spread over this many clients (one site each), like a consultant's fleet."""
PASSPHRASE = "mssp-fleet-bench-throwaway"
_PYINFRA_OK = re.compile(r"^\[(\S+)\]\s+ok$", re.MULTILINE)
_ANSIBLE_OK = re.compile(r"^\S+ \| CHANGED \| rc=0 >>\nok$", re.MULTILINE)


@dataclass(frozen=True)
class MsspVariant:
    """mssp warm as something else: mssp imported from another source tree, extra arguments."""

    src: str | None
    """A directory holding an ``mssp`` package, put first on PYTHONPATH (None: this checkout)."""
    args: tuple[str, ...]
    """Extra arguments for clients/mssp_warm.py."""


@dataclass(frozen=True)
class Setup:
    scratch: Path
    arena: Arena
    sizes: tuple[int, ...]
    tools_python: Path
    mssp_src: str | None = None
    """A directory holding the ``mssp`` package every mssp invocation imports (PYTHONPATH), so
    that the bench measures a fixed snapshot while the checkout changes; None: this checkout."""

    @property
    def mssp_home(self) -> Path:
        return self.scratch / "mssp-home"

    def hosts_file(self, n: int) -> Path:
        return self.scratch / f"hosts-{n}.txt"

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MSSP_", "ANSIBLE_"))}
        env["HOME"] = "/root"
        # An installed tool runs from cached bytecode; this session's PYTHONDONTWRITEBYTECODE
        # would recompile every module on each start (~0.2 s for mssp). The cache lives in the
        # scratch directory (no __pycache__ in the work tree); an untimed warm-up fills it.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.scratch / "pycache")
        return env

    def mssp_env(self) -> dict[str, str]:
        env = dict(self.base_env(), MSSP_HOME=str(self.mssp_home), MSSP_VAULT_PASSPHRASE=PASSPHRASE)
        if self.mssp_src:
            env["PYTHONPATH"] = self.mssp_src
        return env

    def ansible_env(self, control_dir: Path) -> dict[str, str]:
        return dict(
            self.base_env(),
            ANSIBLE_HOME=str(self.scratch / "ansible-home"),
            ANSIBLE_LOCAL_TEMP=str(self.scratch / "ansible-tmp"),
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_HOST_KEY_CHECKING="True",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        )


def host_name(i: int) -> str:
    return f"h{i + 1:04d}"


def client_of(i: int) -> str:
    return f"bench-c{i % CLIENTS:02d}"


def size_tag(n: int) -> str:
    return f"n{n}"


def _mssp(setup: Setup, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [str(MSSP), *args],
        env=setup.mssp_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"mssp {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def prepare(setup: Setup) -> None:
    """Write the inventories and build the mssp home; pin host keys with a first, untimed run."""
    top = max(setup.sizes)
    addrs = setup.arena.addresses(top)
    for n in setup.sizes:
        setup.hosts_file(n).write_text("".join(a + "\n" for a in addrs[:n]))
        ssh_args = f"-o UserKnownHostsFile={setup.arena.known_hosts} -o StrictHostKeyChecking=yes"
        (setup.scratch / f"ansible-{n}.ini").write_text(
            "[bench]\n"
            + "".join(a + "\n" for a in addrs[:n])
            + "\n[bench:vars]\nansible_user=root\n"
            + f"ansible_ssh_private_key_file={setup.arena.client_key}\n"
            + f"ansible_ssh_common_args='{ssh_args}'\n"
        )
        (setup.scratch / f"pyinfra_{n}.py").write_text(f"hosts = {json.dumps(addrs[:n])}\n")
    for folder in ("ansible-home", "ansible-tmp"):
        (setup.scratch / folder).mkdir(exist_ok=True)

    _mssp(setup, "init")
    for c in range(min(CLIENTS, top)):
        client = client_of(c)
        _mssp(setup, "client", "add", client)
        _mssp(setup, "site", "add", f"{client}/main")
    rows = ["client,site,name,address,port,user,transport,tags"]
    for i, addr in enumerate(addrs):
        tags = " ".join(size_tag(n) for n in setup.sizes if i < n)
        rows.append(f"{client_of(i)},main,{host_name(i)},{addr},22,root,ssh,{tags}")
    csv = setup.scratch / "inventory.csv"
    csv.write_text("\n".join(rows) + "\n")
    _mssp(setup, "inventory", "import", str(csv))
    _mssp(
        setup, "cred", "add", "default", "--ssh-key", str(setup.arena.client_key), "--user", "root"
    )
    # first contact: accept-new pins every host key in the database; the timed runs then check
    # every key against its pin (as every later run of a real fleet does)
    out = _mssp(setup, "exec", f"tag:{size_tag(top)}", "--json", "--", "true", timeout=600)
    counts = json.loads(out)["counts"]
    if counts.get("ok") != top:
        raise RuntimeError(f"pinning run did not reach every host: {counts}")


def cold_command(setup: Setup, tool: str, n: int, run_dir: Path) -> tuple[list[str], dict]:
    """argv and environment of one cold invocation of ``tool`` on the first ``n`` hosts."""
    a = setup.arena
    common = [
        "--hosts-file", str(setup.hosts_file(n)), "--key", str(a.client_key),
        "--known-hosts", str(a.known_hosts),
    ]  # fmt: skip
    clients = HERE / "clients"
    if tool == "asyncssh":
        return [str(PROJECT_PY), str(clients / "asyncssh_gather.py"), *common], setup.base_env()
    if tool == "parallel-ssh":
        return [str(setup.tools_python), str(clients / "pssh_run.py"), *common], setup.base_env()
    if tool == "fabric":
        return [str(setup.tools_python), str(clients / "fabric_run.py"), *common], setup.base_env()
    if tool == "mssp":
        argv = [str(MSSP), "exec", f"tag:{size_tag(n)}", "--json", "--", "echo", "ok"]
        return argv, setup.mssp_env()
    if tool == "pyinfra":
        pyinfra = setup.tools_python.parent / "pyinfra"
        argv = [
            str(pyinfra), str(setup.scratch / f"pyinfra_{n}.py"), "exec", "-y",
            "--ssh-user", "root", "--ssh-key", str(a.client_key),
            "--data", f"ssh_known_hosts_file={a.known_hosts}",
            "--data", "ssh_strict_host_key_checking=yes",
            "--", "echo", "ok",
        ]  # fmt: skip
        return argv, setup.base_env()
    if tool == "ansible":
        argv = [
            str(ANSIBLE), "bench", "-i", str(setup.scratch / f"ansible-{n}.ini"),
            "-m", "raw", "-a", "echo ok", "-f", "50",
        ]  # fmt: skip
        run_dir.mkdir(parents=True, exist_ok=True)
        return argv, setup.ansible_env(run_dir)
    raise ValueError(tool)


def warm_command(
    setup: Setup, tool: str, n: int, runs: int, variant: MsspVariant | None = None
) -> tuple[list[str], dict]:
    """argv and environment of the one process that times ``runs`` warm runs of ``tool``."""
    a = setup.arena
    common = [
        "--hosts-file", str(setup.hosts_file(n)), "--key", str(a.client_key),
        "--known-hosts", str(a.known_hosts), "--mode", "warm", "--runs", str(runs),
    ]  # fmt: skip
    clients = HERE / "clients"
    if tool == "mssp":
        argv = [
            str(PROJECT_PY), str(clients / "mssp_warm.py"),
            "--target", f"tag:{size_tag(n)}", "--runs", str(runs),
        ]  # fmt: skip
        env = setup.mssp_env()
        if variant is not None:
            argv += variant.args
            if variant.src:
                env["PYTHONPATH"] = variant.src
        return argv, env
    if tool == "asyncssh":
        return [str(PROJECT_PY), str(clients / "asyncssh_gather.py"), *common], setup.base_env()
    if tool == "parallel-ssh":
        return [str(setup.tools_python), str(clients / "pssh_run.py"), *common], setup.base_env()
    raise ValueError(tool)


def count_ok(tool: str, stdout: str) -> int:
    """Hosts that answered "ok", read from the tool's own output."""
    if tool == "ansible":
        return len(_ANSIBLE_OK.findall(stdout))
    if tool == "pyinfra":
        return len(set(_PYINFRA_OK.findall(stdout)))
    if tool == "mssp":
        summary = json.loads(stdout)
        return sum(
            1 for h in summary["hosts"] if h["state"] == "ok" and h["stdout"].strip() == "ok"
        )
    last = stdout.strip().splitlines()[-1] if stdout.strip() else "{}"
    return int(json.loads(last).get("ok", 0))
