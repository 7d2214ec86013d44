"""Target selection expressions: a table of cases, errors, and a fuzz test (pure, no database)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssp.errors import InventoryError, MsspError
from mssp.inventory import HostRecord, select
from mssp.selection import matcher


def _h(full: str, *tags: str, id: int | None = None) -> HostRecord:
    client, site, name = full.split("/")
    return HostRecord(client, site, name, address=f"{name}.example", tags=frozenset(tags), id=id)


HOSTS = [
    _h("acme-dental/main-office/fs01", "fileserver", "windows"),
    _h("acme-dental/main-office/web01", "web"),
    _h("acme-dental/main-office/db01", "db", "linux"),
    _h("acme-dental/branch/web02", "web", "linux"),
    _h("acme-dental/branch/pc-reception", "workstation", "windows"),
    _h("bravo-law/hq/web01", "web", "linux"),
    _h("bravo-law/hq/db-main", "db"),
    _h("bravo-law/hq/NAS01", "backup"),
    _h("charlie/lab/db02", "db", "legacy"),
]


def names(expression: str) -> list[str]:
    return [h.full_name for h in select(expression, HOSTS)]


CASES = [
    # plain names and globs, on host name and full name
    ("fs01", ["acme-dental/main-office/fs01"]),
    ("web01", ["acme-dental/main-office/web01", "bravo-law/hq/web01"]),
    ("web0?", ["acme-dental/main-office/web01", "acme-dental/branch/web02", "bravo-law/hq/web01"]),
    ("db[0-9]*", ["acme-dental/main-office/db01", "charlie/lab/db02"]),
    ("bravo-law/*/web01", ["bravo-law/hq/web01"]),
    ("*/branch/*", ["acme-dental/branch/web02", "acme-dental/branch/pc-reception"]),
    ("nas01", ["bravo-law/hq/NAS01"]),  # case-insensitive
    ("nothing-like-this", []),
    # prefixes
    ("client:bravo-law", ["bravo-law/hq/web01", "bravo-law/hq/db-main", "bravo-law/hq/NAS01"]),
    ("client:acme*", [h.full_name for h in HOSTS[:5]]),
    ("site:branch", ["acme-dental/branch/web02", "acme-dental/branch/pc-reception"]),
    ("site:acme-dental/main-office", [h.full_name for h in HOSTS[:3]]),
    ("tag:windows", ["acme-dental/main-office/fs01", "acme-dental/branch/pc-reception"]),
    (
        "TAG:WEB",
        ["acme-dental/main-office/web01", "acme-dental/branch/web02", "bravo-law/hq/web01"],
    ),
    (
        "tag:l*",
        [
            "acme-dental/main-office/db01",
            "acme-dental/branch/web02",
            "bravo-law/hq/web01",
            "charlie/lab/db02",
        ],
    ),
    ("all", [h.full_name for h in HOSTS]),
    ("*", [h.full_name for h in HOSTS]),
    # union keeps input order, no duplicates
    ("db01,fs01", ["acme-dental/main-office/fs01", "acme-dental/main-office/db01"]),
    (
        "tag:web,web01",
        ["acme-dental/main-office/web01", "acme-dental/branch/web02", "bravo-law/hq/web01"],
    ),
    # exclusion: applies to the whole union, wherever it is written
    (
        "client:acme-dental,tag:web,!db*",
        [
            "acme-dental/main-office/fs01",
            "acme-dental/main-office/web01",
            "acme-dental/branch/web02",
            "acme-dental/branch/pc-reception",
            "bravo-law/hq/web01",
        ],
    ),
    ("!db*,client:charlie", []),
    (
        "!client:acme-dental",
        ["bravo-law/hq/web01", "bravo-law/hq/db-main", "bravo-law/hq/NAS01", "charlie/lab/db02"],
    ),  # only exclusions: from every host
    ("tag:db,!tag:legacy", ["acme-dental/main-office/db01", "bravo-law/hq/db-main"]),
    # intersection: infix binds tighter than ',' ...
    ("tag:web&client:bravo-law", ["bravo-law/hq/web01"]),
    ("tag:web&client:bravo-law,fs01", ["acme-dental/main-office/fs01", "bravo-law/hq/web01"]),
    ("tag:linux&tag:web&site:branch", ["acme-dental/branch/web02"]),
    # ... and a leading '&' term intersects the whole union (Ansible's form)
    (
        "tag:web,fs01,&client:acme-dental",
        [
            "acme-dental/main-office/fs01",
            "acme-dental/main-office/web01",
            "acme-dental/branch/web02",
        ],
    ),
    ("&client:bravo-law,tag:db", ["bravo-law/hq/db-main"]),
    # negation inside an intersection, and a leading '!' on a whole intersection
    ("tag:web&!client:bravo-law", ["acme-dental/main-office/web01", "acme-dental/branch/web02"]),
    ("tag:db,!tag:db&client:charlie", ["acme-dental/main-office/db01", "bravo-law/hq/db-main"]),
    # precedence all together: (a & b) , c , &d , !e
    (
        "tag:linux&tag:db,web*,&client:acme-dental,!site:branch",
        ["acme-dental/main-office/web01", "acme-dental/main-office/db01"],
    ),
    # whitespace around operators and after a prefix is ignored
    (
        "  tag:web , ! client:bravo-law ",
        ["acme-dental/main-office/web01", "acme-dental/branch/web02"],
    ),
    ("client: charlie", ["charlie/lab/db02"]),
    ("tag:web &\tsite:hq", ["bravo-law/hq/web01"]),
]


@pytest.mark.parametrize(("expression", "expected"), CASES, ids=[c[0] for c in CASES])
def test_selection_table(expression: str, expected: list[str]) -> None:
    assert names(expression) == expected


BAD = [
    ("", "empty target expression"),
    ("   ", "empty target expression"),
    (",", "expected a host pattern"),
    ("web01,", "trailing ','"),
    ("web01,,db01", "empty term"),
    ("web01&", "expected a pattern after '&' at the end"),
    ("&", "expected a host pattern"),
    ("!", "expected a host pattern"),
    ("!!web01", "expected a host pattern, found '!'"),
    ("web01!db01", "unexpected '!'"),
    ("web01 db01", "unexpected 'db01' after a space"),
    ("tag:", "tag: needs a name or glob"),
    ("site:  ,web", "site: needs a name or glob"),
    ("owner:bob", "unknown selector 'owner:'"),
    ("tag:a:b", "unexpected ':'"),
    ("client:(", "cannot appear in a name or glob"),
    ("web;rm", "cannot appear in a name or glob"),
    ("h\u00e9", "cannot appear in a name or glob"),
    ("web\x0001", "control character"),
    ("x" * 5000, "longer than"),
]


@pytest.mark.parametrize(("expression", "message"), BAD, ids=[repr(b[0][:20]) for b in BAD])
def test_bad_expressions_raise_inventory_error(expression: str, message: str) -> None:
    with pytest.raises(InventoryError) as info:
        select(expression, HOSTS)
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_error_names_the_column() -> None:
    with pytest.raises(InventoryError, match="at column 9"):
        select("web01 , ,db", HOSTS)


def test_duplicates_in_input_come_out_once_and_in_order() -> None:
    a, b = _h("x/y/a", id=1), _h("x/y/b", id=2)
    assert select("*", [b, a, b, a]) == [b, a]


def test_matcher_is_the_same_predicate() -> None:
    pred = matcher("tag:web,!client:bravo-law")
    assert [h.full_name for h in HOSTS if pred(h)] == names("tag:web,!client:bravo-law")


def test_not_text_is_an_inventory_error() -> None:
    with pytest.raises(InventoryError):
        select(None, HOSTS)  # type: ignore[arg-type]


_ALPHABET = st.sampled_from([*"abcw01*?[]-/:!&, \t", "tag:", "client:", "site:", "all"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(_ALPHABET, max_size=15).map("".join)))
def test_fuzz_only_inventory_errors(expression: str) -> None:
    try:
        result = select(expression, HOSTS)
    except InventoryError:
        return
    except MsspError as exc:  # pragma: no cover - the assertion below explains
        raise AssertionError(f"wrong error type {type(exc).__name__}") from exc
    ids = [h.full_name for h in result]
    assert len(ids) == len(set(ids))
    assert ids == [h.full_name for h in HOSTS if h.full_name in set(ids)]  # input order
