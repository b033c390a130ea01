"""The incident and evidence pages of the dashboard, in pt-BR, server-rendered (Jinja2,
autoescaped: incident reasons, outcomes, actors and file names may hold any text).

The incident page follows the runbook's headings (Detecção, Investigação, Ações de
Contenção, Mitigação, Correção de Dados, Comunicação, Critérios de Recuperação,
Encerramento); amounts go through :func:`money.format_money` in their own currency, and a
converted total says so and with which rates. Links are relative (the app is mounted at
``/recon`` under whatever base URL Airflow has), each template gets ``root``: the way back
to ``/recon/`` from its own URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_recon_provider.plugins.dashboard_incidents import (
    ARTIFACT_KINDS,
    STATE_LABELS,
    run_artifacts_href,
)
from airflow_recon_provider.reconciliation.incidents import IncidentState
from airflow_recon_provider.reconciliation.money import format_money, format_pct, format_rate

if TYPE_CHECKING:
    import jinja2

    from airflow_recon_provider.plugins.dashboard_incidents import (
        ArtifactView,
        IncidentDetail,
        IncidentList,
        RunArtifacts,
    )
    from airflow_recon_provider.reconciliation.figures import Figures
    from airflow_recon_provider.reconciliation.incidents import IncidentEvent

LOCALE = "pt_BR"
TITLE = "Reconciliação Financeira"

# -- the runbook's headings ---------------------------------------------------------------------

DETECCAO = "Detecção"
INVESTIGACAO = "Investigação"
CONTENCAO = "Ações de Contenção"
MITIGACAO = "Mitigação"
CORRECAO = "Correção de Dados"
COMUNICACAO = "Comunicação"
RECUPERACAO = "Critérios de Recuperação"
ENCERRAMENTO = "Encerramento"

#: step recorded on the timeline -> (runbook heading, what happened)
_STEPS: dict[str, tuple[str, str]] = {
    "incident.opened": (DETECCAO, "Incidente aberto"),
    "detection.finance_report": (DETECCAO, "Relato do financeiro"),
    "investigation.finance_findings": (INVESTIGACAO, "Achados da simulação (relato do financeiro)"),
    "communication.finance_report_slack": (COMUNICACAO, "Plantão avisado no Slack (relato do financeiro)"),
    "investigation.scope": (INVESTIGACAO, "Validar escopo"),
    "investigation.snapshot": (INVESTIGACAO, "Snapshot do banco"),
    "containment.pause": (CONTENCAO, "Reconciliação automática pausada"),
    "incident.eta_resumption": (CONTENCAO, "Estimativa de retomada"),
    "communication.containment_notice": (CONTENCAO, "Aviso de congelamento ao financeiro"),
    "mitigation.reprocess": (MITIGACAO, "Reprocessamento"),
    "mitigation.rollback": (MITIGACAO, "Rollback de deploy"),
    "mitigation.psp_ticket": (MITIGACAO, "Sincronização com PSP (chamado)"),
    "mitigation.data_correction": (CORRECAO, "Correção de dados"),
    "incident.psp_ticket": (COMUNICACAO, "Ticket do PSP registrado"),
    "communication.update": (COMUNICACAO, "Resumo ao financeiro"),
    "communication.normalized": (COMUNICACAO, "Resumo final ao financeiro"),
    "communication.update_missed": (COMUNICACAO, "Resumo ao financeiro não enviado"),
    "recovery.criteria": (RECUPERACAO, "Critérios de recuperação"),
    "closure.resume": (ENCERRAMENTO, "Reconciliação automática retomada"),
    "closure.tag_release": (ENCERRAMENTO, "Tag da release"),
    "incident.closing_report": (ENCERRAMENTO, "Relatório de encerramento anexado"),
    "closure.finance_review": (ENCERRAMENTO, "Revisão com financeiro agendada"),
}
_PREFIXES = {
    "investigation.": INVESTIGACAO,
    "containment.": CONTENCAO,
    "mitigation.": MITIGACAO,
    "communication.": COMUNICACAO,
    "recovery.": RECUPERACAO,
    "closure.": ENCERRAMENTO,
}
#: a state change belongs to the heading of the state it reaches
_STATE_SECTIONS = {
    IncidentState.OPEN.value: DETECCAO,
    IncidentState.MITIGATING.value: MITIGACAO,
    IncidentState.RECOVERED.value: RECUPERACAO,
    IncidentState.CLOSED.value: ENCERRAMENTO,
}
_ARTIFACT_SECTIONS = {
    "snapshot": INVESTIGACAO,
    "dry_run": CORRECAO,
    "psp_ticket": MITIGACAO,
    "closing_report": ENCERRAMENTO,
    "closing_report_html": ENCERRAMENTO,
    "release_record": ENCERRAMENTO,
}


def step_section(event: IncidentEvent) -> str:
    """The runbook heading a timeline event belongs to."""
    if event.step == "incident.state":
        return _STATE_SECTIONS.get(str(event.details.get("to", "")), DETECCAO)
    if event.step in _STEPS:
        return _STEPS[event.step][0]
    for prefix, section in _PREFIXES.items():
        if event.step.startswith(prefix):
            return section
    return "Outros"


def step_label(event: IncidentEvent) -> str:
    if event.step == "incident.state":
        before = STATE_LABELS.get(_state(event.details.get("from")), str(event.details.get("from") or "?"))
        after = STATE_LABELS.get(_state(event.details.get("to")), str(event.details.get("to") or "?"))
        return f"Estado: {before} → {after}"
    return _STEPS.get(event.step, ("", event.step))[1]


def _state(value: Any) -> IncidentState | None:
    try:
        return IncidentState(str(value))
    except ValueError:
        return None


def event_artifacts(event: IncidentEvent) -> list[tuple[int, str]]:
    """``(id, name)`` of the artifacts a timeline event names (``ArtifactRecord.summary()`` in
    its details: ``artifact``, ``artifact_record``, ``snapshot`` or the list ``artifacts``), so
    the page links them on the dashboard itself, whatever base URL was configured then."""
    found: dict[int, str] = {}

    def take(value: Any) -> None:
        if isinstance(value, Mapping) and value.get("link") and type(value.get("id")) is int:
            found.setdefault(value["id"], str(value.get("name") or f"artefato {value['id']}"))

    details = event.details or {}
    for key in ("artifact", "artifact_record", "snapshot"):
        take(details.get(key))
    listed = details.get("artifacts")
    for value in listed if isinstance(listed, list) else ():
        take(value)
    return list(found.items())


def artifact_section(artifact: ArtifactView) -> str:
    return _ARTIFACT_SECTIONS.get(artifact.kind, "Outros")


# -- numbers and moments, pt-BR -----------------------------------------------------------------


def when(moment: datetime | None) -> str:
    """``05/12/2026 14:30 UTC``."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%d/%m/%Y %H:%M UTC")


