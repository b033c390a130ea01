"""The incident and evidence pages of the dashboard, server-rendered (Jinja2, autoescaped:
incident reasons, outcomes, actors and file names may hold any text), in the language in
force (``[recon] language``, pt-BR by default; the routes render inside ``language_scope``)
through the gettext catalog (docs/i18n.md).

The incident page follows the runbook's headings (Detecção, Investigação, Ações de
Contenção, Mitigação, Correção de Dados, Comunicação, Critérios de Recuperação,
Encerramento), the step names of :mod:`reconciliation.steps` (the one table for every
surface); amounts go through :func:`money.format_money` in their own currency, and a
converted total says so and with which rates. Links are relative (the app is mounted at
``/recon`` under whatever base URL Airflow has), each template gets ``root``: the way back
to ``/recon/`` from its own URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_recon_provider.plugins._formatting import (
    _resource,
    count,
    money,
    pct,
    rates,
    size,
    transactions,
    when,
)
from airflow_recon_provider.plugins.dashboard_incidents import (
    ARTIFACT_KINDS,
    run_artifacts_href,
    state_label,
)
from airflow_recon_provider.reconciliation import steps
from airflow_recon_provider.reconciliation.i18n import (
    LANGUAGES,
    _,
    current_language,
    install_jinja,
)
from airflow_recon_provider.reconciliation.incidents import IncidentState

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

TITLE = "Reconciliação Financeira"

#: the runbook heading (a message id of :mod:`.steps`) an artifact kind belongs to
_ARTIFACT_SECTIONS = {
    "snapshot": steps.INVESTIGATION,
    "dry_run": steps.DATA_CORRECTION,
    "psp_ticket": steps.MITIGATION,
    "closing_report": steps.CLOSURE,
    "closing_report_html": steps.CLOSURE,
    "release_record": steps.CLOSURE,
}


def step_section(event: IncidentEvent) -> str:
    """The runbook heading a timeline event belongs to, in the language in force
    (``Ações de Contenção``): the one table of :mod:`reconciliation.steps`."""
    return steps.section_title(steps.step_section(event.step, event.details))


def step_label(event: IncidentEvent) -> str:
    """What happened, in the runbook's words (``Validar Escopo``; ``Estado: aberto →
    recuperado``); a step no table knows keeps its id."""
    return steps.step_name(event.step, event.details)


def event_artifacts(event: IncidentEvent) -> list[tuple[int, str]]:
    """``(id, name)`` of the artifacts a timeline event names (``ArtifactRecord.summary()`` in
    its details: ``artifact``, ``artifact_record``, ``snapshot`` or the list ``artifacts``), so
    the page links them on the dashboard itself, whatever base URL was configured then."""
    found: dict[int, str] = {}

    def take(value: Any) -> None:
        if isinstance(value, Mapping) and value.get("link") and type(value.get("id")) is int:
            found.setdefault(value["id"], str(value.get("name") or _("artifact %(id)s", id=value["id"])))

    details = event.details or {}
    for key in ("artifact", "artifact_record", "snapshot"):
        take(details.get(key))
    listed = details.get("artifacts")
    for value in listed if isinstance(listed, list) else ():
        take(value)
    return list(found.items())


def artifact_section(artifact: ArtifactView) -> str:
    return steps.section_title(_ARTIFACT_SECTIONS.get(artifact.kind, steps.OTHER))


# -- numbers and moments, in the language in force --------------------------------------------

#: how a moment reads: ``05/12/2026 14:30 UTC`` (pt-BR), ``2026-12-05 14:30 UTC`` (en)


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


def html_lang() -> str:
    """The page's ``lang`` attribute: the language it is rendered in."""
    return LANGUAGES.get(current_language(), "pt-BR")


# -- templates ----------------------------------------------------------------------------------


@cache
def _env() -> jinja2.Environment:
    import jinja2

    env = install_jinja(
        jinja2.Environment(
            loader=jinja2.FunctionLoader(_resource),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
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
        state_label=state_label,
        kind_name=steps.kind_name,
        html_lang=html_lang,
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
    """A page that says what went wrong (in the language in force), with the way back."""
    headline = {
        400: _("Invalid address"),
        404: _("Not found"),
        409: _("Not possible now"),
        503: _("Unavailable at the moment"),
    }.get(status_code, _("Error"))
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
