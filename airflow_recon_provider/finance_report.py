"""Detecção 2 — finance's reports: the ``billing_gateway_finance_report`` form and the
callback through which the dry run it starts records its findings.

Runbook *Billing Gateway — Falhas de Reconciliação*, Detecção: "Chamados do financeiro
relatando diferenças entre ledger interno e extratos PSP". The DAG's form reuses the
remediation's PSP and window fields (:func:`~airflow_recon_provider.remediation.psp_param`,
:func:`~airflow_recon_provider.remediation.window_params`: the same enum and date-time
checks), and adds finance's ticket and description. The operators are imported lazily, so a
DAG file that composes these parses fast.

The dry run is an ordinary ``billing_gateway_remediation`` run (``dry_run: true``) on the
report's incident. Its ``snapshot`` step carries :class:`RecordFinanceFindings` as a success
callback: when the run is the one a finance report started (the report's timeline event
names its run id), the callback puts what the investigation found on the incident's timeline
— divergence by kind and currency, gateway vs statement per status and currency, the ledger
per status — for the dashboard's incident page. Any other run records nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Param

from airflow_recon_provider.reconciliation.finance_report import (
    DESCRIPTION_MAX,
    DESCRIPTION_PATTERN,
    FINANCE_TICKET_PATTERN,
)

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.config import ReconConfig


def _titled(param: Param, title: str, description: str) -> Param:
    """``param``'s own checks (type, enum, format) under a pt-BR title."""
    schema = {key: value for key, value in param.schema.items() if key not in {"title", "description"}}
    return Param(param.value, title=title, description=description, **schema)


def finance_report_params(config: ReconConfig | None = None) -> dict[str, Param]:
    """The form finance fills: PSP, window (UTC), finance ticket, description."""
    from airflow_recon_provider.reconciliation.config import ReconConfig
    from airflow_recon_provider.remediation import psp_param, window_params

    problem = None
    if config is None:
        config, problem = ReconConfig.load_for_form()
    window = window_params()
    psp = (
        psp_param()  # RECON_CONFIG cannot be read: the field says why, in its own words
        if problem is not None
        else _titled(psp_param(config), "PSP", "O PSP cujo extrato diverge do ledger interno.")
    )
    return {
        "psp": psp,
        "window_start": _titled(
            window["window_start"],
            "Início da janela (UTC)",
            "Início do período afetado (inclusivo), com fuso horário, ex. 2026-11-20T10:00Z "
            "(= 07:00 em America/Sao_Paulo).",
        ),
        "window_end": _titled(
            window["window_end"],
            "Fim da janela (UTC)",
            "Fim do período afetado (exclusivo), depois do início; no máximo a janela máxima "
            "configurada (31 dias por padrão).",
        ),
        "finance_ticket": Param(
            type="string",
            pattern=FINANCE_TICKET_PATTERN,
            title="Ticket do financeiro",
            description="O chamado do financeiro, no formato FIN-<número>, ex. FIN-88.",
        ),
        "description": Param(
            type="string",
            minLength=1,
            maxLength=DESCRIPTION_MAX,
            pattern=DESCRIPTION_PATTERN,
            title="Descrição",
            description=(
                f"O que o financeiro viu: valores, transações, extrato (até {DESCRIPTION_MAX} caracteres)."
            ),
        ),
    }


__all__ = ["finance_report_params"]
