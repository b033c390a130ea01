"""A long window's live classification shared by several connections at once.

One connection classifies a window one key at a time in one backend (the FULL hash join of
the two sides' per-key aggregates is serial work). Split by a hash of the key into parts
(``queries.split_params``), the parts are disjoint and together are every key; each part runs
on its own connection, all of them in the *same* snapshot (``pg_export_snapshot`` on the
reader's REPEATABLE READ transaction, ``SET TRANSACTION SNAPSHOT`` on the others; PostgreSQL
10 or later, primaries and hot standbys alike), so their
union is exactly the one-connection classification of that snapshot. The server works on
every part at once; the report's rows are merged back into the report's order (kind, then
key in byte order, what ``COLLATE "C"`` sorts by) while they stream, with a few batches per
part in memory.

How many connections: the planner's estimate of the rows read (both sides, widened window)
divided by :data:`ROWS_PER_CONNECTION`, at most ``ReconConfig.live_connections``. Each part
builds its hash tables for its own keys only, so the server's memory for one classification
stays about what one connection used (``statement_work_mem`` per node and connection). When
the server or the role refuses another connection (``max_connections``, a role's ``CONNECTION
LIMIT``), the parts are the connections that were opened, down to the reader's own.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_recon_provider.reconciliation import queries
from airflow_recon_provider.reconciliation.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

log = logging.getLogger(__name__)

#: rows read (gateway rows plus statement lines) that make one more connection worth opening
ROWS_PER_CONNECTION = 500_000
#: batches of rows a part may have fetched ahead of the merge
_AHEAD = 4
_END = object()


def estimated_rows(conn: psycopg.Connection, statement: sql.Composable, params: dict[str, Any]) -> int:
    """The planner's row estimate of ``statement`` (planning only, nothing is read)."""
    from psycopg import sql as _sql

    plan = conn.execute(_sql.SQL("EXPLAIN (FORMAT JSON) ") + statement, params).fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def connections_for(rows: int, limit: int, *, per_connection: int = ROWS_PER_CONNECTION) -> int:
    """Connections for a classification reading ``rows`` rows: one per ``per_connection``
    rows, at least one, at most ``limit``."""
    return max(1, min(limit, math.ceil(rows / per_connection)))


def join_snapshot(conn: psycopg.Connection, snapshot: str) -> None:
    """Make ``conn``'s new REPEATABLE READ transaction see exactly ``snapshot``."""
    import psycopg
    from psycopg import sql as _sql

    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.execute(_sql.SQL("SET TRANSACTION SNAPSHOT {}").format(_sql.Literal(snapshot)))


