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

from airflow_recon_provider.reconciliation.kinds import ALL_KINDS
from airflow_recon_provider.reconciliation.money import format_money, format_pct
from airflow_recon_provider.reconciliation.report import rates_text

if TYPE_CHECKING:
    import jinja2

    from airflow_recon_provider.plugins.dashboard_data import Dashboard

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


def _input_time(moment: datetime) -> str:
    """A ``datetime-local`` input's value, in UTC (the form says so)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def _lag(value: int | None) -> str:
    return "never reconciled" if value is None else str(value)


@cache
def _template() -> jinja2.Template:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.globals.update(
        money=format_money,
        pct=format_pct,
        rates=rates_text,
        lag=_lag,
        when=_when,
        input_time=_input_time,
        conf_json=lambda conf: json.dumps(conf, indent=2),
        kinds=ALL_KINDS,
        title=TITLE,
        css=_resource("dashboard.css"),
    )
    return env.from_string(_resource("dashboard.html.j2"))


def render_dashboard(dashboard: Dashboard, *, end_param: str | None = None) -> str:
    from markupsafe import Markup

    from airflow_recon_provider.plugins.dashboard_data import MAX_CYCLES
    from airflow_recon_provider.plugins.dashboard_finance_report import render_finance_form

    return _template().render(
        d=dashboard,
        error=None,
        end_param=end_param or "",
        max_cycles=MAX_CYCLES,
        # rendered by an autoescaped template of its own
        finance_form=Markup(render_finance_form(dashboard)),
    )


def render_error(message: str) -> str:
    return _template().render(d=None, error=message, end_param="", max_cycles=0, finance_form="")
