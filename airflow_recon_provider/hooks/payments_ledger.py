"""Hook on the payments ledger database (connection ``payments_ledger_db``).

Runbook, Investigação 3 ("Integridade de Dados"): status counts of
``ledger.transactions`` for the PSP and period, beside the gateway's.
"""

from __future__ import annotations

from typing import Any

from airflow_recon_provider.hooks._postgres import ReconPostgresHook
from airflow_recon_provider.reconciliation import queries
from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.ledger import LedgerComparison, compare_status_counts
from airflow_recon_provider.reconciliation.window import Window


class PaymentsLedgerHook(ReconPostgresHook):
    """Read ``ledger.transactions``.

    :param payments_ledger_conn_id: Airflow connection of the ledger database.
    :param config: reconciliation configuration (table mapping).
    """

    conn_name_attr = "payments_ledger_conn_id"
    default_conn_name = "payments_ledger_db"
    conn_type = "payments_ledger"
    hook_name = "Payments Ledger DB (PostgreSQL)"

    def __init__(self, *args: Any, payments_ledger_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.payments_ledger_conn_id = payments_ledger_conn_id

    def status_counts(self, psp: str, window: Window) -> dict[str, tuple[int, int]]:
        """The runbook's ``GROUP BY status``: ``{status: (count, amount_minor)}``."""
        check_psp_name(psp)
        with self.connect(autocommit=True) as conn:
            rows = conn.execute(
                queries.ledger_status_counts_query(self.config.mapping),
                {"psp": psp, "start": window.start, "end": window.end},
            )
            return {status: (int(n), int(amount)) for status, n, amount in rows}

    def compare_with_gateway(self, psp: str, window: Window, gateway_hook: Any) -> LedgerComparison:
        """Ledger and gateway status counts side by side for the same PSP and window."""
        gateway = gateway_hook.gateway_status_counts(psp, window)
        return compare_status_counts(psp, window, gateway=gateway, ledger=self.status_counts(psp, window))
