"""RecoveryTrigger: waits for the runbook's recovery criteria (Critérios de Recuperação).

Recovered means, for the PSP and the incident's window, all three: divergent amount below
R$ 500 and fewer than 10 divergent keys after reprocessing; the PSP's two latest reconciled
cycles (``payment_reconciliation_logs``, written by ``billing_gateway_reconciliation``)
succeeded; and the payments ledger (``ledger.transactions``, connection
``payments_ledger_db``) aligned with the PSP's statement per status and currency
("Relatório financeiro alinhado com extratos PSP", ``reconciliation/recovery.py``).
Thresholds and status mappings come from the PSP's configuration. Checked with async I/O;
a check that fails (the ledger database unreachable included) is logged and retried, never
taken as recovered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID, PAYMENTS_LEDGER_CONN_ID
from airflow_recon_provider.reconciliation.errors import DependencyUnavailableError, ReconError
from airflow_recon_provider.reconciliation.window import Window
from airflow_recon_provider.triggers._offloop import (
    ASYNC_POSTGRES,
    QUERIES,
    RECOVERY,
    import_off_loop,
    load_config,
)


class RecoveryTrigger(BaseTrigger):
    """Poll one PSP and window until the recovery criteria hold.

    :param psp: the PSP.
    :param window_start: ISO start of the incident's window.
    :param window_end: ISO end of the incident's window.
    :param conn_id: connection of the billing gateway database.
    :param poll_interval: seconds between checks.
    :param ledger_conn_id: connection of the payments ledger database.
    """

    def __init__(
        self,
        *,
        psp: str,
        window_start: str,
        window_end: str,
        conn_id: str = BILLING_GATEWAY_CONN_ID,
        poll_interval: float = 300.0,
        ledger_conn_id: str = PAYMENTS_LEDGER_CONN_ID,
    ) -> None:
        super().__init__()
        self.psp = psp
        self.window_start = window_start
        self.window_end = window_end
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.ledger_conn_id = ledger_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "psp": self.psp,
                "window_start": self.window_start,
                "window_end": self.window_end,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "ledger_conn_id": self.ledger_conn_id,
            },
        )

    async def check(self, now: datetime | None = None) -> dict[str, Any]:
        """One evaluation; raises :class:`ReconError` on bad input or an unreachable database."""
        config = await load_config()
        config.resolve_psp(self.psp, {self.psp})
        window = Window.parse(self.window_start, self.window_end, max_span=config.max_window)
        now = now or datetime.now(UTC)
        thresholds = config.thresholds.for_psp(self.psp)
        pg = await import_off_loop(ASYNC_POSTGRES)
        queries = await import_off_loop(QUERIES)
        recovery = await import_off_loop(RECOVERY)
        async with pg.async_connect(self.conn_id) as conn, pg.async_connect(self.ledger_conn_id) as ledger:
            summary = await pg.fetch_summary(conn, config, self.psp, window, now)
            cursor = await conn.execute(
                queries.latest_cycle_states_query(config.mapping),
                {"psp": self.psp, "reference": now, "n": thresholds.recovered_successful_runs},
            )
            states = [row[0] for row in await cursor.fetchall()]
            lines = await pg.fetch_alignment_lines(conn, ledger, config, self.psp, window)
            rates = await pg.fetch_alignment_rates(conn, lines, config.reporting_currency, window.end)
        alignment = recovery.LedgerAlignment(
            lines=lines,
            reporting_currency=config.reporting_currency,
            max_count=thresholds.recovered_ledger_count,
            max_amount_minor=thresholds.recovered_ledger_amount_minor,
            fx_rates={rate.currency: rate for rate in rates},
        )
        cycles_recovered = thresholds.cycles_recovered(states)
        recovered = summary.recovered and cycles_recovered and alignment.met
        figures = summary.as_dict()
        return {
            "status": "recovered" if recovered else "not_recovered",
            "psp": self.psp,
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "divergent_amount_minor": summary.divergent_amount_minor,
            "divergent_count": summary.divergent_count,
            "divergence_pct": summary.divergence_pct,
            "latest_cycle_states": states,
            # the three criteria (reconciliation/recovery.py renders them with their figures)
            "amounts_recovered": summary.recovered,
            "cycles_recovered": cycles_recovered,
            "successful_runs_needed": thresholds.recovered_successful_runs,
            "ledger": alignment.as_dict(),
            "thresholds": {
                "recovered_amount_minor": thresholds.recovered_amount_minor,
                "recovered_count": thresholds.recovered_count,
            },
            "reporting_currency": summary.reporting_currency,
            "by_currency": figures["by_currency"],
            "fx_rates": figures["fx_rates"],
            "unconverted_currencies": figures["unconverted_currencies"],
            "checked_at": now.isoformat(),
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                result = await self.check()
            except ReconError as exc:
                self.log.error("recovery of %s not checked this poll: %s", self.psp, exc)
            except DependencyUnavailableError as exc:
                self.log.warning(
                    "recovery of %s not checked this poll, unavailable: %s; retrying", self.psp, exc
                )
            except Exception as exc:  # a database restart must not crash the triggerer
                self.log.warning(
                    "recovery check of %s failed (%s: %s); retrying", self.psp, type(exc).__name__, exc
                )
            else:
                if result["status"] == "recovered":
                    yield TriggerEvent(result)
                    return
                self.log.info(
                    "%s not recovered yet: %s %s minor units (converted) in %s keys, unconverted %s, "
                    "latest cycles %s, ledger %s rows / %s %s minor units off the statements",
                    self.psp,
                    result["divergent_amount_minor"],
                    result["reporting_currency"],
                    result["divergent_count"],
                    result["unconverted_currencies"],
                    result["latest_cycle_states"],
                    result["ledger"]["differing_count"],
                    result["ledger"]["differing_amount_minor"],
                    result["reporting_currency"],
                )
            await asyncio.sleep(self.poll_interval)