def count(value: int | None) -> str:
    from babel.numbers import format_decimal

    return "-" if value is None else format_decimal(int(value), locale=LOCALE)


def size(value: int | None) -> str:
    return "tamanho não registrado" if value is None else f"{count(value)} bytes"


def money(amount_minor: int | None, currency: str | None) -> str:
    """An amount in its own currency; one recorded without its currency says so (no guess)."""
    if amount_minor is None:
        return "-"
    if not currency:
        return f"{count(amount_minor)} unidades menores (moeda não registrada)"
    return format_money(amount_minor, currency, locale=LOCALE)


def pct(value: float | None) -> str:
    return "n/d" if value is None else format_pct(value, locale=LOCALE)


def transactions(n: int) -> str:
    return f"{count(n)} transação" if n == 1 else f"{count(n)} transações"


def rates(figures: Figures) -> str:
    """``1 EUR = 6,2875 BRL (desde 04/12/2026 16:00 UTC, BCB PTAX)``; ``; `` between rates."""
    return "; ".join(
        f"1 {code} = {format_rate(r.rate, locale=LOCALE)} {figures.reporting_currency or '?'}"
        f" (desde {when(r.valid_from)}, {r.source or 'fonte não registrada'})"
        for code, r in sorted(figures.fx_rates.items())
    )


def figures_view(figures: Figures | None) -> dict[str, Any] | None:
    """The figures as the dashboard shows them: the total (converted when several currencies,
    with its rates), each currency's own divergent amount, and the currencies without a rate."""
    if figures is None:
        return None
    per_currency = [
        {
            "currency": code,
            "amount": money(fig.divergent_amount_minor, code),
            "count": transactions(fig.divergent_count),
            "gateway": money(fig.gateway_amount_minor, code)
            if fig.gateway_amount_minor is not None
            else None,
            "no_rate": code in figures.unconverted_currencies,
        }
        for code, fig in sorted(figures.by_currency.items())
        if fig.has_divergence
    ]
    return {
        "total": money(figures.divergent_amount_minor, figures.reporting_currency),
        "count": transactions(figures.divergent_count),
        "pct": pct(figures.divergence_pct),
        "converted": figures.converted,
        "several": figures.several_currencies,
        "reporting_currency": figures.reporting_currency,
        "rates": rates(figures),
        "per_currency": per_currency,
        "unconverted": list(figures.unconverted_currencies),
    }


# -- templates ----------------------------------------------------------------------------------


def _resource(name: str) -> str:
    from importlib.resources import files

    return files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


@cache
def _env() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_resource),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(
        title=TITLE,
        css=_resource("dashboard.css") + _resource("incidents.css"),
        when=when,
        count=count,
        size=size,
        money=money,
        figures_view=figures_view,
        step_section=step_section,
        step_label=step_label,
        artifact_section=artifact_section,
        event_artifacts=event_artifacts,
        state_labels=STATE_LABELS,
        states=list(IncidentState),
        artifact_kinds=ARTIFACT_KINDS,
        q=lambda text: quote(str(text), safe=""),
        run_href=run_artifacts_href,
        finance_reports=_finance_reports,
    )
    return env


def _finance_reports(detail: IncidentDetail) -> list[Any]:
    from airflow_recon_provider.plugins.dashboard_finance_report import finance_reports

    return finance_reports(detail)


def render_incident_list(listing: IncidentList) -> str:
    return _env().get_template("incidents.html.j2").render(root="./", l=listing)


def render_incident(detail: IncidentDetail) -> str:
    return _env().get_template("incident.html.j2").render(root="../", d=detail)


def render_run_artifacts(run: RunArtifacts) -> str:
    return _env().get_template("run_artifacts.html.j2").render(root="../../../", r=run)


def render_problem(message: str, *, status_code: int, root: str) -> str:
    """A page that says what went wrong (pt-BR), with the way back."""
    headline = {
        400: "Endereço inválido",
        404: "Não encontrado",
        503: "Indisponível no momento",
    }.get(status_code, "Erro")
    return (
        _env()
        .get_template("problem.html.j2")
        .render(root=root, message=message, headline=headline, status_code=status_code)
    )


__all__ = [
    "render_incident",
    "render_incident_list",
    "render_problem",
    "render_run_artifacts",
    "step_label",
    "step_section",
]
