"""Rows of the provider's own queries read by column name, not by position."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg


def by_name(conn: psycopg.Connection) -> psycopg.Cursor[dict[str, Any]]:
    """A cursor of ``conn`` whose rows are dictionaries keyed by column name
    (``psycopg.rows.dict_row``); the connection's own row factory is left as it is."""
    from psycopg.rows import dict_row

    return conn.cursor(row_factory=dict_row)


__all__ = ["by_name"]
