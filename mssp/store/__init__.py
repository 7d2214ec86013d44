"""The data-access layer: async functions over the open database (mssp.db), returning values.

Callers get frozen dataclasses (``HostRecord``, ``ClientInfo`` ...), never ORM rows. Writes run in
``write_transaction()`` (mssp.db's: on SQLite it takes the write lock at the first statement, so
read-then-write transactions serialise across processes; FIELD-NOTES.md §6). Store functions nest
inside an outer ``write_transaction()``, which makes an importer's batch all-or-nothing.
"""

from __future__ import annotations

from mssp.db import write_transaction

__all__ = ["write_transaction"]
