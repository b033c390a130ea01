"""Hook for Detecção 2 (finance's reports): the gateway and the PSP's statement side by side.

Runbook, Detecção: "diferenças entre ledger interno e extratos PSP". Finance compares its
ledger with the PSP's statement; the dry run it starts shows the gateway's rows and the
statement's lines of the window per status and currency (the statement's statuses in the
gateway's vocabulary, through the PSP's status mapping), next to the ledger's status counts
the investigation already read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
from airflow_recon_provider.reconciliation.finance_report import side_by_side, sides_query

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from airflow_recon_provider.reconciliation.window import Window


class FinanceReportHook(BillingGatewayHook):
    """The gateway database read for a finance report's findings (a read replica works).

    :param billing_gateway_conn_id: Airflow connection of the gateway database.
    :param config: reconciliation configuration (PSPs, status mappings, table mapping).
    """

    hook_name = "Billing Gateway finance reports (PostgreSQL)"

    def sides(
        self, psp: str, window: Window, *, ledger_statuses: Iterable[Mapping[str, Any]] = ()
    ) -> dict[str, Any]:
        """Gateway vs statement per (status, currency), and the ledger per status (see
        :func:`~airflow_recon_provider.reconciliation.finance_report.side_by_side`)."""
        psp_config = self.resolve_psp(psp)
        with self.connect(autocommit=True) as conn:
            rows = conn.execute(
                sides_query(self.config.mapping),
                {"psp": psp_config.name, "start": window.start, "end": window.end},
            ).fetchall()
        return side_by_side(rows, status_mapping=psp_config.status_mapping, ledger_statuses=ledger_statuses)


__all__ = ["FinanceReportHook"]
