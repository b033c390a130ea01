"""The dashboard's HTML: one server-rendered page (Jinja2, autoescaped), no build step.

Links to Airflow pages are relative to ``/recon/`` (so a deployment under a sub-path keeps
working) and open in the top window: the page is usually shown inside the Airflow UI's
iframe for external views.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING

from airflow_recon_provider.plugins._formatting import input_time
from airflow_recon_provider.reconciliation.i18n import (
    LANGUAGES,
    _,
    current_language,
    format_number,
    install_jinja,
    ngettext,
)
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS
from airflow_recon_provider.reconciliation.money import format_money, format_pct
from airflow_recon_provider.reconciliation.report import rates_text
from airflow_recon_provider.reconciliation.steps import kind_name

if TYPE_CHECKING:
    import jinja2

    from airflow_recon_provider.plugins.dashboard_data import CorrectionView, Dashboard, PspStatus
    from airflow_recon_provider.plugins.dashboard_runs import RecentRuns

TITLE = "Reconciliação Financeira"


#: the page and its style sheet, package data beside this module (no build step)
_TEMPLATES = "templates"


def _resource(name: str) -> str:
    from importlib.resources import files

    return files(__package__).joinpath(_TEMPLATES, name).read_text(encoding="utf-8")


def _when(moment: datetime | None, *, seconds: bool = False) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def html_lang() -> str:
    """The page's ``lang`` attribute: the language it is rendered in."""
    return LANGUAGES.get(current_language(), "pt-BR")


def _lag(value: int | None) -> str:
    return _("never reconciled") if value is None else str(value)


def _incident_state(state: object) -> str:
    from airflow_recon_provider.plugins.dashboard_incidents import state_label

    return state_label(state)  # type: ignore[arg-type]


def lag_words(p: PspStatus) -> str:
    """The lag with the failed cycles of the window beside it: a window whose cycles failed
    never reads as a bare "0"."""
    s = p.summary
    if s is None:
        return "-"
    if s.lag_cycles is None:
        text = _("never reconciled")
    elif s.lag_cycles == 0:
        text = _("up to date (0 cycles)")
    else:
        text = ngettext("%(num)s cycle", "%(num)s cycles", s.lag_cycles)
    if p.failed_cycles:
        text += " · " + ngettext(
            "%(num)s failed cycle in the window", "%(num)s failed cycles in the window", p.failed_cycles
        )
    return text


def status_badges(p: PspStatus) -> list[tuple[str, str]]:
    """The PSP's state in words, one badge per reason: ``(css class, text)``."""
    from airflow_recon_provider.reconciliation.thresholds import AlertReason

    s = p.summary
    if s is None:
        return [("b-muted", _("state unknown: the divergence could not be read"))]
    rc = s.reporting_currency
    badges: list[tuple[str, str]] = []
    for reason in s.alert_reasons:
        if reason is AlertReason.AMOUNT:
            text = _(
                "alert: divergence of %(amount)s above the alert threshold of %(threshold)s",
                amount=format_money(s.divergent_amount_minor, rc),
                threshold=format_money(s.thresholds.alert_amount_minor, rc),
            )
        elif reason is AlertReason.LAG:
            text = (
                _("alert: never reconciled")
                if s.lag_cycles is None
                else ngettext(
                    "alert: reconciliation %(num)s cycle behind (threshold %(limit)s)",
                    "alert: reconciliation %(num)s cycles behind (threshold %(limit)s)",
                    s.lag_cycles,
                    limit=s.thresholds.alert_lag_cycles,
                )
            )
        elif reason is AlertReason.FX_RATE_MISSING:
            text = _(
                "alert: no FX rate for %(currencies)s (amount not converted)",
                currencies=", ".join(s.unconverted_currencies),
            )
        else:  # a reason added later still reads as an alert, never as healthy
            text = _("alert: %(reason)s", reason=reason.value)
        badges.append(("b-alert", text))
    if p.failed_cycles:
        badges.append(
            (
                "b-alert",
                ngettext(
                    "%(num)s reconciliation cycle failed in the window",
                    "%(num)s reconciliation cycles failed in the window",
                    p.failed_cycles,
                ),
            )
        )
    if p.cycle_counts is None:
        badges.append(("b-muted", _("the window's cycles could not be read")))
    if not badges:
        badges.append(("b-ok", _("within thresholds")))
    return badges


def within_thresholds(p: PspStatus) -> bool:
    """Nothing alerts for the PSP: a real run there needs a confirmation that says so."""
    return all(css == "b-ok" for css, _text in status_badges(p))


