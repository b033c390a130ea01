"""PostgreSQL sessions of the provider, without Airflow: the connection context (UTC, commit
on success, rollback on error, errors that name the connection) and the per-transaction
settings of the classification. :class:`ReconPostgresHook` (Airflow's ``PostgresHook``) and
the CLI's direct reader (``airflow-recon`` with ``AIRFLOW_CONN_*`` set, no Airflow import)
share them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from airflow_recon_provider.hooks._connections import is_missing_connection, missing_connection_error
from airflow_recon_provider.reconciliation.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    import psycopg

    from airflow_recon_provider.reconciliation.config import ReconConfig
    from airflow_recon_provider.reconciliation.window import Window


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def managed_connection(
    open_conn: Callable[[], psycopg.Connection], conn_id: str, *, autocommit: bool = False
) -> Iterator[psycopg.Connection]:
    """A psycopg 3 connection from ``open_conn`` in UTC, committed when the block succeeds and
    rolled back when it raises; errors become :class:`ConnectionMissingError` or
    :class:`DatabaseUnavailableError` with ``conn_id`` in the message."""
    import psycopg

    try:
        conn = open_conn()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"database of connection {conn_id!r} is unreachable: {_first_line(exc)}"
        ) from None
    except Exception as exc:
        if is_missing_connection(exc):
            raise missing_connection_error(conn_id) from None
        raise
    try:
        conn.autocommit = autocommit
        conn.execute("SET TIME ZONE 'UTC'")
        if not autocommit:
            conn.commit()
        yield conn
        # like psycopg's own `with connection:` — work done in the block is kept only when
        # the block succeeds
        if not autocommit and not conn.closed:
            conn.commit()
    except BaseException as exc:
        if not conn.closed and not autocommit:
            conn.rollback()
        if isinstance(exc, psycopg.OperationalError) and conn.broken:
            # the server went away in the middle (restart, failover, network): say which
            # database, not only libpq's "server closed the connection unexpectedly"
            raise DatabaseUnavailableError(
                f"database of connection {conn_id!r} was lost in the middle of the operation: "
                f"{_first_line(exc)}"
            ) from exc
        raise
    finally:
        conn.close()


def tune_for_classification(conn: psycopg.Connection, window: Window, config: ReconConfig) -> None:
    """Per-transaction settings of the classification query (see PERFORMANCE notes): enough
    memory for the hash aggregates and join, no JIT compile. On short windows (an hourly
    cycle, a day) the rows are few and reached through the time indexes; the default
    random_page_cost makes the planner hash-join a full scan of payment_intents instead of
    probing its primary key, which is 4-5x slower there."""
    from psycopg import sql

    short = window.span <= timedelta(days=1)
    page_cost = "1.1" if short else None
    # short windows: even with random_page_cost 1.1 the planner still prefers a parallel
    # full scan of payment_intents (millions of rows) to probing its primary key for the
    # window's transactions; 2-4x slower on a 5M-row table (benchmarks/run.py)
    seqscan = "off" if short else None
    conn.execute(
        sql.SQL(
            "SELECT set_config('work_mem', {}, true), set_config('jit', 'off', true),"
            " set_config('random_page_cost', COALESCE({}, current_setting('random_page_cost')), true),"
            " set_config('enable_seqscan', COALESCE({}, current_setting('enable_seqscan')), true)"
        ).format(sql.Literal(config.statement_work_mem), sql.Literal(page_cost), sql.Literal(seqscan))
    )


class ReconSession(ABC):
    """What the provider's PostgreSQL readers and writers need from a connection source:
    ``connect()`` and ``config``. Subclasses say how a connection is opened and which
    connection id errors name."""

    config: ReconConfig

    @abstractmethod
    def _open_connection(self) -> psycopg.Connection:
        """A new psycopg connection (Airflow's ``get_conn``, or ``psycopg.connect``)."""

    @property
    @abstractmethod
    def conn_id_for_errors(self) -> str:
        """The connection id that errors name."""

    @contextmanager
    def connect(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """See :func:`managed_connection`."""
        opener, conn_id = self._open_connection, self.conn_id_for_errors
        with managed_connection(opener, conn_id, autocommit=autocommit) as conn:
            yield conn

    def _tune_for_classification(self, conn: psycopg.Connection, window: Window) -> None:
        tune_for_classification(conn, window, self.config)


__all__ = ["ReconSession", "managed_connection", "tune_for_classification"]
