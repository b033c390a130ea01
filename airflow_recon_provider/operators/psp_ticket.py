"""PspTicketOperator — runbook, Mitigação 4 (Sincronização com PSP).

"Abrir chamado junto ao PSP fornecendo IDs das transações divergentes quando
inconsistência for externa." The divergent keys of the external kinds are streamed from
the gateway database (server-side cursor) into a CSV artifact for the PSP, written once to
the artifact store and recorded in ``recon.artifacts``; XCom gets its dashboard link and the
counts, never the rows nor a worker path. The PSP assigns the ticket number; when the run
knows it (a templated param), it is returned as ``psp_ticket`` for the incident record
(runbook, Comunicação: "Registrar número do ticket do PSP (se houver) no incidente").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.operators._scoped import ScopedOperator
from airflow_recon_provider.reconciliation.psp_ticket import EXTERNAL_KINDS

if TYPE_CHECKING:
    from airflow.sdk import Context

#: the default kinds, as names
EXTERNAL_KIND_NAMES: tuple[str, ...] = tuple(kind.value for kind in EXTERNAL_KINDS)


class PspTicketOperator(ScopedOperator):
    """Write the CSV of divergent transactions to send to the PSP.

    Columns: ``provider_reference``, ``transaction_type``, ``kind``,
    ``gateway_transaction_id`` (the gateway's ``payment_transactions.id``, the smallest for
    duplicates), gateway amount and its currency, statement amount and its currency (they
    differ for a currency mismatch), divergent amount and its currency (the key's), the
    extra copies of a duplicate in other currencies, both statuses. Amounts are integer
    minor units of their own currency; the XCom counts are per currency, never summed across
    currencies.

    :param psp: the PSP (templated).
    :param window_start: start of the window, ISO 8601 with offset (templated).
    :param window_end: end of the window, exclusive (templated).
    :param divergence_kinds: kinds to include (templated; list or comma-separated); default
        the external ones: duplicate_in_statement, missing_in_statement,
        missing_in_gateway, currency_mismatch, amount_mismatch.
    :param ticket_number: the PSP's ticket number, when known (templated); returned as
        ``psp_ticket``.
    :param incident_id: the incident the CSV belongs to (templated); empty: none.
    :param artifacts_dir: another artifact store base (a directory or a URL such as
        ``s3://bucket/prefix``) than ``[recon] artifacts_base_url`` (templated). The CSV is
        ``<base>/<dag_id>/<run_id>/psp_ticket_<psp>.csv``.
    :param billing_gateway_conn_id: connection of the gateway database (a replica works).
    """

    template_fields: Sequence[str] = (
        "psp",
        "window_start",
        "window_end",
        "divergence_kinds",
        "ticket_number",
        "incident_id",
        "artifacts_dir",
    )
    ui_color = "#e0f2f1"

    def __init__(
        self,
        *,
        psp: str,
        window_start: str | datetime,
        window_end: str | datetime,
        divergence_kinds: Sequence[str] | str | None = EXTERNAL_KIND_NAMES,
        ticket_number: str | None = None,
        incident_id: str | None = None,
        artifacts_dir: str | None = None,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.window_start = window_start
        self.window_end = window_end
        self.divergence_kinds = (
            list(divergence_kinds) if isinstance(divergence_kinds, tuple) else divergence_kinds
        )
        self.ticket_number = ticket_number
        self.incident_id = incident_id
        self.artifacts_dir = artifacts_dir
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.artifacts import spool_file
        from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
        from airflow_recon_provider.i18n import language_scope
        from airflow_recon_provider.operators._artifacts import publish_artifact
        from airflow_recon_provider.reconciliation.psp_ticket import (
            check_ticket_number,
            parse_ticket_kinds,
            write_ticket_csv,
        )

        psp = self.scope_psp()
        config = self.scope_config()
        window = self.scope_window(config)
        kinds = parse_ticket_kinds(self.divergence_kinds)
        with language_scope():  # the reason, if refused, in [recon] language
            ticket = check_ticket_number(self.ticket_number)
        incident_id = self.scope_incident_id()
        name = f"psp_ticket_{psp}.csv"

        gateway = BillingGatewayHook(billing_gateway_conn_id=self.billing_gateway_conn_id, config=config)
        with spool_file(name) as spool:
            with open(spool, "w", newline="", encoding="utf-8") as out:
                counts = write_ticket_csv(gateway.iter_divergences(psp, window, kinds), out)
            # once, atomically, in the artifact store; a retry that reads other rows keeps
            # the first try's file and stores its own beside it
            artifact = publish_artifact(
                context,
                kind="psp_ticket",
                name=name,
                source=spool,
                psp=psp,
                incident_id=incident_id,
                base_url=self.optional_text("artifacts_dir"),
                billing_gateway_conn_id=self.billing_gateway_conn_id,
                keep_retries=True,
            )

        if counts.rows:
            self.log.info(
                "PSP %s window %s: %d divergent transaction(s) for the PSP ticket%s: %s (%s); "
                "divergent amount per currency: %s",
                psp,
                window,
                counts.rows,
                f" {ticket}" if ticket else "",
                artifact.describe(),
                ", ".join(f"{kind} {n}" for kind, n in counts.by_kind.items()),
                counts.currency_text(),
            )
        else:
            self.log.info(
                "PSP %s window %s: no external divergence (%s); nothing to send to the PSP "
                "(%s has the header only)",
                psp,
                window,
                ", ".join(k.value for k in kinds),
                artifact.describe(),
            )
        return {
            "psp": psp,
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "kinds": [k.value for k in kinds],
            "artifact": artifact.summary(),
            "rows": counts.rows,
            "counts": {k.value: counts.by_kind.get(k.value, 0) for k in kinds},
            # per currency, in its own minor units: never one sum across currencies
            "by_currency": counts.currency_dict(),
            "psp_ticket": ticket,
            "incident_id": incident_id,
        }


__all__ = ["EXTERNAL_KIND_NAMES", "PspTicketOperator"]
