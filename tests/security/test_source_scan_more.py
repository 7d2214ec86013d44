"""The source never deserialises unsafely, runs strings as code or shell, or weakens TLS or secrets.

A second AST scan (the first, test_source_scan.py, covers host keys, forwarding and
``shell=True``) over mssp/, relay/ and tui/, outside tests. Imports are resolved, so
``from yaml import load as l; l(x)`` counts as ``yaml.load``. The rules:

- ``yaml-unsafe``: yaml.load/load_all without a safe Loader; unsafe_load, full_load; any use of
  Loader, FullLoader, UnsafeLoader (or their C forms); ruamel ``YAML(typ="unsafe")``.
- ``unsafe-deserialise``: pickle, cPickle, dill, marshal, shelve or jsonpickle (import or use).
- ``eval-exec``: the builtins eval, exec, compile, and __import__ of a computed name
  (ast.literal_eval is fine).
- ``shell-string``: os.system, os.popen, os.exec*/spawn* with a shell, subprocess getoutput /
  getstatusoutput, asyncio create_subprocess_shell, loop.subprocess_shell.
- ``mktemp``: tempfile.mktemp (a race: the name can be taken before it is opened).
- ``tls-off``: verify=False, ssl=False, check_hostname=False, CERT_NONE,
  ssl._create_unverified_context, server_cert_validation="ignore",
  urllib3.disable_warnings.
- ``hard-coded-secret``: a string literal bound to a password/secret/token/key name, a PEM
  private key, or a well-known API token shape.
- ``weak-random``: the ``random`` module feeding anything named like a secret (token, password,
  secret, nonce, salt, key...) instead of ``secrets``.

Each exception is listed in ALLOWED with its reason and the test that proves the reason; a stale
exception (the code it excused is gone) fails too, so the list cannot silently grow.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("mssp", "relay", "tui")

SECRET_WORDS = re.compile(
    r"(?:^|_)(password|passwd|pwd|passphrase|secret|token|api_?key|apikey|private_?key|"
    r"nonce|salt)s?(?:_|$)",
    re.IGNORECASE,
)
# A name that *holds the name of* a secret, not the secret: PASSPHRASE_ENV, password_prompt...
NOT_A_SECRET_SUFFIX = re.compile(
    r"_(env|envvar|var|name|names|prefix|prompt|field|fields|file|path|kind|label|header|"
    r"key_?name|id|ids|url|re|pattern|len|length|bytes|size|ttl|option|flag|mode)$",
    re.IGNORECASE,
)
TOKEN_SHAPES = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36}|"
    r"xox[abprs]-[A-Za-z0-9-]{10,}|sk_live_[A-Za-z0-9]{16,}"
)

YAML_SAFE_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader", "yaml.CBaseLoader"}
YAML_UNSAFE_NAMES = {
    f"yaml.{n}"
    for n in (
        "Loader",
        "FullLoader",
        "UnsafeLoader",
        "CLoader",
        "CFullLoader",
        "CUnsafeLoader",
        "unsafe_load",
        "unsafe_load_all",
        "full_load",
        "full_load_all",
    )
}
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "marshal", "shelve", "jsonpickle"}
EVAL_BUILTINS = {"eval", "exec", "compile", "__import__"}
SHELL_CALLS = {
    "os.system",
    "os.popen",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "asyncio.create_subprocess_shell",
    "commands.getoutput",
}
SHELL_METHODS = {"subprocess_shell", "create_subprocess_shell"}
TLS_OFF_KWARGS = {"verify": False, "ssl": False, "check_hostname": False}
TLS_OFF_NAMES = {
    "ssl.CERT_NONE",
    "ssl._create_unverified_context",
    "urllib3.disable_warnings",
    "requests.packages.urllib3.disable_warnings",
}
RANDOM_OK = {"random.SystemRandom", "random.Random"}  # Random is a type; a seeded use is jitter


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    what: str


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.aliases: dict[str, str] = {}
        self.findings: list[Finding] = []
        self.function_stack: list[str] = []

    # ---- helpers -------------------------------------------------------------------------
    def add(self, node: ast.AST, rule: str, what: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), rule, what))

    def qualify(self, node: ast.expr) -> str | None:
        """'yaml.load' for yaml.load / y.load (import yaml as y) / load (from yaml import load)."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualify(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def uses_random(self, node: ast.AST) -> str | None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                name = self.qualify(sub.func)
                if name and name.startswith("random.") and name not in RANDOM_OK:
                    return name
        return None

    # ---- imports -------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            self.aliases[alias.asname or top] = alias.name if alias.asname else top
            if top in UNSAFE_MODULES:
                self.add(node, "unsafe-deserialise", f"import {alias.name}")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
            if module.split(".")[0] in UNSAFE_MODULES:
                self.add(node, "unsafe-deserialise", f"from {module} import {alias.name}")
            if f"{module}.{alias.name}" in YAML_UNSAFE_NAMES | {"tempfile.mktemp"} | SHELL_CALLS:
                self.add(node, "import-of-forbidden", f"from {module} import {alias.name}")
        self.generic_visit(node)

    # ---- definitions ---------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.function_stack.append(node.name)
        self.generic_visit(node)
        self.function_stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Return(self, node: ast.Return) -> None:
        func = self.function_stack[-1] if self.function_stack else ""
        if node.value is not None and SECRET_WORDS.search(func):
            used = self.uses_random(node.value)
            if used:
                self.add(node, "weak-random", f"{func}() returns {used}(...)")
        self.generic_visit(node)

    # ---- references ----------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self.qualify(node)
        if name in YAML_UNSAFE_NAMES:
            self.add(node, "yaml-unsafe", name)
        elif name in TLS_OFF_NAMES:
            self.add(node, "tls-off", name)
        elif name == "tempfile.mktemp":
            self.add(node, "mktemp", name)
        elif name in SHELL_CALLS:
            self.add(node, "shell-string", name)
        elif name and name.split(".")[0] in UNSAFE_MODULES:
            self.add(node, "unsafe-deserialise", name)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = self.qualify(node.func)
        if isinstance(node.func, ast.Name) and node.func.id in EVAL_BUILTINS:
            constant_import = node.func.id == "__import__" and all(
                isinstance(a, ast.Constant) for a in node.args
            )
            if node.func.id not in self.aliases and not constant_import:
                self.add(node, "eval-exec", f"{node.func.id}(...)")
        if isinstance(node.func, ast.Name) and name in SHELL_CALLS | {"tempfile.mktemp"}:
            self.add(node, "shell-string" if name in SHELL_CALLS else "mktemp", f"{name}(...)")
        if isinstance(node.func, ast.Attribute) and node.func.attr in SHELL_METHODS:
            if name not in SHELL_CALLS:  # asyncio.create_subprocess_shell is found as a name
                self.add(node, "shell-string", f".{node.func.attr}(...)")
        if name in ("yaml.load", "yaml.load_all"):
            loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
            if loader is None and len(node.args) > 1:
                loader = node.args[1]
            if loader is None or self.qualify(loader) not in YAML_SAFE_LOADERS:
                self.add(node, "yaml-unsafe", f"{name} without a safe Loader")
        if name and name.endswith("YAML") and "ruamel" in name:
            for kw in node.keywords:
                if kw.arg == "typ" and isinstance(kw.value, ast.Constant):
                    if kw.value.value in ("unsafe", "full"):
                        self.add(node, "yaml-unsafe", f"YAML(typ={kw.value.value!r})")
        for kw in node.keywords:
            self.check_binding(kw.arg, kw.value, node)
            if kw.arg == "server_cert_validation":
                for sub in ast.walk(kw.value):
                    if isinstance(sub, ast.Constant) and sub.value == "ignore":
                        self.add(kw.value, "tls-off", "server_cert_validation='ignore'")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                self.check_binding(key.value, value, key)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign | ast.AnnAssign) -> None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            name = None
            if isinstance(target, ast.Name):
                name = target.id
            elif isinstance(target, ast.Attribute):
                name = target.attr
            if node.value is not None:
                self.check_binding(name, node.value, node)
        self.generic_visit(node)

    visit_AnnAssign = visit_Assign  # type: ignore[assignment]

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str | bytes):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            match = TOKEN_SHAPES.search(text)
            if match:
                self.add(node, "hard-coded-secret", f"literal shaped like {match.group()[:16]}...")

    # ---- one binding: name = value ------------------------------------------------------
    def check_binding(self, name: str | None, value: ast.expr, where: ast.AST) -> None:
        if not name:
            return
        if name in TLS_OFF_KWARGS and isinstance(value, ast.Constant):
            if value.value is TLS_OFF_KWARGS[name]:
                self.add(where, "tls-off", f"{name}={value.value!r}")
        if not SECRET_WORDS.search(name) or NOT_A_SECRET_SUFFIX.search(name):
            return
        if isinstance(value, ast.Constant) and isinstance(value.value, str | bytes):
            if len(value.value) >= 4:
                self.add(where, "hard-coded-secret", f"{name} = <{len(value.value)}-char literal>")
        used = self.uses_random(value)
        if used:
            self.add(where, "weak-random", f"{name} = {used}(...)")


