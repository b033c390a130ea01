"""Hook on the payments ledger database (connection ``payments_ledger_db``).

Runbook, Investigação 3 ("Integridade de Dados"): status counts of
``ledger.transactions`` for the PSP and period, beside the gateway's.
"""

from __future__ import annotations

from typing import Any

from airflow_recon_provider.hooks._postgres import ReconPostgresHook
from airflow_recon_provider.names import PAYMENTS_LEDGER_CONN_ID
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
    default_conn_name = PAYMENTS_LEDGER_CONN_ID
    conn_type = "payments_ledger"
    hook_name = "Payments Ledger DB (PostgreSQL)"

    def __init__(self, *args: Any, payments_ledger_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.payments_ledger_conn_id = payments_ledger_conn_id

    def status_counts(self, psp: str, window: Window) -> list[tuple[str, str | None, int, int]]:
        """The runbook's ``GROUP BY status``, per currency too: ``(status, currency, count,
        amount_minor)``, each amount in its own currency (``queries.ledger_totals_query``,
        the recovery criterion's query; ``ledger.transactions.currency`` — mapping key
        ``ledger_transactions.currency``)."""
        check_psp_name(psp)
        with self.connect(autocommit=True) as conn:
            rows = conn.execute(
                queries.ledger_totals_query(self.config.mapping),
                {"psp": psp, "start": window.start, "end": window.end},
            )
            return [(status, currency, int(n), int(amount)) for status, currency, n, amount in rows]

    def compare_with_gateway(self, psp: str, window: Window, gateway_hook: Any) -> LedgerComparison:
        """Ledger and gateway side by side for the same PSP and window, per status (the
        gateway's vocabulary, through the PSP's ``ledger_status_mapping`` and
        ``status_mapping``) and currency; amounts are never added across currencies."""
        psp_cfg = gateway_hook.resolve_psp(psp)
        return compare_status_counts(
            psp,
            window,
            gateway=gateway_hook.gateway_status_counts(psp, window),
            ledger=self.status_counts(psp, window),
            status_mapping=psp_cfg.status_mapping,
            ledger_status_mapping=psp_cfg.ledger_status_mapping,
        )
