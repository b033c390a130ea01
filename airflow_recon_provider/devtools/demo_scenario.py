"""The demo's incident: a real divergence for one PSP, healthy PSPs beside it.

Seeded relative to *now*, so that the divergence watch (which checks the last three
completed hourly cycles) sees it, and designed so that the runbook reaches recovery:

- ``stripe``, in the last three cycles: 12 captures the gateway still has as
  ``authorized`` while the PSP's statement says ``succeeded`` (``status_mismatch``, the
  runbook's "capturas faltando no relatório"; finance approves their correction), two
  captures whose statement amount differs by a few cents (``amount_mismatch``) and one
  small authorization missing from the statement (``missing_in_statement``) — what stays
  after the correction is below the recovery thresholds and goes to the PSP ticket;
- the payments ledger mirrors the seeded gateway, so it booked those 12 captures as
  ``captured``: it agrees with the PSP's statement but for the small external keys, within
  the ledger's recovery limit (Critérios de Recuperação 3);
- the three cycles of that window ended ``failed`` in ``payment_reconciliation_logs``:
  the reconciliation lags, so the alert ``billing_gateway-reconciliation`` fires and the
  recovery criteria need the reprocessing to succeed. The demo then makes the break real
  (``demo._fail_window_cycles`` headless, ``demo_ui.break_window_cycles`` with ``--ui``):
  ``billing_gateway_reconciliation`` runs each of those cycles while the PSP stand-in answers
  503, so their failed tries and logs exist in Airflow for the investigation to collect;
- ``adyen`` and ``pagseguro``: the same volume, no divergence.

The PSP API stand-in serves the statement lines as they are right after seeding (what the
PSP really sent), so reprocessing reloads the same statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_recon_provider.reconciliation.window import CYCLE, floor_cycle

DIVERGENT_PSP = "stripe"
HEALTHY_PSPS = ("adyen", "pagseguro")
DEMO_PSPS = (DIVERGENT_PSP, *HEALTHY_PSPS)
STATUS_MAPPING = {"succeeded": "captured", "SETTLED": "settled"}
RECON_CONFIG: dict[str, Any] = {
    "psps": [
        {"name": "stripe", "display_name": "Stripe", "status_mapping": STATUS_MAPPING},
        {"name": "adyen", "display_name": "Adyen"},
        {"name": "pagseguro", "display_name": "PagSeguro"},
    ]
}
#: the provider's own state, emptied when the scenario is seeded again
RECON_TABLES = (
    "recon.corrections",
    "recon.notifications",
    "recon.incident_events",
    "recon.incidents",
    "recon.control_events",
    "recon.controls",
)
HOURS = 5
WINDOW_CYCLES = 3


@dataclass(frozen=True)
class DemoScenario:
    now: datetime
    window_start: datetime
    window_end: datetime
    status_mismatch_ids: tuple[int, ...]
    rows_per_psp: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "status_mismatch_ids": list(self.status_mismatch_ids),
            "rows_per_psp": self.rows_per_psp,
        }


def _truncate_recon(conn: Any) -> None:
    present = [
        t for t in RECON_TABLES if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is not None
    ]
    if present:
        # fixed names of the provider's own schema, not user input
        conn.execute(f"TRUNCATE {', '.join(present)} RESTART IDENTITY CASCADE")


def seed_demo_scenario(
    gateway: Any, ledger: Any, *, now: datetime | None = None, rows_per_psp: int = 1200, seed: int = 7
) -> DemoScenario:
    """Replace the demo databases' data with the scenario (psycopg autocommit connections)."""
    from airflow_recon_provider.devtools.seed import SeedSpec, seed_database

    now = (now or datetime.now(UTC)).astimezone(UTC)
    end = floor_cycle(now)
    start = end - WINDOW_CYCLES * CYCLE
    spec = SeedSpec(
        seed=seed,
        psps=DEMO_PSPS,
        rows_per_psp=rows_per_psp,
        start=end - HOURS * CYCLE,
        hours=HOURS,
        divergence_rate=dict.fromkeys(DEMO_PSPS, 0.0),
        status_mapping={DIVERGENT_PSP: STATUS_MAPPING},
    )
    _truncate_recon(gateway)
    seed_database(gateway, ledger, spec)
    window = {"start": start, "end": end, "psp": DIVERGENT_PSP}
    # away from the cycle edges (minute < 45): a key moved by the match grace stays in its cycle
    captures = gateway.execute(
        """SELECT t.id, i.provider_reference, t.amount_minor
             FROM payment_transactions t JOIN payment_intents i ON i.id = t.intent_id
            WHERE i.provider = %(psp)s AND t.transaction_type = 'capture' AND t.status = 'captured'
              AND t.created_at >= %(start)s AND t.created_at < %(end)s
              AND extract(minute FROM t.created_at) < 45 AND t.amount_minor >= 5000
            ORDER BY t.amount_minor DESC, t.id LIMIT 14""",
        window,
    ).fetchall()
    if len(captures) < 14:
        raise RuntimeError(f"the seed has too few captures for the demo scenario ({len(captures)})")
    mismatched, amounts = captures[:12], captures[12:]
    ids = tuple(int(row[0]) for row in mismatched)
    gateway.execute("UPDATE payment_transactions SET status = 'authorized' WHERE id = ANY(%s)", (list(ids),))
    for (_, ref, _), delta in zip(amounts, (7, -13), strict=True):
        gateway.execute(
            "UPDATE psp_statement_lines SET amount_minor = amount_minor + %s"
            " WHERE psp = %s AND provider_reference = %s AND transaction_type = 'capture'",
            (delta, DIVERGENT_PSP, ref),
        )
    missing = gateway.execute(
        """SELECT i.provider_reference
             FROM payment_transactions t JOIN payment_intents i ON i.id = t.intent_id
            WHERE i.provider = %(psp)s AND t.transaction_type = 'authorization' AND t.status = 'authorized'
              AND t.created_at >= %(start)s AND t.created_at < %(end)s
              AND extract(minute FROM t.created_at) < 45 AND t.amount_minor < 10000
              AND NOT i.provider_reference = ANY(%(taken)s)
            ORDER BY t.id LIMIT 1""",
        {**window, "taken": [row[1] for row in captures]},
    ).fetchone()
    gateway.execute(
        "DELETE FROM psp_statement_lines WHERE psp = %s AND provider_reference = %s"
        " AND transaction_type = 'authorization'",
        (DIVERGENT_PSP, missing[0]),
    )
    _other_kinds(gateway, window, taken=[row[1] for row in captures] + [missing[0]])
    # the break: match_transactions failed in every cycle of the window
    gateway.execute(
        "UPDATE payment_reconciliation_logs SET status = 'failed', notes = 'match_transactions failed'"
        " WHERE psp = %(psp)s AND cycle_start >= %(start)s AND cycle_start < %(end)s",
        window,
    )
    return DemoScenario(
        now=now,
        window_start=start,
        window_end=end,
        status_mismatch_ids=ids,
        rows_per_psp=rows_per_psp,
    )