def scan_source(text: str, path: str = "<string>") -> list[Finding]:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(text, filename=path))
    return scanner.findings


def python_files() -> list[Path]:
    files: list[Path] = []
    for top in SCANNED:
        base = ROOT / top
        if base.is_dir():
            files.extend(p for p in base.rglob("*.py") if "migrations" not in p.parts)
    return sorted(files)


# (path, rule, what) -> (how many times, why it is safe and which test proves that)
ALLOWED: dict[tuple[str, str, str], tuple[int, str]] = {
    ("mssp/connectors/winrm_session.py", "tls-off", "check_hostname=False"): (
        1,
        "certificate_sha256() only reads the certificate to compare with the pin; the real "
        "session asserts the same fingerprint (tests/connectors/test_winrm.py::"
        "test_pinned_certificate, ::test_untrusted_certificate_is_refused_before_any_request)",
    ),
    ("mssp/connectors/winrm_session.py", "tls-off", "ssl.CERT_NONE"): (
        1,
        "the same pin probe as above; the pin is the identity check",
    ),
    ("mssp/connectors/winrm_session.py", "tls-off", "server_cert_validation='ignore'"): (
        1,
        "only when a pin is set: a _PinnedAdapter (urllib3 assert_fingerprint) is mounted on the "
        "session instead (tests/connectors/test_winrm.py::test_pinned_certificate)",
    ),
    ("mssp/backups/evidence.py", "hard-coded-secret", "WRONG_PASSWORD = <14-char literal>"): (
        1,
        "an enum member naming a backup state ('wrong-password'), not a password",
    ),
    ("mssp/tasks/accounts.py", "hard-coded-secret", "update_password = <9-char literal>"): (
        1,
        "a policy name ('on_create'), not a password",
    ),
}


