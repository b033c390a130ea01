"""Hand-made divergences of the data-correction tests, and what they must lead to.

PSP ``stripe`` (status mapping ``SETTLED -> settled``), window 2026-11-20 [10:00, 12:00):

| tx  | ref | type       | gateway           | PSP statement        | kind                 |
|-----|-----|------------|-------------------|----------------------|----------------------|
| 101 | s1  | capture    | authorized 1000   | captured 1000        | status_mismatch      |
| 102 | s2  | settlement | captured 2500     | SETTLED (settled)    | status_mismatch      |
| 103 | s3  | capture    | authorized 700 USD| captured 700 USD     | status_mismatch      |
| 104 | s4  | capture    | captured 900      | captured 950         | amount_mismatch      |
| 105 | s5  | capture    | captured 300      | -                    | missing_in_statement |
| 106, 107 | s6 | capture | captured 400 x2  | failed 400           | duplicate_in_gateway |
| -   | s7  | capture    | -                 | captured 200         | missing_in_gateway   |
| 108 | s8  | refund     | pending 150 (11h) | refunded 150         | status_mismatch      |

PSP ``adyen``: tx 201 authorized vs captured (status_mismatch) — a stripe correction must
never touch it. ``payment_reconciliation_logs``: stripe's 10:00 cycle has an older
``failed`` row and a newer ``success`` row (corrections go to the newer one); the 11:00
cycle has none (a correction there writes no row: its notes line waits on its audit row
for the cycle's row); adyen's 10:00 cycle has one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import combinations
from typing import Any

WINDOW_START = "2026-11-20T10:00:00Z"
WINDOW_END = "2026-11-20T12:00:00Z"
RECON_CONFIG = {
    "psps": [
        {"name": "stripe", "status_mapping": {"SETTLED": "settled"}},
        {"name": "adyen"},
    ]
}
CYCLE_10 = datetime(2026, 11, 20, 10, tzinfo=UTC)
CYCLE_11 = datetime(2026, 11, 20, 11, tzinfo=UTC)

#: transaction id -> (status before, status after) of the stripe corrections
EXPECTED = {101: ("authorized", "captured"), 102: ("captured", "settled"), 103: ("authorized", "captured"),
            108: ("pending", "refunded")}  # fmt: skip
#: the stripe corrections per currency: (count, amount in that currency's minor units);
#: 103 is in USD and is never added to the reais
EXPECTED_BY_CURRENCY = {"BRL": (3, 1000 + 2500 + 150), "USD": (1, 700)}
#: the currency of each corrected transaction
EXPECTED_CURRENCY = {101: "BRL", 102: "BRL", 103: "USD", 108: "BRL"}
#: keys left to people, per kind: {currency: divergent amount} (all in reais)
EXPECTED_MANUAL = {
    "duplicate_in_gateway": {"BRL": 400},
    "missing_in_statement": {"BRL": 300},
    "missing_in_gateway": {"BRL": 200},
    "amount_mismatch": {"BRL": 50},
}
SUCCESS_LOG_NOTES = "match_transactions (run scheduled__2026-11-20T11:00:00+00:00): 8 divergent key(s)"


def seed(db) -> None:
    db.execute(
        "INSERT INTO payment_intents (id, provider, provider_reference) VALUES "
        "(1,'stripe','s1'),(2,'stripe','s2'),(3,'stripe','s3'),(4,'stripe','s4'),(5,'stripe','s5'),"
        "(6,'stripe','s6'),(8,'stripe','s8'),(9,'adyen','a1')"
    )
    db.execute(
        """INSERT INTO payment_transactions
           (id, intent_id, transaction_type, status, amount_minor, currency, created_at, processed_at)
           VALUES
           (101,1,'capture','authorized',1000,'BRL','2026-11-20T10:05Z','2026-11-20T10:06:01.123456Z'),
           (102,2,'settlement','captured',2500,'BRL','2026-11-20T10:10Z',NULL),
           (103,3,'capture','authorized',700,'USD','2026-11-20T10:20Z','2026-11-20T10:21Z'),
           (104,4,'capture','captured',900,'BRL','2026-11-20T10:30Z','2026-11-20T10:31Z'),
           (105,5,'capture','captured',300,'BRL','2026-11-20T10:40Z','2026-11-20T10:41Z'),
           (106,6,'capture','captured',400,'BRL','2026-11-20T10:45Z','2026-11-20T10:45Z'),
           (107,6,'capture','captured',400,'BRL','2026-11-20T10:46Z','2026-11-20T10:46Z'),
           (108,8,'refund','pending',150,'BRL','2026-11-20T11:15Z',NULL),
           (201,9,'capture','authorized',5000,'BRL','2026-11-20T10:05Z','2026-11-20T10:05Z')"""
    )
    db.execute(
        """INSERT INTO psp_statement_lines
           (psp, provider_reference, transaction_type, status, amount_minor, currency, occurred_at,
            statement_id) VALUES
           ('stripe','s1','capture','captured',1000,'BRL','2026-11-20T10:05:03Z','st-10'),
           ('stripe','s2','settlement','SETTLED',2500,'BRL','2026-11-20T10:10:03Z','st-10'),
           ('stripe','s3','capture','captured',700,'usd','2026-11-20T10:20:03Z','st-10'),
           ('stripe','s4','capture','captured',950,'BRL','2026-11-20T10:30:03Z','st-10'),
           ('stripe','s6','capture','failed',400,'BRL','2026-11-20T10:45:03Z','st-10'),
           ('stripe','s7','capture','captured',200,'BRL','2026-11-20T10:50:03Z','st-10'),
           ('stripe','s8','refund','refunded',150,'BRL','2026-11-20T11:15:03Z','st-11'),
           ('adyen','a1','capture','captured',5000,'BRL','2026-11-20T10:05:03Z','ad-10')"""
    )
    db.execute(
        """INSERT INTO payment_reconciliation_logs
           (psp, cycle_start, cycle_end, status, divergent_amount_minor, divergent_count, notes, created_at)
           VALUES
           ('stripe','2026-11-20T10:00Z','2026-11-20T11:00Z','failed',0,0,'fetch failed','2026-11-20T11:01Z'),
           ('stripe','2026-11-20T10:00Z','2026-11-20T11:00Z','success',4350,8,%s,'2026-11-20T11:05Z'),
           ('adyen','2026-11-20T10:00Z','2026-11-20T11:00Z','success',5000,1,'','2026-11-20T11:05Z')""",
        (SUCCESS_LOG_NOTES,),
    )


def payment_rows(db) -> list[tuple]:
    return db.execute(
        "SELECT id, status, processed_at, amount_minor FROM payment_transactions ORDER BY id"
    ).fetchall()


def statuses(db) -> dict[int, str]:
    return dict(db.execute("SELECT id, status FROM payment_transactions").fetchall())


def audit_rows(db) -> list[tuple]:
    return db.execute(
        "SELECT correction_key, transaction_id, before, after, requested_by, approved_by, run_id,"
        " incident_id, kind, amount_minor, currency FROM recon.corrections ORDER BY transaction_id"
    ).fetchall()


def log_rows(db, psp: str = "stripe") -> list[tuple]:
    return db.execute(
        "SELECT cycle_start, status, notes FROM payment_reconciliation_logs WHERE psp = %s ORDER BY id",
        (psp,),
    ).fetchall()


def correction_lines(db) -> list[str]:
    """Every correction's traceability line: in its cycle's log row, or waiting on its audit
    row for a cycle that has no log row yet (a correction never writes one)."""
    lines = []
    for (notes,) in db.execute("SELECT notes FROM payment_reconciliation_logs ORDER BY id"):
        lines += [line for line in (notes or "").splitlines() if line.startswith("data correction ")]
    waiting = db.execute(
        "SELECT note_pending FROM recon.corrections WHERE note_pending IS NOT NULL ORDER BY id"
    ).fetchall()
    return lines + [w[0] for w in waiting]


def checksum(db, *tables: str) -> str:
    """A digest of whole tables (payment data and logs): equal before and after means
    nothing changed."""
    tables = tables or (
        "payment_intents",
        "payment_transactions",
        "psp_statement_lines",
        "payment_reconciliation_logs",
        "recon.corrections",
    )
    digest = hashlib.sha256()
    for table in tables:
        rows = db.execute(f"SELECT to_jsonb(t)::text FROM {table} AS t ORDER BY 1").fetchall()
        digest.update(json.dumps([table, [r[0] for r in rows]]).encode())
    return digest.hexdigest()


# -- four currencies ---------------------------------------------------------------------------

#: PSP ``stripe``, window 2026-11-21 [10:00, 11:00): status mismatches (gateway ``authorized``,
#: PSP ``captured``) in four currencies, each amount in its own minor units (JPY has none).
#: EUR and JPY have rates in recon.fx_rates (in force at the window's end: an older rate and a
#: later one are there too and must not be used); USD has none.
MULTI_WINDOW_START = "2026-11-21T10:00:00Z"
MULTI_WINDOW_END = "2026-11-21T11:00:00Z"
#: transaction id -> (reference, currency, amount_minor)
MULTI_ROWS = {
    301: ("m-brl-1", "BRL", 10_000_021),
    302: ("m-brl-2", "BRL", 417_500),
    303: ("m-eur-1", "EUR", 961_980),
    304: ("m-usd-1", "USD", 70_055),
    305: ("m-jpy-1", "JPY", 123_457),
}
#: (currency, rate, valid_from, source) rows of recon.fx_rates
MULTI_RATES = [
    ("EUR", "5.1000", "2026-11-01T00:00:00Z", "BCB PTAX"),
    ("EUR", "6.2512", "2026-11-21T00:00:00Z", "BCB PTAX"),
    ("EUR", "9.9900", "2026-11-21T11:00:00.000001Z", "later, not in force"),
    ("JPY", "0.0365", "2026-11-20T00:00:00Z", "BCB PTAX"),
]
#: the amount mismatch left to people: BRL gateway 5_000 vs PSP 5_500
MULTI_MANUAL = (306, "m-brl-amt", "BRL", 5_000, 5_500)


def seed_multi_currency(db) -> None:
    """The status mismatches of :data:`MULTI_ROWS`, one BRL amount mismatch, and the rates."""
    rows = [*MULTI_ROWS.items(), (MULTI_MANUAL[0], MULTI_MANUAL[1:4])]
    for tid, (ref, currency, amount) in rows:
        db.execute(
            "INSERT INTO payment_intents (id, provider, provider_reference) VALUES (%s, 'stripe', %s)",
            (tid, ref),
        )
        db.execute(
            "INSERT INTO payment_transactions (id, intent_id, transaction_type, status, amount_minor,"
            " currency, created_at, processed_at) VALUES (%s, %s, 'capture', %s, %s, %s,"
            " '2026-11-21T10:10Z', '2026-11-21T10:11Z')",
            (tid, tid, "captured" if tid == MULTI_MANUAL[0] else "authorized", amount, currency),
        )
        db.execute(
            "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status,"
            " amount_minor, currency, occurred_at, statement_id) VALUES ('stripe', %s, 'capture',"
            " 'captured', %s, %s, '2026-11-21T10:10:05Z', 'st-m')",
            (ref, MULTI_MANUAL[4] if tid == MULTI_MANUAL[0] else amount, currency),
        )
    for currency, rate, valid_from, source in MULTI_RATES:
        db.execute(
            "INSERT INTO recon.fx_rates (currency, rate, valid_from, source) VALUES (%s, %s, %s, %s)",
            (currency, rate, valid_from, source),
        )


def cross_currency_sums(rows: Iterable[tuple[str, str, int]] | dict[int, tuple[str, str, int]]) -> set[int]:
    """Every sum of the rows' minor units that mixes currencies: none of them is an amount.
    Rows ``(reference, currency, amount_minor)``; zero amounts add nothing and are left out."""
    items = [row for row in (rows.values() if isinstance(rows, dict) else rows) if row[2]]
    sums = set()
    for size in range(2, len(items) + 1):
        for group in combinations(items, size):
            if len({currency for _, currency, _ in group}) > 1:
                sums.add(sum(amount for _, _, amount in group))
    return sums


def numbers_in(text: str) -> set[int]:
    """Every figure of a text as an integer of its digits (``R$ 104.175,21`` -> 10417521)."""
    return {int(re.sub(r"[.,\s]", "", m)) for m in re.findall(r"\d(?:[\d.,]|\s(?=\d{3}\b))*", text)}


def ints_in(value: Any) -> set[int]:
    if isinstance(value, bool):
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, dict):
        return set().union(*(ints_in(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(ints_in(v) for v in value)) if value else set()
    return set()
