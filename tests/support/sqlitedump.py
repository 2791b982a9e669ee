"""A SQLite database as SQL text, the way ``sqlite3 DB .dump`` writes it.

Python's ``Connection.iterdump()`` reads every table row by row, virtual ones too, and a
contentless FTS5 table (the output search index) refuses to be scanned. The sqlite3 shell
dumps a virtual table as its definition and the rows of its shadow tables, which hold all
its data; this does the same.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator


def iterdump(conn: sqlite3.Connection) -> Iterator[str]:
    tables = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql NOT NULL "
        "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
    for name, sql in tables:
        yield f"{sql};"
        if sql.upper().startswith("CREATE VIRTUAL TABLE"):
            continue  # its shadow tables follow, with the data
        ident = name.replace('"', '""')
        columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{ident}")')]
        values = ",".join("'||quote(\"{}\")||'".format(c.replace('"', '""')) for c in columns)
        for (row,) in conn.execute(f"""SELECT 'INSERT INTO "{ident}" VALUES({values})' """
                                   f'FROM "{ident}"'):
            yield f"{row};"
    for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE sql NOT NULL AND "
                               "type IN ('index', 'trigger', 'view')"):
        yield f"{sql};"


def dump(conn: sqlite3.Connection) -> str:
    return "\n".join(iterdump(conn))