def _scan_tree() -> list[Finding]:
    return [
        f
        for path in python_files()
        for f in scan_source(path.read_text(), str(path.relative_to(ROOT)))
    ]


def test_no_source_deserialises_unsafely_evaluates_input_or_weakens_tls_or_secrets() -> None:
    files = python_files()
    assert len(files) > 50 and ROOT / "mssp" / "importers" / "ansible_yaml.py" in files
    counts = Counter((f.path, f.rule, f.what) for f in _scan_tree())
    unexpected = [
        f"{path}: {rule}: {what} (x{n})"
        for (path, rule, what), n in sorted(counts.items())
        if n > ALLOWED.get((path, rule, what), (0, ""))[0]
    ]
    assert unexpected == [], "\n".join(unexpected)


def test_every_allowed_exception_still_exists() -> None:
    counts = Counter((f.path, f.rule, f.what) for f in _scan_tree())
    stale = [key for key in ALLOWED if counts[key] == 0]
    assert stale == [], f"remove these from ALLOWED: {stale}"


# ---- the scan itself: every rule catches its pattern, and the safe forms pass -----------------

CAUGHT = [
    ("import yaml\nyaml.load(text)", "yaml-unsafe"),
    ("import yaml\nyaml.load(text, Loader=yaml.Loader)", "yaml-unsafe"),
    ("import yaml\nyaml.load_all(text, yaml.FullLoader)", "yaml-unsafe"),
    ("import yaml as y\ny.unsafe_load(text)", "yaml-unsafe"),
    ("from yaml import load\nload(text)", "yaml-unsafe"),
    ("import yaml\nyaml.full_load(text)", "yaml-unsafe"),
    ("import yaml\nclass L(yaml.UnsafeLoader): pass", "yaml-unsafe"),
    ("from ruamel.yaml import YAML\nYAML(typ='unsafe').load(text)", "yaml-unsafe"),
    ("import pickle\npickle.loads(blob)", "unsafe-deserialise"),
    ("from pickle import loads\nloads(blob)", "unsafe-deserialise"),
    ("import marshal\nmarshal.loads(blob)", "unsafe-deserialise"),
    ("import shelve\nshelve.open(path)", "unsafe-deserialise"),
    ("import dill", "unsafe-deserialise"),
    ("eval(user_text)", "eval-exec"),
    ("exec(code, {})", "eval-exec"),
    ("compile(src, 'f', 'exec')", "eval-exec"),
    ("__import__(name)", "eval-exec"),
    ("from tempfile import mktemp\nmktemp()", "mktemp"),
    ("import os\nos.system('ls ' + d)", "shell-string"),
    ("import os\nos.popen(cmd).read()", "shell-string"),
    ("from os import system\nsystem(cmd)", "import-of-forbidden"),
    ("from os import system\nsystem(cmd)", "shell-string"),
    ("import subprocess\nsubprocess.getoutput(cmd)", "shell-string"),
    ("import asyncio\nawait asyncio.create_subprocess_shell(cmd)", "shell-string"),
    ("await loop.subprocess_shell(factory, cmd)", "shell-string"),
    ("import tempfile\nname = tempfile.mktemp()", "mktemp"),
    ("requests.get(url, verify=False)", "tls-off"),
    ("session.get(url, ssl=False)", "tls-off"),
    ("import ssl\nctx.verify_mode = ssl.CERT_NONE", "tls-off"),
    ("ctx.check_hostname = False", "tls-off"),
    ("import ssl\nssl._create_unverified_context()", "tls-off"),
    ("Protocol(endpoint, server_cert_validation='ignore')", "tls-off"),
    ("import urllib3\nurllib3.disable_warnings()", "tls-off"),
    ("ADMIN_PASSWORD = 'Winter2024!'", "hard-coded-secret"),
    ("connect(host, password='hunter22')", "hard-coded-secret"),
    ("opts = {'api_key': 'abcd1234efgh'}", "hard-coded-secret"),
    ("self.token: str = 'deadbeefcafe'", "hard-coded-secret"),
    ("KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Blbn...'", "hard-coded-secret"),
    ("aws = 'AKIAABCDEFGHIJKLMNOP'", "hard-coded-secret"),
    ("import random\ntoken = ''.join(random.choices(ALPHABET, k=32))", "weak-random"),
    ("import random\ndef make_password():\n    return str(random.getrandbits(64))", "weak-random"),
    ("from random import randbytes\nnonce = randbytes(16)", "weak-random"),
]


