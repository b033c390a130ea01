"""Shared plumbing of the provider's PostgreSQL hooks: Airflow's ``PostgresHook`` with the
provider's session rules (:mod:`._pg_session`: connection errors that name the problem, UTC
sessions, per-statement settings for heavy classification queries)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.postgres.hooks.postgres import PostgresHook

from airflow_recon_provider.hooks._pg_session import ReconSession
from airflow_recon_provider.reconciliation.config import ReconConfig

if TYPE_CHECKING:
    import psycopg


class ReconPostgresHook(ReconSession, PostgresHook):
    """A :class:`PostgresHook` that knows the reconciliation configuration.

    :param config: table mapping, PSPs and thresholds; ``ReconConfig.load()`` when omitted.
    """

    def __init__(self, *args: Any, config: ReconConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = config if config is not None else ReconConfig.load()

    def _open_connection(self) -> psycopg.Connection:
        return self.get_conn()

    @property
    def conn_id_for_errors(self) -> str:
        return getattr(self, self.conn_name_attr)