def _other_kinds(gateway: Any, window: dict[str, Any], *, taken: list[str]) -> None:
    """One small key of each remaining kind, so the report shows all seven: a gateway row
    recorded twice, a statement line sent twice, a currency the PSP reports differently and a
    statement line the gateway never saw. None of them is corrected by the default policy
    (they go to the PSP ticket), and together they stay under the recovery thresholds."""
    rows = gateway.execute(
        """SELECT t.id, i.provider_reference, t.created_at
             FROM payment_transactions t JOIN payment_intents i ON i.id = t.intent_id
            WHERE i.provider = %(psp)s AND t.transaction_type = 'authorization' AND t.status = 'authorized'
              AND t.created_at >= %(start)s AND t.created_at < %(end)s
              AND extract(minute FROM t.created_at) < 45 AND t.amount_minor < 5000
              AND NOT i.provider_reference = ANY(%(taken)s)
            ORDER BY t.id LIMIT 3""",
        {**window, "taken": taken},
    ).fetchall()
    if len(rows) < 3:
        raise RuntimeError(f"the seed has too few small authorizations for the demo scenario ({len(rows)})")
    (dup_id, _, _), (_, dup_ref, _), (_, currency_ref, when) = rows
    psp = window["psp"]
    gateway.execute(
        """INSERT INTO payment_transactions
               (id, intent_id, transaction_type, status, amount_minor, currency, created_at, processed_at)
           SELECT (SELECT max(id) + 1 FROM payment_transactions), intent_id, transaction_type, status,
                  amount_minor, currency, created_at + interval '2 seconds', processed_at
             FROM payment_transactions WHERE id = %s""",
        (dup_id,),
    )
    gateway.execute(
        """INSERT INTO psp_statement_lines
               (psp, provider_reference, transaction_type, status, amount_minor, currency, occurred_at,
                statement_id)
           SELECT psp, provider_reference, transaction_type, status, amount_minor, currency,
                  occurred_at, statement_id
             FROM psp_statement_lines
            WHERE psp = %s AND provider_reference = %s AND transaction_type = 'authorization'""",
        (psp, dup_ref),
    )
    gateway.execute(
        "UPDATE psp_statement_lines SET currency = CASE WHEN currency = 'USD' THEN 'EUR' ELSE 'USD' END"
        " WHERE psp = %s AND provider_reference = %s AND transaction_type = 'authorization'",
        (psp, currency_ref),
    )
    gateway.execute(
        """INSERT INTO psp_statement_lines
               (psp, provider_reference, transaction_type, status, amount_minor, currency, occurred_at,
                statement_id)
           SELECT psp, 'demo-unknown-to-the-gateway', 'authorization', 'authorized', 1234, 'BRL',
                  %s, statement_id
             FROM psp_statement_lines
            WHERE psp = %s AND provider_reference = %s AND transaction_type = 'authorization'
            LIMIT 1""",
        (when + timedelta(seconds=5), psp, currency_ref),
    )


def window_label(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC" + (
        "" if end - start < timedelta(days=1) else f" ({end:%Y-%m-%d})"
    )
