"""The inventory, credential and vault commands end to end (SQLite; CliRunner and subprocesses)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncssh
import click
import pytest
from click.testing import CliRunner, Result

from mssp.cli import cli

PASS = "cli test passphrase"
CANARY = "CANARY-cli-5e1d0b7a93-secret"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def run(home: Path):
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, passphrase: str | None = PASS) -> Result:
        env = {"MSSP_HOME": str(home), "MSSP_VAULT_PASSPHRASE": passphrase}
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def ready(run) -> None:
    """An initialised home with one client, site and three hosts."""
    assert run("init").exit_code == 0
    assert run("client", "add", "Acme Dental", "--timezone", "Europe/Berlin").exit_code == 0
    assert run("site", "add", "acme-dental/main-office").exit_code == 0
    for name, tag in (("fs01", "fileserver"), ("db01", "db"), ("web01", "web")):
        result = run(
            "host",
            "add",
            f"acme-dental/main-office/{name}",
            "--address",
            "192.0.2.10",
            "--user",
            "admin",
            "--tag",
            tag,
        )
        assert result.exit_code == 0, result.output


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


MINE = {"init", "client", "site", "host", "hosts", "cred", "vault"}


def test_every_command_has_help(run) -> None:
    paths = [p for p in _commands(cli) if p[0] in MINE]
    assert len(paths) > 20
    for path in paths:
        result = run(*path, "--help")
        assert result.exit_code == 0, path
        assert "Usage:" in result.output


def test_listings_have_json(run) -> None:
    for path in [
        ("client", "list"),
        ("site", "list"),
        ("host", "list"),
        ("cred", "list"),
        ("hosts",),
        ("host", "show"),
        ("client", "show"),
    ]:
        assert "--json" in run(*path, "--help").output, path


def test_init_creates_home_database_and_vault(run, home: Path) -> None:
    result = run("init", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["vault_state"] == "created"
    assert (home / "mssp.db").exists() and (home / "vault.json").exists()
    assert (home / "config.toml").exists() and (home / "logs").is_dir()
    assert os.stat(home).st_mode & 0o777 == 0o700
    assert os.stat(home / "vault.json").st_mode & 0o777 == 0o600
    again = run("init", "--json")
    assert again.exit_code == 0 and json.loads(again.output)["vault_state"] == "existing (unlocked)"
    # init again with the wrong passphrase says so instead of pretending
    assert run("init", passphrase="wrong passphrase").exit_code == 1


def test_init_prompts_passphrase_twice(run, home: Path) -> None:
    result = run(
        "init", input="first one!\nmismatch!!\nnew-pass-123\nnew-pass-123\n", passphrase=None
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert "new-pass-123" not in result.output
    assert run("cred", "list").exit_code == 0
    added = run("cred", "add", "pw", "--password-stdin", input="x\n", passphrase="new-pass-123")
    assert added.exit_code == 0, added.output


def test_commands_before_init_explain(run) -> None:
    result = run("client", "list")
    assert result.exit_code == 2 and "mssp init" in result.output


def test_client_add_derives_slug_and_validates(run) -> None:
    run("init")
    result = run("client", "add", "Acme Dental", "--timezone", "Europe/Berlin", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["slug"] == "acme-dental"
    assert run("client", "add", "Acme Dental").exit_code == 3  # exists
    bad_tz = run("client", "add", "Foo", "--timezone", "Mars/Olympus")
    assert bad_tz.exit_code == 2 and "time zone" in bad_tz.output
    assert run("client", "add", "Foo", "--slug", "Not_A_Slug").exit_code == 2
    listed = json.loads(run("client", "list", "--json").output)
    assert [c["slug"] for c in listed] == ["acme-dental"]
    assert listed[0]["timezone"] == "Europe/Berlin"


def test_site_and_host_crud(run, ready) -> None:
    shown = json.loads(run("host", "show", "acme-dental/main-office/fs01", "--json").output)
    assert (shown["address"], shown["username"], shown["tags"]) == (
        "192.0.2.10",
        "admin",
        ["fileserver"],
    )
    changed = run(
        "host",
        "set",
        "acme-dental/main-office/fs01",
        "--port",
        "2222",
        "--tag",
        "x",
        "--untag",
        "fileserver",
        "--via",
        "relay",
        "--json",
    )
    assert changed.exit_code == 0, changed.output
    data = json.loads(changed.output)
    assert (data["port"], data["tags"], data["via"]) == (2222, ["x"], "relay")
    assert run("host", "add", "acme-dental/main-office/fs01", "--address", "h").exit_code == 3
    assert run("host", "add", "acme-dental/nowhere/h1", "--address", "h").exit_code == 3
    assert (
        run("host", "add", "acme-dental/main-office/h1", "--address", "-oProxyCommand=x").exit_code
        == 2
    )
    assert run("host", "add", "acme-dental/main-office", "--address", "h").exit_code == 2
    assert run("host", "show", "acme-dental/main-office/nope").exit_code == 3
    win = json.loads(
        run(
            "host",
            "add",
            "acme-dental/main-office/pc01",
            "--transport",
            "winrm",
            "--option",
            "scheme=https",
            "--json",
        ).output
    )
    assert (win["port"], win["address"], win["options"]) == (5986, "pc01", {"scheme": "https"})
    sites = json.loads(run("site", "list", "acme-dental", "--json").output)
    assert [(s["site"], s["hosts"]) for s in sites] == [("acme-dental/main-office", 4)]
    # removal: refused while not empty, confirmed, then complete
    assert run("site", "remove", "acme-dental/main-office", "--yes").exit_code == 2
    assert run("host", "remove", "acme-dental/main-office/pc01", input="n\n").exit_code == 1
    assert run("host", "remove", "acme-dental/main-office/pc01", "--yes").exit_code == 0
    removed = run("client", "remove", "acme-dental", "--force", "--yes", "--json")
    assert json.loads(removed.output) == {"clients": 1, "sites": 1, "hosts": 3, "credentials": 0}
    assert json.loads(run("host", "list", "--json").output) == []


def test_hosts_expression_preview(run, ready) -> None:
    result = run("hosts", "client:acme-dental,tag:web,!db*", "--json")
    assert result.exit_code == 0, result.output
    names = [h["full_name"] for h in json.loads(result.output)]
    assert names == ["acme-dental/main-office/fs01", "acme-dental/main-office/web01"]
    only_web = json.loads(run("hosts", "tag:web", "--json").output)
    assert [h["name"] for h in only_web] == ["web01"]
    bad = run("hosts", "foo:bar")
    assert bad.exit_code == 2 and "unknown selector" in bad.output


def test_cred_add_password_key_and_generate(run, ready, tmp_path: Path) -> None:
    pw = run(
        "cred",
        "add",
        "acme-dental/admin",
        "--password",
        "--user",
        "admin",
        input=f"{CANARY}\n{CANARY}\n",
    )
    assert pw.exit_code == 0, pw.output
    assert CANARY not in pw.output
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = tmp_path / "id_ed25519"
    key_path.write_bytes(
        key.export_private_key("openssh", passphrase="key-pass", rounds=4, ignore_few_rounds=True)
    )
    wrong = run("cred", "add", "acme-dental/key", "--ssh-key", str(key_path), input="nope\n")
    assert wrong.exit_code == 2 and "wrong passphrase" in wrong.output
    imported = run(
        "cred", "add", "acme-dental/key", "--ssh-key", str(key_path), "--json", input="key-pass\n"
    )
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.output.split("\n", 1)[1])["public_key"] == (
        key.export_public_key("openssh").decode().strip()
    )
    generated = run("cred", "add", "deploy", "--generate")
    assert generated.exit_code == 0 and "ssh-ed25519 AAAA" in generated.output
    assert run("cred", "add", "x", "--password", "--generate").exit_code == 2
    assert run("cred", "add", "x").exit_code == 2
    assert run("cred", "add", "acme-dental/admin", "--password-stdin", input="a\n").exit_code == 3
    listing = run("cred", "list", "--json")
    assert CANARY not in listing.output and "PRIVATE KEY" not in listing.output
    refs = sorted(c["ref"] for c in json.loads(listing.output))
    assert refs == ["acme-dental/admin", "acme-dental/key", "deploy"]
    used = run("host", "set", "acme-dental/main-office/fs01", "--credential", "admin", "--json")
    assert used.exit_code == 0, used.output
    assert run("cred", "remove", "acme-dental/admin", "--yes").exit_code == 2  # in use
    assert run("cred", "remove", "acme-dental/admin", "--yes", "--force").exit_code == 0


def test_wrong_vault_passphrase_stores_nothing(run, ready, home: Path) -> None:
    before = (home / "vault.json").read_bytes()
    result = run("cred", "add", "pw", "--password-stdin", input="abc\n", passphrase="not it!!")
    assert result.exit_code == 1 and "wrong vault passphrase" in result.output
    assert json.loads(run("cred", "list", "--json").output) == []
    assert (home / "vault.json").read_bytes() == before


def test_vault_passwd_and_rotate_key(run, ready) -> None:
    assert run("cred", "add", "pw", "--password-stdin", input="kept-secret\n").exit_code == 0
    changed = run("vault", "passwd", input="another passphrase\nanother passphrase\n")
    assert changed.exit_code == 0, changed.output
    assert run("vault", "rotate-key").exit_code == 1  # the old passphrase no longer opens it
    rotated = run("vault", "rotate-key", "--json", passphrase="another passphrase")
    assert json.loads(rotated.output) == {"credentials": 1, "key_version": 2}
    again = run(
        "cred",
        "rotate-passphrase",
        input="third passphrase\nthird passphrase\n",
        passphrase="another passphrase",
    )
    assert again.exit_code == 0, again.output
    assert (
        run(
            "cred", "update", "pw", "--password-stdin", input="new\n", passphrase="third passphrase"
        ).exit_code
        == 0
    )
    actions = [e["action"] for e in json.loads(run("audit", "list", "--json").output)]
    # each vault change is an intent entry written before it and an outcome entry after it
    assert actions == [
        "cred.add",
        "vault.passwd",
        "vault.passwd",
        "vault.rotate-key",
        "vault.rotate-key",
        "vault.passwd",
        "vault.passwd",
        "cred.update",
    ]


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    forms = [raw, raw.hex().encode(), raw.hex().upper().encode(), secret.encode("utf-16-le")]
    forms += [base64.b64encode(b"\0" * shift + raw)[4:-4] for shift in range(3)]
    return forms


def test_canary_never_at_rest_or_in_logs(home: Path) -> None:
    """Real processes with debug logging: the canary is nowhere in the home folder afterwards."""
    env = {**os.environ, "MSSP_HOME": str(home), "MSSP_VAULT_PASSPHRASE": PASS}

    def mssp(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-c", "from mssp.cli import main; main()", "-vv", *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert not [
            f for f in _forms(CANARY) if f.decode(errors="ignore") in done.stdout + done.stderr
        ]
        return done

    mssp("init")
    mssp("client", "add", "Canary Inc")
    mssp("site", "add", "canary-inc/hq")
    mssp("cred", "add", "canary-inc/root", "--password-stdin", stdin=CANARY + "\n")
    mssp("host", "add", "canary-inc/hq/h1", "--address", "192.0.2.1", "--credential", "root")
    mssp("vault", "rotate-key")
    mssp("cred", "update", "canary-inc/root", "--password-stdin", stdin=CANARY + "\n")
    mssp("cred", "list", "--json")
    files = [p for p in home.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"mssp.db", "vault.json", "config.toml", "mssp.log"} <= names
    assert (home / "logs" / "mssp.log").stat().st_size > 0
    for path in files:
        data = path.read_bytes()
        assert not [f for f in _forms(CANARY) if f in data], path


def test_key_file_unlock_and_loose_mode_refused(run, home: Path, tmp_path: Path) -> None:
    assert run("init").exit_code == 0
    key_file = tmp_path / "vault.key"
    key_file.write_text(PASS + "\n")
    key_file.chmod(0o644)
    runner = CliRunner()
    env = {
        "MSSP_HOME": str(home),
        "MSSP_VAULT_PASSPHRASE": None,
        "MSSP_VAULT_KEY_FILE": str(key_file),
    }
    args = ["cred", "add", "k", "--password-stdin"]
    loose = runner.invoke(cli, args, input="x\n", env=env)
    assert loose.exit_code == 1 and "chmod 600" in loose.output
    assert PASS not in loose.output
    key_file.chmod(0o600)
    ok = runner.invoke(cli, args, input="x\n", env=env)
    assert ok.exit_code == 0, ok.output
