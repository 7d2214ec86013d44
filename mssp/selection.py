"""Target selection expressions: parse ``client:acme,tag:web&!db*`` and pick hosts (pure).

Grammar (whitespace around operators is ignored)::

    expression := term ("," term)*
    term       := ["!" | "&"] factor ("&" factor)*
    factor     := ["!"] atom
    atom       := "client:" GLOB | "site:" GLOB | "tag:" GLOB | "all" | GLOB

Meaning, as in Ansible's host patterns, independent of the order of the terms:
the result is the union of the plain terms (every host when there is none), kept only where it
also matches every ``&`` term, minus every ``!`` term. Inside a term, ``a&b`` is an intersection
that binds tighter than ``,``, and ``a&!b`` means "a but not b". A leading ``!`` excludes the
whole term: ``!tag:old&db*`` removes the hosts that are both old and db*.

``client:`` matches the client slug, ``site:`` the site slug or ``client/site``, ``tag:`` any tag;
a bare GLOB matches the host name or the full name ``client/site/host``. Globs are fnmatch
patterns (``*``, ``?``, ``[0-9]``), compared case-insensitively.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mssp.errors import InventoryError

if TYPE_CHECKING:
    from mssp.inventory import HostRecord

PREFIXES = ("client", "site", "tag")
_OPERATORS = ",&!"
_MAX_LENGTH = 4096


@dataclass(frozen=True)
class Atom:
    """One matcher: a kind ("name", "client", "site", "tag", "all") and a lower-case glob."""

    kind: str
    pattern: str

    def matches(self, host: HostRecord) -> bool:
        pat = self.pattern
        if self.kind == "all":
            return True
        if self.kind == "client":
            return _glob(host.client, pat)
        if self.kind == "site":
            return _glob(host.site, pat) or _glob(f"{host.client}/{host.site}", pat)
        if self.kind == "tag":
            return any(_glob(tag, pat) for tag in host.tags)
        return _glob(host.name, pat) or _glob(host.full_name, pat)


@dataclass(frozen=True)
class Factor:
    """An atom, possibly negated inside an intersection (``a&!b``)."""

    atom: Atom
    negated: bool = False

    def matches(self, host: HostRecord) -> bool:
        return self.atom.matches(host) != self.negated


@dataclass(frozen=True)
class Term:
    """A comma-separated part: "union", "intersect" (leading ``&``) or "exclude" (leading ``!``)."""

    role: str
    factors: tuple[Factor, ...]

    def matches(self, host: HostRecord) -> bool:
        return all(f.matches(host) for f in self.factors)


@dataclass(frozen=True)
class Selection:
    """A parsed expression; ``apply`` picks hosts in input order without duplicates."""

    terms: tuple[Term, ...]

    def matches(self, host: HostRecord) -> bool:
        unions = [t for t in self.terms if t.role == "union"]
        if unions and not any(t.matches(host) for t in unions):
            return False
        for term in self.terms:
            if term.role == "intersect" and not term.matches(host):
                return False
            if term.role == "exclude" and term.matches(host):
                return False
        return True

    def apply(self, hosts: Sequence[HostRecord]) -> list[HostRecord]:
        seen: set[object] = set()
        picked: list[HostRecord] = []
        for host in hosts:
            key = host.id if host.id is not None else host.full_name
            if key in seen or not self.matches(host):
                continue
            seen.add(key)
            picked.append(host)
        return picked


def _glob(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern)


@dataclass(frozen=True)
class _Token:
    text: str
    pos: int

    @property
    def is_op(self) -> bool:
        return self.text in _OPERATORS


def _tokenize(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(expression)
    while i < n:
        ch = expression[i]
        if ch.isspace():
            i += 1
            continue
        if ch in _OPERATORS:
            tokens.append(_Token(ch, i))
            i += 1
            continue
        start = i
        while i < n and not expression[i].isspace() and expression[i] not in _OPERATORS:
            i += 1
        tokens.append(_Token(expression[start:i], start))
    # "client: acme" is one word: join a known prefix with the word after it
    joined: list[_Token] = []
    for tok in tokens:
        prev = joined[-1] if joined else None
        if (
            prev is not None
            and not prev.is_op
            and not tok.is_op
            and prev.text.endswith(":")
            and prev.text[:-1].lower() in PREFIXES
        ):
            joined[-1] = _Token(prev.text + tok.text, prev.pos)
        else:
            joined.append(tok)
    return joined


def _err(expression: str, pos: int, what: str) -> InventoryError:
    return InventoryError(f"bad target expression {expression!r} at column {pos + 1}: {what}")


# Names are slugs and host names (letters, digits, . _ -) and "/" between client, site and host;
# globs add * ? and [ranges] (with ! for negation). Anything else can match nothing: say so.
_PATTERN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/*?[]!")


def _check_pattern(expression: str, tok: _Token, pattern: str) -> None:
    bad = sorted({ch for ch in pattern.lower() if ch not in _PATTERN_CHARS})
    if bad:
        shown = " ".join(repr(ch) for ch in bad)
        raise _err(expression, tok.pos, f"{shown} cannot appear in a name or glob")


def _atom(expression: str, tok: _Token) -> Atom:
    text = tok.text
    if "/" not in text.split(":", 1)[0] and ":" in text:
        prefix, _, pattern = text.partition(":")
        kind = prefix.lower()
        if kind not in PREFIXES:
            raise _err(
                expression,
                tok.pos,
                f"unknown selector {prefix + ':'!r} (use client:, site:, tag: or a host glob)",
            )
        if not pattern:
            raise _err(expression, tok.pos, f"{kind}: needs a name or glob after it")
        if ":" in pattern:
            raise _err(expression, tok.pos, f"unexpected ':' in {pattern!r}")
        _check_pattern(expression, tok, pattern)
        return Atom(kind, pattern.lower())
    if text.lower() == "all":
        return Atom("all", "*")
    _check_pattern(expression, tok, text)
    return Atom("name", text.lower())


def parse(expression: str) -> Selection:
    """Parse a target expression; InventoryError (naming the column) when it is malformed."""
    if not isinstance(expression, str):
        raise InventoryError(f"a target expression must be text, not {type(expression).__name__}")
    if len(expression) > _MAX_LENGTH:
        raise InventoryError(f"target expression longer than {_MAX_LENGTH} characters")
    for pos, ch in enumerate(expression):
        if not ch.isprintable() and not ch.isspace():
            raise _err(expression, pos, f"control character {ch!r}")
    tokens = _tokenize(expression)
    if not tokens:
        raise InventoryError("empty target expression (use 'all' for every host)")
    terms: list[Term] = []
    i = 0

    def expect_atom(what: str) -> _Token:
        nonlocal i
        if i >= len(tokens):
            end = len(expression.rstrip())
            raise _err(expression, end, f"expected {what} at the end")
        tok = tokens[i]
        if tok.is_op:
            raise _err(expression, tok.pos, f"expected {what}, found {tok.text!r}")
        i += 1
        return tok

    while True:
        role = "union"
        if i < len(tokens) and tokens[i].text in "!&":
            role = "exclude" if tokens[i].text == "!" else "intersect"
            i += 1
        factors = [Factor(_atom(expression, expect_atom("a host pattern")))]
        while i < len(tokens) and tokens[i].text == "&":
            i += 1
            negated = False
            if i < len(tokens) and tokens[i].text == "!":
                negated = True
                i += 1
            factors.append(Factor(_atom(expression, expect_atom("a pattern after '&'")), negated))
        terms.append(Term(role, tuple(factors)))
        if i >= len(tokens):
            break
        tok = tokens[i]
        if tok.text != ",":
            what = f"{tok.text!r} after a space" if not tok.is_op else f"{tok.text!r}"
            raise _err(expression, tok.pos, f"unexpected {what} (separate terms with ',')")
        i += 1
        if i >= len(tokens):
            raise _err(expression, tok.pos, "trailing ','")
        if tokens[i].text == ",":
            raise _err(expression, tokens[i].pos, "empty term between ','")
    return Selection(tuple(terms))


def select(expression: str, hosts: Sequence[HostRecord]) -> list[HostRecord]:
    """The hosts an expression selects, in input order and without duplicates."""
    return parse(expression).apply(hosts)


def matcher(expression: str) -> Callable[[HostRecord], bool]:
    """A predicate for one expression, parsed once (for filtering live views)."""
    return parse(expression).matches
