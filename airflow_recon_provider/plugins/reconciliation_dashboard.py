"""The "Reconciliação Financeira" plugin: the dashboard of the runbook's Detecção step, in
the Airflow UI.

Airflow 3 plugin interfaces only: the provider's own FastAPI app (``fastapi_apps``) is
mounted by Airflow's API server at ``/recon`` — no extra server — and an external view
(``external_views``) puts it in the UI's navigation, shown inside the UI at
``/plugin/reconciliacao-financeira``. Registered through the ``airflow.plugins`` entry
point of the package, so installing the package is enough.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_recon_provider.plugins.dashboard_app import create_app
from airflow_recon_provider.plugins.dashboard_page import TITLE

URL_PREFIX = "/recon"
URL_ROUTE = "reconciliacao-financeira"


class ReconciliationDashboardPlugin(AirflowPlugin):
    """Per PSP: divergence (amount, %, count by kind), lag, pause state, open incident and
    timeline, recent corrections with their approver, and links to start remediation."""

    name = "reconciliation_dashboard"
    fastapi_apps = [
        {
            "app": create_app(),
            "url_prefix": URL_PREFIX,
            "name": TITLE,
        }
    ]
    external_views = [
        {
            "name": TITLE,
            # relative to the UI's base URL, so a deployment under a sub-path keeps working
            "href": "recon/",
            "url_route": URL_ROUTE,
            "destination": "nav",
            "icon": "recon/static/icon.svg",
        }
    ]
