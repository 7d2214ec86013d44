"""The lab's shared lower layer: built once per `lab up`, stacked under every host's overlay.

It holds the lab apt repository (the only apt source), the old package versions installed, the
admin user, the hosts' reboot program (mssp-lab-reboot), and no machine host keys or password
hashes (see base-layer.sh). It lives on a tmpfs mounted in the root namespace: overlayfs refuses a
lower layer inside another lower layer ("/") with ELOOP, so it cannot sit on the root filesystem.
`lab down` unmounts it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from mssp.errors import LabError
from mssp.lab.aptrepo import REPO_PATH_IN_HOST, build_repository
from mssp.lab.keys import LabKeys, write_secret

BASE_SCRIPT = Path(__file__).with_name("base-layer.sh")
REBOOT_SCRIPT = Path(__file__).with_name("lab-reboot.sh")
REBOOT_COMMAND = "/usr/sbin/mssp-lab-reboot"
"""The program inside every lab host that reboots it (see lab-reboot.sh, host-supervisor.sh)."""
BASE_MOUNT_SOURCE = "mssp-lab-base"


async def run_tool(*args: str, what: str, timeout: float = 120) -> None:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise LabError(f"{what} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = out.decode(errors="replace").strip().splitlines()[-5:]
        raise LabError(f"{what} failed: {' | '.join(tail)}")


async def build_base_layer(directory: Path, keys: LabKeys) -> Path:
    """The shared lower layer every host's overlay stacks on (see base-layer.sh)."""
    base = directory / "base"
    await unmount_base(directory)
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(mode=0o700)
    # The layer must not live on the root filesystem: overlayfs refuses a lower layer inside
    # another lower layer ("/") with ELOOP. A tmpfs in the root namespace, unmounted by `down`.
    await run_tool(
        "mount", "-t", "tmpfs", "-o", "mode=700", BASE_MOUNT_SOURCE, str(base), what="mount"
    )
    layer, work, mnt, seed = base / "layer", base / "work", base / "mnt", base / "seed"
    for d in (layer, work, mnt, seed):
        d.mkdir(parents=True, mode=0o700)
    await build_repository(layer / REPO_PATH_IN_HOST.lstrip("/"), base / "pkgs")
    write_secret(seed / "admin.pw", f"admin:{keys.admin_password}\n")
    (seed / "authorized_keys").write_text(keys.public_key + "\n")
    shutil.copyfile(REBOOT_SCRIPT, seed / "mssp-lab-reboot")
    try:
        await run_tool(
            "unshare", "--mount", "--pid", "--net", "--fork", "--kill-child",
            "--propagation", "private",
            "/bin/sh", str(BASE_SCRIPT), str(layer), str(work), str(mnt), str(seed),
            what="building the lab's base layer",
        )  # fmt: skip
    finally:
        shutil.rmtree(seed, ignore_errors=True)
        shutil.rmtree(base / "pkgs", ignore_errors=True)
    os.chmod(layer, 0o755)  # noqa: S103 it becomes the hosts' / (a lower layer's root dir mode shows)
    return layer


def lab_mounts() -> list[str]:
    """Mount points in this namespace that the lab made (its base-layer tmpfs)."""
    with open("/proc/self/mountinfo") as f:
        rows = [line.split(" - ", 1) for line in f]
    return [left.split()[4] for left, right in rows if right.split()[1] == BASE_MOUNT_SOURCE]


async def unmount_base(directory: Path, *, every: bool = False) -> None:
    """Unmount this lab's base-layer tmpfs (``every``: any lab's, when sweeping leftovers)."""
    base = str(directory / "base")
    for point in lab_mounts():
        if every or point == base:
            await run_tool("umount", "-l", point, what=f"unmounting {point}")
