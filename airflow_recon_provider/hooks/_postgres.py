"""Shared plumbing of the provider's PostgreSQL hooks: connection errors that name the
problem, UTC sessions, and per-statement settings for heavy classification queries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.postgres.hooks.postgres import PostgresHook

from airflow_recon_provider.hooks._connections import is_missing_connection, missing_connection_error
from airflow_recon_provider.reconciliation.config import ReconConfig
from airflow_recon_provider.reconciliation.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    import psycopg

    from airflow_recon_provider.reconciliation.window import Window


class ReconPostgresHook(PostgresHook):
    """A :class:`PostgresHook` that knows the reconciliation configuration.

    :param config: table mapping, PSPs and thresholds; ``ReconConfig.load()`` when omitted.
    """

    def __init__(self, *args: Any, config: ReconConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = config if config is not None else ReconConfig.load()

    @contextmanager
    def connect(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A psycopg 3 connection in UTC, committed when the block succeeds and rolled back
        when it raises; errors become :class:`ConnectionMissingError` or
        :class:`DatabaseUnavailableError` with the connection id in the message."""
        import psycopg

        conn_id = getattr(self, self.conn_name_attr)
        try:
            conn = self.get_conn()
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailableError(
                f"database of connection {conn_id!r} is unreachable: {first}"
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
            # like psycopg's own `with connection:` — work done in the block is kept
            # only when the block succeeds
            if not autocommit and not conn.closed:
                conn.commit()
        except BaseException as exc:
            if not conn.closed and not autocommit:
                conn.rollback()
            if isinstance(exc, psycopg.OperationalError) and conn.broken:
                # the server went away in the middle (restart, failover, network): say which
                # database, not only libpq's "server closed the connection unexpectedly"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DatabaseUnavailableError(
                    f"database of connection {conn_id!r} was lost in the middle of the operation: {first}"
                ) from exc
            raise
        finally:
            conn.close()

    def _tune_for_classification(self, conn: psycopg.Connection, window: Window) -> None:
        """Per-transaction settings of the classification query (see PERFORMANCE notes):
        enough memory for the hash aggregates and join, no JIT compile. On short windows
        (an hourly cycle, a day) the rows are few and reached through the time indexes; the
        default random_page_cost makes the planner hash-join a full scan of payment_intents
        instead of probing its primary key, which is 4-5x slower there."""
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
            ).format(
                sql.Literal(self.config.statement_work_mem), sql.Literal(page_cost), sql.Literal(seqscan)
            )
        )