@pytest.mark.parametrize(("source", "rule"), CAUGHT, ids=[c[0][:40] for c in CAUGHT])
def test_each_rule_catches_its_pattern(source: str, rule: str) -> None:
    rules = {f.rule for f in scan_source(source)}
    assert rule in rules, (source, rules)


SAFE = """
import yaml, random, secrets, ssl, subprocess, ast, tempfile
yaml.load(text, Loader=yaml.SafeLoader)
yaml.safe_load(text)
class L(yaml.SafeLoader): pass
ast.literal_eval("1")
subprocess.run(["ls", path], check=True)
tempfile.mkstemp()
tempfile.NamedTemporaryFile()
requests.get(url, verify=True)
ctx.check_hostname = True
ctx.verify_mode = ssl.CERT_REQUIRED
Protocol(endpoint, server_cert_validation="validate")
token = secrets.token_urlsafe(32)
password = secret.reveal()
PASSPHRASE_ENV = "MSSP_VAULT_PASSPHRASE"
password_prompt = "Password: "
token_len = 32
delay = random.uniform(0, 1.0)
rng = random.Random(7)
jitter = rng.random()
conn.exec_command(cmd)
pathlib = __import__("pathlib")
'''a docstring naming eval(x), pickle.loads and verify=False is prose'''
"""


def test_safe_forms_pass_the_scan() -> None:
    assert scan_source(SAFE) == []
