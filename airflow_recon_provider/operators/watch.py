"""The divergence watch (runbook "Detecção"): turn alerts into incidents and remediation runs.

An alert comes from the ``DivergenceTrigger`` behind the watch DAG's ``AssetWatcher``
(its payload is in the run's triggering asset events) or, for a run with no asset event
(the hourly fallback for sites without a triggerer, or a manual run), from one poll of
the same trigger. Each alert opens the PSP's incident; a PSP that already has an open
incident gets no second one, and no second remediation run — unless that incident came from
finance's report and nothing but the report's dry run worked on it: then the alert fires on
that incident, the watch records why on its timeline (``detection.watch_alert``) and starts
its real remediation (the rule:
:func:`~airflow_recon_provider.reconciliation.detection.watch_fires_on_open_incident`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_recon_provider.reconciliation.detection import WATCH_ACTOR, WATCH_RUN_PREFIX

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.detection import OpenIncidentActivity


def alerts_from_asset_events(triggering_asset_events: Any) -> list[dict[str, Any]]:
    """Alert payloads carried by the run's triggering asset events (``extra.payload`` of
    events created by a trigger), newest per PSP."""
    alerts: dict[str, dict[str, Any]] = {}
    for events in (triggering_asset_events or {}).values():
        for event in events:
            extra = getattr(event, "extra", None) or {}
            payload = extra.get("payload") if isinstance(extra, dict) else None
            if isinstance(payload, dict) and payload.get("status") == "alert" and payload.get("psp"):
                alerts[payload["psp"]] = payload
    return list(alerts.values())


class CollectDivergenceAlertsOperator(BaseOperator):
    """The alerts this run acts on: from the triggering asset events, else one poll.

    :param psps: PSPs to poll when the run has no asset event (templated); empty means the
        configured PSP list.
    :param billing_gateway_conn_id: gateway database connection (a read replica works).
    :param lookback_cycles: completed hourly cycles covered by the checked window.
    """

    template_fields: Sequence[str] = ("psps",)

    def __init__(
        self,
        *,
        psps: list[str] | None = None,
        billing_gateway_conn_id: str = "billing_gateway_db",
        lookback_cycles: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psps = psps
        self.billing_gateway_conn_id = billing_gateway_conn_id
        self.lookback_cycles = lookback_cycles

    def execute(self, context: Context) -> list[dict[str, Any]]:
        alerts = alerts_from_asset_events(context.get("triggering_asset_events"))
        if alerts:
            self.log.info("alerts from the divergence watcher: %s", ", ".join(a["psp"] for a in alerts))
            return alerts
        import asyncio

        from airflow_recon_provider.triggers.divergence import DivergenceTrigger

        trigger = DivergenceTrigger(
            psps=list(self.psps or []),
            conn_id=self.billing_gateway_conn_id,
            lookback_cycles=self.lookback_cycles,
        )
        alerts = asyncio.run(trigger.poll_once(set()))
        self.log.info(
            "polled the divergence rule: %s", ", ".join(a["psp"] for a in alerts) or "no PSP breaches it"
        )
        return alerts


class OpenIncidentsForAlertsOperator(BaseOperator):
    """Open one incident per alert and return the remediation runs to start.

    A PSP whose incident is already open gets a remediation run only when the rule says the
    alert fires on that incident (finance's report, nothing but its dry run): the decision is
    taken again here, under the PSP's incident lock, and recorded on the timeline.

    Returns ``[{"trigger_run_id": ..., "conf": {psp, window_start, window_end,
    incident_id, dry_run: false}}]``: the run id is derived from the incident, so a retry
    never starts a second remediation for it.

    :param alerts: alert payloads (templated; usually the upstream task's XCom).
    :param billing_gateway_conn_id: gateway database connection (the primary: this writes).
    """

    template_fields: Sequence[str] = ("alerts",)

    def __init__(
        self,
        *,
        alerts: Any,
        billing_gateway_conn_id: str = "billing_gateway_db",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alerts = alerts
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.reconciliation.incidents import IncidentAlreadyOpenError
        from airflow_recon_provider.reconciliation.window import Window

        hook = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        runs = []
        for alert in self.alerts or []:
            window = Window.parse(alert["window_start"], alert["window_end"], max_span=None)
            try:
                incident_id = hook.open_incident(
                    alert["psp"],
                    window=window,
                    reason=f"alert billing_gateway-reconciliation ({alert['reason']})",
                    actor=WATCH_ACTOR,
                    run_id=context["run_id"],
                    figures=alert,
                )
            except IncidentAlreadyOpenError as exc:
                attached = self._fire_on_open_incident(hook, alert, context["run_id"])
                if attached is None:
                    # fire and clear are separate: an open incident already has its remediation
                    self.log.info("PSP %s: %s; no new remediation", alert["psp"], exc)
                    continue
                incident_id = attached
            else:
                self.log.info("PSP %s: opened %s; starting remediation", alert["psp"], incident_id)
            runs.append(
                {
                    "trigger_run_id": f"{WATCH_RUN_PREFIX}{incident_id}",
                    "conf": {
                        "psp": alert["psp"],
                        "window_start": alert["window_start"],
                        "window_end": alert["window_end"],
                        "incident_id": incident_id,
                        "dry_run": False,
                    },
                }
            )
        return runs

    def _fire_on_open_incident(self, hook: IncidentHook, alert: dict[str, Any], run_id: str) -> str | None:
        """The incident the alert fires on when the PSP's open incident is one only finance's
        report worked on (recorded on its timeline), else ``None``."""
        from airflow_recon_provider.i18n import _, language_scope

        def event(activity: OpenIncidentActivity) -> tuple[str, dict[str, Any]]:
            remediation_run_id = f"{WATCH_RUN_PREFIX}{activity.incident_id}"
            with language_scope():
                text = _(
                    "Alert billing_gateway-reconciliation (%(reason)s) on incident %(incident)s, which only "
                    "finance's report worked on (dry run %(dry_runs)s): the divergence watch starts its real "
                    "remediation, run %(run)s.",
                    reason=alert.get("reason") or "",
                    incident=activity.incident_id,
                    dry_runs=", ".join(sorted(activity.finance_dry_runs)),
                    run=remediation_run_id,
                )
            alert_fields = ("reason", "window_start", "window_end", "checked_at")
            return text, {
                "alert": {key: alert.get(key) for key in alert_fields},
                "remediation_run_id": remediation_run_id,
            }

        decision = hook.fire_watch_on_open_incident(
            alert["psp"],
            actor=WATCH_ACTOR,
            run_id=run_id,
            event=event,
            figures=alert,
        )
        if decision is None:
            return None
        activity, fires, why = decision
        if not fires:
            self.log.info("PSP %s: not firing on incident %s: %s", alert["psp"], activity.incident_id, why)
            return None
        self.log.info("PSP %s: the alert fires on incident %s: %s", alert["psp"], activity.incident_id, why)
        return activity.incident_id