class KeyParts:
    """The connections of one split classification: the reader's own (``main``, in its
    REPEATABLE READ transaction) and ``count - 1`` more opened by ``open_extra`` (context
    managers yielding connections), every one in ``main``'s snapshot and tuned by ``tune``.
    Use as a context manager; the extra connections are closed on exit."""

    def __init__(
        self,
        main: psycopg.Connection,
        count: int,
        open_extra: Callable[[], Any],
        tune: Callable[[psycopg.Connection], None],
    ) -> None:
        self.main, self.count, self._open_extra, self._tune = main, count, open_extra, tune
        self._stack = ExitStack()
        self.connections: list[psycopg.Connection] = []

    def __enter__(self) -> KeyParts:
        snapshot = self.main.execute("SELECT pg_export_snapshot()").fetchone()[0]
        try:
            self.connections = [self.main]
            for _ in range(self.count - 1):
                try:
                    conn = self._stack.enter_context(self._open_extra())
                except DatabaseUnavailableError as exc:
                    # the role's or the server's connection limit: fewer parts, same result
                    log.warning("classifying with %d connection(s): %s", len(self.connections), exc)
                    break
                join_snapshot(conn, snapshot)
                self._tune(conn)
                self.connections.append(conn)
        except BaseException:
            self._stack.close()
            raise
        self.count = len(self.connections)
        return self

    def __exit__(self, *exc: Any) -> None:
        # the extra connections roll back and close with the reader's outcome
        self._stack.__exit__(*exc)

    def params(self, params: dict[str, Any], part: int) -> dict[str, Any]:
        return queries.split_params(params, part, self.count)

    def fetch_all(self, statement: sql.Composable, params: dict[str, Any]) -> list[list[tuple[Any, ...]]]:
        """Every part's rows of a small-result ``statement`` (one list per part), the parts run
        at once."""
        results: list[list[tuple[Any, ...]]] = [[] for _ in self.connections]
        errors: list[BaseException] = []

        def run(part: int) -> None:
            try:
                conn = self.connections[part]
                results[part] = conn.execute(statement, self.params(params, part)).fetchall()
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(self.count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return results

    def stream_merged(
        self,
        statement: sql.Composable,
        params: dict[str, Any],
        fetch_size: int,
    ) -> Iterator[tuple[Any, ...]]:
        """The rows of a report ``statement`` (ordered by kind in the order of
        ``params["kinds"]``, then ``(ref, ttype)`` in byte order) from every part at once,
        merged into that order."""
        stop = threading.Event()
        feeds = [
            _PartFeed(conn, statement, self.params(params, k), fetch_size, stop)
            for k, conn in enumerate(self.connections)
        ]
        for feed in feeds:
            feed.start()
        try:
            yield from queries.merge_report_parts((f.rows() for f in feeds), params["kinds"])
        finally:
            stop.set()
            for feed in feeds:
                feed.finish()

    def write_merged_lines(
        self, statement: sql.Composable, params: dict[str, Any], out: BinaryIO, fetch_size: int
    ) -> int:
        """Rows ``(kind, reference, type, line)`` of ``statement`` from every part, merged into
        the report's order; each ``line`` written to ``out`` as UTF-8 with a newline. The
        number of lines."""
        count = 0
        for row in self.stream_merged(statement, params, fetch_size):
            out.write(row[3].encode("utf-8"))
            out.write(b"\n")
            count += 1
        return count


class _PartFeed(threading.Thread):
    """One part's rows, fetched on its connection in a thread into a bounded queue."""

    def __init__(
        self,
        conn: psycopg.Connection,
        statement: sql.Composable,
        params: dict[str, Any],
        fetch_size: int,
        stop: threading.Event,
    ) -> None:
        super().__init__(daemon=True)
        self.conn, self.statement, self.params, self.fetch_size = conn, statement, params, fetch_size
        self.stop = stop
        self.batches: queue.Queue[Any] = queue.Queue(maxsize=_AHEAD)

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.batches.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            if self._stream():
                self._put(_END)
        except BaseException as exc:  # handed to the merging thread, which raises it
            self._put(exc)

    def _stream(self) -> bool:
        """Stream the part's rows into the queue; ``False`` when told to stop first. Rows come
        in chunks over the normal protocol (``cursor.stream``, libpq 17+ chunked mode), not a
        named cursor: a ``DECLARE``d cursor is planned for its first rows and never in parallel,
        which made a part slower than the whole."""
        batch: list[Any] = []
        with self.conn.cursor() as cur:
            rows = cur.stream(self.statement, self.params, size=self.fetch_size)
            try:
                for row in rows:
                    batch.append(row)
                    if len(batch) >= self.fetch_size:
                        if not self._put(batch):
                            return False
                        batch = []
            finally:
                rows.close()  # an unfinished stream cancels its query and drains the connection
        return not batch or self._put(batch)

    def rows(self) -> Iterator[tuple[Any, ...]]:
        while True:
            item = self.batches.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item

    def finish(self) -> None:
        """Stop fetching (the consumer left or failed): cancel the part's query if it still
        runs, and wait for the thread."""
        if self.is_alive():
            try:
                self.conn.cancel_safe()
            except Exception:  # best effort: the connection is closed right after
                pass
        self.join(timeout=30)


__all__ = ["ROWS_PER_CONNECTION", "KeyParts", "connections_for", "estimated_rows", "join_snapshot"]
