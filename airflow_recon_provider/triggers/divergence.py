"""DivergenceTrigger: the runbook's alert ``billing_gateway-reconciliation`` (divergence
> R$ 5.000 or lag > 2 cycles), checked asynchronously in the triggerer.

Used two ways: by :class:`~airflow_recon_provider.sensors.divergence.DivergenceSensor`
(deferrable; the first event resumes the task) and as the event trigger of an
``AssetWatcher`` (the watch DAG), where it keeps polling and yields one event per new
breach. A PSP with an open incident in ``recon.incidents`` does not fire, except when that
incident came from finance's report and has had no remediation but the report's dry run
(:func:`~airflow_recon_provider.reconciliation.detection.watch_fires_on_open_incident`):
then the event names the incident (``incident_id``, ``fired_on_open_incident``) and the
watch starts its real remediation. An error while checking a PSP is logged with its reason
and never fires.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_recon_provider.reconciliation.detection import Detection, watch_window
from airflow_recon_provider.reconciliation.errors import DependencyUnavailableError, ReconError
from airflow_recon_provider.triggers._offloop import ASYNC_POSTGRES, QUERIES, import_off_loop, load_config


async def check_psp(conn: Any, config: Any, psp: str, now: datetime, lookback_cycles: int) -> Detection:
    """One detection of one PSP on an async connection (the sensor's poke uses the same)."""
    pg = await import_off_loop(ASYNC_POSTGRES)
    queries = await import_off_loop(QUERIES)
    summary = await pg.fetch_summary(conn, config, psp, watch_window(now, lookback_cycles), now)
    row = await (
        await conn.execute(queries.open_incident_activity_query(), queries.open_incident_activity_params(psp))
    ).fetchone()
    activity = queries.open_incident_activity(row)
    return Detection(
        summary=summary,
        open_incident_id=activity.incident_id if activity else None,
        checked_at=now,
        activity=activity,
    )


class DivergenceTrigger(BaseEventTrigger):
    """Poll PSPs until one breaches the alert rule without an open incident (or with an
    open incident that only finance's report and its dry run worked on).

    :param psps: PSPs to watch; empty means the configured PSP list.
    :param conn_id: connection of the billing gateway database (a read replica works).
    :param lookback_cycles: how many completed hourly cycles the checked window covers.
    :param poll_interval: seconds between polls.
    :param once: stop after the first event (sensor use); ``False`` keeps watching
        (AssetWatcher use), firing at most once per PSP until its condition clears.
    """

    def __init__(
        self,
        *,
        psps: list[str] | None = None,
        conn_id: str = "billing_gateway_db",
        lookback_cycles: int = 3,
        poll_interval: float = 300.0,
        once: bool = True,
    ) -> None:
        super().__init__()
        self.psps = list(psps or [])
        self.conn_id = conn_id
        self.lookback_cycles = int(lookback_cycles)
        self.poll_interval = float(poll_interval)
        self.once = bool(once)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "psps": self.psps,
                "conn_id": self.conn_id,
                "lookback_cycles": self.lookback_cycles,
                "poll_interval": self.poll_interval,
                "once": self.once,
            },
        )

    async def poll_once(self, fired: set[str], now: datetime | None = None) -> list[dict[str, Any]]:
        """Check every PSP once at ``now`` (default: the current time); return the
        payloads of PSPs that fire. ``fired`` holds PSPs that already fired and have not
        cleared since (watch mode)."""
        config = await load_config()
        psps = self.psps or config.psp_names
        if not psps:
            self.log.error("no PSP to watch: configure a PSP list (RECON_CONFIG) or pass psps=")
            return []
        payloads = []
        now = now or datetime.now(UTC)
        try:
            pg = await import_off_loop(ASYNC_POSTGRES)
            async with pg.async_connect(self.conn_id) as conn:
                for psp in psps:
                    try:
                        config.resolve_psp(psp, {psp})  # name check; configured list wins
                        detection = await check_psp(conn, config, psp, now, self.lookback_cycles)
                    except ReconError as exc:
                        self.log.error("PSP %s not checked: %s", psp, exc)
                        continue
                    except DependencyUnavailableError as exc:
                        self.log.warning("PSP %s not checked this poll, unavailable: %s", psp, exc)
                        continue
                    if not detection.breached:
                        fired.discard(psp)  # the condition cleared: a later breach fires again
                        continue
                    if not detection.should_fire:
                        self.log.info(
                            "PSP %s breaches the alert rule but incident %s is open: not firing (%s)",
                            psp,
                            detection.open_incident_id,
                            detection.attaches[1],
                        )
                        continue
                    if psp in fired:
                        continue
                    fired.add(psp)
                    if detection.open_incident_id:
                        self.log.info("PSP %s fires on its open incident: %s", psp, detection.attaches[1])
                    payloads.append(detection.event_payload())
        except ReconError as exc:
            self.log.error("divergence check skipped this poll: %s", exc)
        except DependencyUnavailableError as exc:
            self.log.warning("divergence check skipped this poll, database unavailable: %s; retrying", exc)
        except Exception as exc:  # a database restart must not crash the triggerer
            self.log.warning("divergence check failed this poll (%s: %s); retrying", type(exc).__name__, exc)
        return payloads

    async def run(self) -> AsyncIterator[TriggerEvent]:
        fired: set[str] = set()
        while True:
            for payload in await self.poll_once(fired):
                self.log.info(
                    "alert billing_gateway-reconciliation for %s: %s", payload["psp"], payload["reason"]
                )
                yield TriggerEvent(payload)
                if self.once:
                    return
            await asyncio.sleep(self.poll_interval)
