"""The vault on its own: key derivation, wrapping, AAD binding, tamper detection, unlock paths."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import pytest

from mssp import vault as vault_mod
from mssp.config import load_settings
from mssp.errors import VaultError
from mssp.vault import (
    DEFAULT_KDF,
    FLOOR,
    KdfParams,
    Secret,
    Vault,
    change_passphrase,
    unlock_from_settings,
)

PASS = "correct horse battery"
FAST = FLOOR  # the weakest parameters the vault accepts: keeps the suite fast


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    Vault.create(tmp_path / "vault.json", PASS, kdf=FAST)
    return tmp_path / "vault.json"


def test_round_trip(vault_path: Path) -> None:
    vault = Vault.unlock(vault_path, PASS)
    blob = vault.encrypt(b"s3cret", table="credential", row_id=7, field="secret")
    assert b"s3cret" not in blob
    assert vault.decrypt(blob, table="credential", row_id=7, field="secret").reveal() == "s3cret"
    # a second encryption of the same value differs (fresh nonce)
    assert blob != vault.encrypt(b"s3cret", table="credential", row_id=7, field="secret")


def test_default_kdf_meets_owasp_and_is_stored_in_header(tmp_path: Path) -> None:
    assert DEFAULT_KDF.memory_cost >= 19456 and DEFAULT_KDF.iterations >= 2
    path = tmp_path / "v.json"
    Vault.create(path, PASS)
    header = json.loads(path.read_text())
    assert header["kdf"]["name"] == "argon2id"
    assert header["kdf"]["memory_cost"] == DEFAULT_KDF.memory_cost
    assert header["kdf"]["iterations"] == DEFAULT_KDF.iterations
    assert header["kdf"]["lanes"] == DEFAULT_KDF.lanes
    assert os.stat(path).st_mode & 0o777 == 0o600
    Vault.unlock(path, PASS)


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(memory_cost=8192, iterations=3, lanes=1),
        KdfParams(memory_cost=65536, iterations=1, lanes=1),
        KdfParams(memory_cost=65536, iterations=3, lanes=0),
    ],
)
def test_create_refuses_weak_kdf(tmp_path: Path, params: KdfParams) -> None:
    with pytest.raises(VaultError):
        Vault.create(tmp_path / "v.json", PASS, kdf=params)
    assert not (tmp_path / "v.json").exists()


def _edit_header(path: Path, **kdf: int) -> None:
    header = json.loads(path.read_text())
    header["kdf"].update(kdf)
    path.write_text(json.dumps(header))


def test_header_below_floor_is_refused(vault_path: Path) -> None:
    _edit_header(vault_path, memory_cost=1024)
    with pytest.raises(VaultError, match="outside the allowed range"):
        Vault.unlock(vault_path, PASS)


def test_header_above_ceiling_is_refused_without_allocating(vault_path: Path) -> None:
    _edit_header(vault_path, memory_cost=2**40)
    with pytest.raises(VaultError, match="outside the allowed range"):
        Vault.unlock(vault_path, PASS)


def test_altered_header_parameters_fail_authentication(vault_path: Path) -> None:
    # stronger-but-different parameters derive another key: unlocking must fail, not misbehave
    _edit_header(vault_path, iterations=FAST.iterations + 1)
    with pytest.raises(VaultError, match="wrong vault passphrase"):
        Vault.unlock(vault_path, PASS)


def test_wrong_passphrase_fails_cleanly(vault_path: Path) -> None:
    before = vault_path.read_bytes()
    with pytest.raises(VaultError) as info:
        Vault.unlock(vault_path, "not the passphrase")
    assert "not the passphrase" not in str(info.value)
    with pytest.raises(VaultError):
        change_passphrase(vault_path, "not the passphrase", "a new passphrase")
    assert vault_path.read_bytes() == before
    assert sorted(p.name for p in vault_path.parent.iterdir()) == ["vault.json", "vault.json.lock"]


def test_ciphertext_bound_to_table_row_field(vault_path: Path) -> None:
    vault = Vault.unlock(vault_path, PASS)
    blob = vault.encrypt(b"value", table="credential", row_id=1, field="secret")
    for table, row_id, field in [
        ("credential", 2, "secret"),
        ("other", 1, "secret"),
        ("credential", 1, "passphrase"),
    ]:
        with pytest.raises(VaultError, match="does not verify"):
            vault.decrypt(blob, table=table, row_id=row_id, field=field)


def test_ciphertext_bound_to_its_vault(vault_path: Path, tmp_path: Path) -> None:
    other = Vault.create(tmp_path / "other.json", PASS, kdf=FAST)
    blob = Vault.unlock(vault_path, PASS).encrypt(b"v", table="t", row_id=1, field="f")
    with pytest.raises(VaultError):
        other.decrypt(blob, table="t", row_id=1, field="f")


def test_every_flipped_bit_fails(vault_path: Path) -> None:
    vault = Vault.unlock(vault_path, PASS)
    blob = vault.encrypt(b"flip me", table="credential", row_id=3, field="secret")
    for position in range(len(blob) * 8):
        damaged = bytearray(blob)
        damaged[position // 8] ^= 1 << (position % 8)
        with pytest.raises(VaultError):
            vault.decrypt(bytes(damaged), table="credential", row_id=3, field="secret")
    with pytest.raises(VaultError):
        vault.decrypt(blob[:-1], table="credential", row_id=3, field="secret")


def test_change_passphrase_rewraps_only(vault_path: Path) -> None:
    vault = Vault.unlock(vault_path, PASS)
    blob = vault.encrypt(b"kept", table="credential", row_id=1, field="secret")
    old_header = json.loads(vault_path.read_text())
    change_passphrase(vault_path, PASS, "another passphrase", kdf=FAST)
    new_header = json.loads(vault_path.read_text())
    assert new_header["vault_id"] == old_header["vault_id"]
    assert new_header["kdf"]["salt"] != old_header["kdf"]["salt"]
    with pytest.raises(VaultError):
        Vault.unlock(vault_path, PASS)
    reopened = Vault.unlock(vault_path, "another passphrase")
    assert reopened.decrypt(blob, table="credential", row_id=1, field="secret").reveal() == "kept"


def test_change_passphrase_crash_leaves_old_file(
    vault_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = vault_path.read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(vault_mod.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        change_passphrase(vault_path, PASS, "another passphrase", kdf=FAST)
    monkeypatch.undo()
    assert vault_path.read_bytes() == before
    assert not [p for p in vault_path.parent.iterdir() if p.name.endswith(".tmp")]
    Vault.unlock(vault_path, PASS)


def test_data_key_rotation_keeps_old_ciphertexts_readable(vault_path: Path) -> None:
    vault = Vault.unlock(vault_path, PASS)
    old = vault.encrypt(b"old", table="t", row_id=1, field="f")
    assert vault.add_data_key() == 2
    new = vault.encrypt(b"new", table="t", row_id=1, field="f")
    reopened = Vault.unlock(vault_path, PASS)
    assert reopened.key_versions == (1, 2)
    assert reopened.decrypt(old, table="t", row_id=1, field="f").reveal() == "old"
    reopened.retire_data_keys({2})
    again = Vault.unlock(vault_path, PASS)
    assert again.key_versions == (2,)
    assert again.decrypt(new, table="t", row_id=1, field="f").reveal() == "new"
    with pytest.raises(VaultError, match="unknown to this vault"):
        again.decrypt(old, table="t", row_id=1, field="f")


def test_secret_never_shows_its_value(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret("hunter2-canary")
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        "%s" % (secret,),  # noqa: UP031 (old-style formatting must mask too)
        str([secret]),
    ]
    assert all("hunter2" not in text for text in shown)
    assert repr(secret) == "Secret('****')"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("using %s %r", secret, secret)
    assert "hunter2" not in caplog.text
    try:
        raise ValueError(secret)
    except ValueError as exc:
        assert "hunter2" not in str(exc) and "hunter2" not in repr(exc)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert secret.reveal() == "hunter2-canary"
    assert secret == Secret(b"hunter2-canary") and secret != Secret("other")


def test_create_refuses_short_passphrase_and_existing_vault(vault_path: Path) -> None:
    with pytest.raises(VaultError, match="at least"):
        Vault.create(vault_path.parent / "new.json", "short", kdf=FAST)
    with pytest.raises(VaultError, match="already exists"):
        Vault.create(vault_path, PASS, kdf=FAST)


def test_malformed_or_missing_vault(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="mssp init"):
        Vault.unlock(tmp_path / "missing.json", PASS)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(VaultError, match="malformed"):
        Vault.unlock(tmp_path / "bad.json", PASS)


def _settings(home: Path, key_file: Path | None = None):
    env = {"MSSP_HOME": str(home)}
    if key_file is not None:
        env["MSSP_VAULT_KEY_FILE"] = str(key_file)
    return load_settings(env)


def test_unlock_order_env_then_key_file_then_prompt(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = _settings(home)
    Vault.create(settings.vault_path, PASS, kdf=FAST)
    assert unlock_from_settings(settings, env={"MSSP_VAULT_PASSPHRASE": PASS})
    assert unlock_from_settings(settings, env={}, prompt=lambda: PASS)
    with pytest.raises(VaultError, match="locked"):
        unlock_from_settings(settings, env={})
    key_file = tmp_path / "vault.key"
    key_file.write_text(PASS + "\n")
    key_file.chmod(0o600)
    with_key = _settings(home, key_file)
    assert unlock_from_settings(with_key, env={}, prompt=lambda: pytest.fail("prompted"))
    # the environment wins over the key file
    with pytest.raises(VaultError, match="wrong vault passphrase"):
        unlock_from_settings(with_key, env={"MSSP_VAULT_PASSPHRASE": "wrong passphrase"})


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_with_loose_mode_is_refused(tmp_path: Path, mode: int) -> None:
    settings = _settings(tmp_path / "home", tmp_path / "vault.key")
    Vault.create(settings.vault_path, PASS, kdf=FAST)
    key_file = tmp_path / "vault.key"
    key_file.write_text(PASS)
    key_file.chmod(mode)
    with pytest.raises(VaultError, match="chmod 600") as info:
        unlock_from_settings(settings, env={})
    assert PASS not in str(info.value)


def test_key_file_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    real.write_text(PASS)
    real.chmod(0o600)
    (tmp_path / "link.key").symlink_to(real)
    settings = _settings(tmp_path / "home", tmp_path / "link.key")
    Vault.create(settings.vault_path, PASS, kdf=FAST)
    with pytest.raises(VaultError):
        unlock_from_settings(settings, env={})