def real_run_effects(p: PspStatus) -> list[str]:
    """What a real (not dry) remediation run of the PSP does, in the runbook's order."""
    r = p.remediation
    incident = (
        _("records everything on incident %(incident)s", incident=r.incident_id)
        if r.incident_id
        else _("opens an incident for the PSP (when none is open) and records everything on it")
    )
    return [
        _("pauses the automatic reconciliation of %(psp)s (Containment Actions)", psp=p.display_name),
        _("tells finance by e-mail and the incidents channel (Communication)"),
        incident,
        _(
            "reprocesses the window's cycles and proposes data corrections, applied only with "
            "finance's approval (Mitigation)"
        ),
        _(
            "waits for the Recovery Criteria, then resumes the reconciliation and closes the incident "
            "(Closure)"
        ),
    ]


def _cycle_counts(counts: dict[str, int]) -> str:
    """``3 com sucesso, 2 com falha``: the window's cycles by their latest state."""
    parts = []
    for status, count in sorted(counts.items()):
        if status == "success":
            parts.append(ngettext("%(num)s cycle succeeded", "%(num)s cycles succeeded", count))
        elif status == "failed":
            parts.append(ngettext("%(num)s cycle failed", "%(num)s cycles failed", count))
        elif status == "running":
            parts.append(ngettext("%(num)s cycle running", "%(num)s cycles running", count))
        else:
            parts.append(f"{count} {status}")
    return ", ".join(parts)


@cache
def _template() -> jinja2.Template:
    import jinja2

    env = install_jinja(jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined))
    env.globals.update(
        number=format_number,
        cycle_counts=_cycle_counts,
        money=format_money,
        pct=format_pct,
        rates=rates_text,
        lag=_lag,
        lag_words=lag_words,
        incident_state=_incident_state,
        status_badges=status_badges,
        within_thresholds=within_thresholds,
        real_run_effects=real_run_effects,
        when=_when,
        input_time=input_time,
        conf_json=lambda conf: json.dumps(conf, indent=2),
        kinds=ALL_KINDS,
        kind_name=kind_name,
        title=TITLE,
        css=_resource("dashboard.css"),
    )
    return env.from_string(_resource("dashboard.html.j2"))


def render_dashboard(
    dashboard: Dashboard,
    *,
    end_param: str | None = None,
    recent_runs: RecentRuns | None = None,
    max_window_hours: int | None = None,
) -> str:
    from markupsafe import Markup

    from airflow_recon_provider.plugins.dashboard_data import MAX_CYCLES
    from airflow_recon_provider.plugins.dashboard_finance_report import render_finance_form
    from airflow_recon_provider.reconciliation.window import DEFAULT_MAX_WINDOW, LOCAL_ZONE
    from airflow_recon_provider.reconciliation.window import max_window_hours as hours_of

    return _template().render(
        d=dashboard,
        html_lang=html_lang(),
        error=None,
        error_heading=None,
        end_param=end_param or "",
        max_cycles=MAX_CYCLES,
        recent=recent_runs,
        max_hours=max_window_hours or hours_of(DEFAULT_MAX_WINDOW),
        local_zone=LOCAL_ZONE,
        # rendered by an autoescaped template of its own
        finance_form=Markup(render_finance_form(dashboard)),
    )


def render_error(message: str, *, heading: str | None = None) -> str:
    """The page with only a problem: ``heading`` says what kind (default: the data cannot be
    read), ``message`` what exactly and what to do."""
    return _template().render(
        d=None,
        html_lang=html_lang(),
        error=message,
        error_heading=heading,
        end_param="",
        max_cycles=0,
        recent=None,
        max_hours=0,
        local_zone="",
        finance_form="",
    )


def render_corrections(
    psp: str, display_name: str, rows: list[CorrectionView], *, total: int, page: int, page_size: int
) -> str:
    """Every correction of a PSP, a page at a time, with the totals."""
    import jinja2

    env = install_jinja(jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined))
    env.globals.update(
        money=format_money, when=_when, kind_name=kind_name, title=TITLE, css=_resource("dashboard.css")
    )
    pages = max(1, -(-total // page_size))
    first = (page - 1) * page_size + 1 if rows else 0
    return env.from_string(_resource("corrections.html.j2")).render(
        psp=psp,
        html_lang=html_lang(),
        display_name=display_name,
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        first=first,
        last=first + len(rows) - 1 if rows else 0,
    )
