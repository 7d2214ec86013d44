"""The lab's pure parts, without starting a lab: the generated apt repository, state records and
who owns lab leftovers."""

from __future__ import annotations

import hashlib
import subprocess

from mssp.lab.aptrepo import NEW_VERSION, OLD_VERSION, PACKAGES, build_repository
from mssp.lab.leftovers import HOST_DIR_PATTERN, Survey
from mssp.lab.state import HostState, LabState, ProcessRef, alive, load, save


async def test_the_lab_repository_is_a_valid_flat_apt_repository(tmp_path) -> None:
    repo = tmp_path / "repo"
    built = await build_repository(repo, tmp_path / "scratch")
    assert {(p.name, p.version) for p in built} == {
        (name, v) for name in PACKAGES for v in (OLD_VERSION, NEW_VERSION)
    }
    packages = (repo / "Packages").read_text()
    release = (repo / "Release").read_text()
    digest = hashlib.sha256((repo / "Packages").read_bytes()).hexdigest()
    assert f" {digest} {len((repo / 'Packages').read_bytes())} Packages" in release
    for pkg in built:
        deb = repo / pkg.filename
        info = subprocess.run(
            ["dpkg-deb", "--field", str(deb), "Package", "Version"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert info.stdout.split() == ["Package:", pkg.name, "Version:", pkg.version]
        stanza = packages.split(f"Filename: ./{pkg.filename}\n")[1].split("\n\n")[0]
        assert f"SHA256: {hashlib.sha256(deb.read_bytes()).hexdigest()}" in stanza
        # the index repeats the control file dpkg will record (apt hashes Installed-Size...)
        control = subprocess.run(
            ["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True
        ).stdout
        entry = packages.split(f"Filename: ./{pkg.filename}\n")[0].rsplit("\n\n", 1)[-1]
        assert entry == control and "Installed-Size: " in control


def test_state_round_trips_and_a_recycled_pid_is_not_alive(settings) -> None:
    (settings.data_dir / "lab").mkdir(parents=True)
    host = HostState(
        key="s1h1", client="lab-acme", site="hq", name="web1", hostname="web1-hq-acme",
        address="198.18.1.11", port=22, tags=["lab"], host_key="ssh-ed25519 AAAA",
        init=ProcessRef(pid=1, start_time=123456789),
    )  # fmt: skip
    state = LabState(
        mode="namespaces", created_at=1.0, spec={"sites": 1}, sites=[], hosts=[host],
        client_public_key="ssh-ed25519 BBBB",
    )  # fmt: skip
    save(settings, state)
    assert load(settings) == state
    # pid 1 exists, but it is not the process the lab started: never signalled as ours
    assert not alive(host.init)


def test_a_lab_is_owned_while_its_record_exists(tmp_path) -> None:
    live, lost, mine = (tmp_path / n / "lab" for n in ("live", "lost", "mine"))
    for d in (live, lost, mine):
        d.mkdir(parents=True)
    (live / "state.json").write_text("{}")
    (mine / "state.json").write_text("{}")
    found = Survey(
        netns=("mssp-lab-s1",), veths=("mssplab1",), base_mounts=(),
        owners=(str(live), str(lost), str(mine)),
    )  # fmt: skip
    assert found.live_owners(mine) == [str(live)]  # lost: debris; mine: not "another" lab
    assert not found.empty and "mssplab1" in found.describe()
    # a host's supervisor (or the Windows endpoint) names its lab dir on its command line
    for arg in (f"{live}/hosts/s1h3", f"{live}/hosts/s1win/users"):
        match = HOST_DIR_PATTERN.match(arg)
        assert match is not None and match.group(1) == str(live)
    assert HOST_DIR_PATTERN.match("/usr/sbin/sshd") is None
