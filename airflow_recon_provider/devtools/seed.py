"""Deterministic synthetic data for the billing gateway reconciliation runbook.

The runbook ("Billing Gateway — Falhas de Reconciliação") is about divergences between
the gateway's transactions, the PSP statements and the payments ledger. To rehearse it
(demo, tests, benchmarks) we need those three sides filled with realistic data that
contains a *known* mix of every divergence kind of DESIGN section 3. This module
generates them and loads them with COPY:

- ``payment_intents`` / ``payment_transactions`` (authorization, capture, settlement,
  refund; integer minor units; BRL mostly, USD, EUR);
- ``psp_statement_lines`` mirroring the gateway a few seconds later, one statement per
  PSP and hour, including rows recorded at ``HH:59:59`` by the gateway and ``HH+1:00:00``
  by the PSP (not divergent thanks to the grace period);
- ``ledger.transactions`` mirroring every gateway row (status, amount and currency, at the
  gateway's time: so the runbook's ledger ``GROUP BY status`` agrees with the gateway, and
  the ledger with the statements wherever the gateway does), with two deliberate
  differences for PSPs that diverge;
- ``payment_reconciliation_logs``: one successful cycle per PSP and hour.

The generator also returns the exact ground truth (divergent keys and amounts per
kind) that the classification SQL must find. Same :class:`SeedSpec`, same bytes:
every random choice comes from ``random.Random`` instances seeded from the spec, and
nothing reads the clock. Memory stays flat whatever the size: rows are generated and
sent in chunks, never held all at once.

No Airflow import here: the CLI, the demo and the tests call it with plain psycopg 3
connections.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.errors import ReconError
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind
from airflow_recon_provider.reconciliation.queries import STATEMENT_COPY_COLUMNS
from airflow_recon_provider.reconciliation.window import Cycle, Window, parse_timestamp

__all__ = [
    "DEFAULT_PSPS",
    "DEFAULT_START",
    "SeedResult",
    "SeedSpec",
    "SeedSpecError",
    "generate_chunks",
    "seed_database",
]

DEFAULT_PSPS: tuple[str, ...] = ("stripe", "adyen", "pagseguro")
DEFAULT_START = datetime(2026, 11, 20, tzinfo=UTC)
#: divergence rate of the first PSP when the spec names none (the others stay healthy)
DEFAULT_FIRST_PSP_RATE = 0.05
MAX_RATE = 0.5
MIN_HOURS = 3
#: a guard against typos (10M rows per PSP is the documented large case)
MAX_ROWS_PER_PSP = 100_000_000
MAX_HOURS = 24 * 366

#: the gateway's status vocabulary (DESIGN section 2)
GATEWAY_STATUSES = ("authorized", "captured", "settled", "refunded", "failed")
CURRENCIES = ("BRL", "USD", "EUR")

_US = 1_000_000
_HOUR_US = 3600 * _US
_MINUTE_US = 60 * _US
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: normal intents start in the first 48 minutes of their hour; with the offsets below
#: every row of such an intent (both sides, duplicates included) stays inside its hour,
#: which keeps hourly ground truth exact. The last minutes hold the edge rows.
_SPREAD_US = 48 * 60 * _US
#: gateway rows per edge intent (authorization + capture at HH:59:59)
_EDGE_ROWS = 2
#: generated gateway rows per COPY chunk
CHUNK_ROWS = 50_000

#: fixed, DST-free UTC offsets the COPY text uses, so that the database has to
#: normalise them: every one of them denotes the same instant as the UTC value.
_OFFSETS: tuple[tuple[int, str], ...] = (
    (-3 * 60, "-03:00"),
    (5 * 60 + 30, "+05:30"),
    (0, "+00:00"),
    (-5 * 60, "-05:00"),
    (9 * 60, "+09:00"),
    (5 * 60 + 45, "+05:45"),
)

#: Kinds are handed out round-robin in this order. Duplicates in the gateway add a
#: gateway row and rows missing in the gateway remove one; putting them side by side
#: (and avoiding a count of 1 modulo 7) keeps the gateway row count exactly
#: ``rows_per_psp``.
_KIND_ORDER: tuple[DivergenceKind, ...] = (
    DivergenceKind.DUPLICATE_IN_GATEWAY,
    DivergenceKind.MISSING_IN_GATEWAY,
    DivergenceKind.DUPLICATE_IN_STATEMENT,
    DivergenceKind.MISSING_IN_STATEMENT,
    DivergenceKind.CURRENCY_MISMATCH,
    DivergenceKind.AMOUNT_MISMATCH,
    DivergenceKind.STATUS_MISMATCH,
)
#: a different gateway-vocabulary status the PSP reports for a status mismatch
_OTHER_STATUS = {
    "authorized": ("captured", "failed"),
    "captured": ("failed", "authorized"),
    "settled": ("captured", "failed"),
    "refunded": ("failed", "captured"),
    "failed": ("authorized", "captured"),
}

# -- the tables the seed writes (the runbook's names, as created by create_runbook_tables)
_INTENTS = ("payment_intents", ("id", "provider", "provider_reference", "created_at"))
_TRANSACTIONS = (
    "payment_transactions",
    (
        "id",
        "intent_id",
        "transaction_type",
        "status",
        "amount_minor",
        "currency",
        "created_at",
        "processed_at",
    ),
)
_STATEMENTS = ("psp_statement_lines", ("id", *STATEMENT_COPY_COLUMNS))
_LEDGER = (
    "ledger.transactions",
    ("id", "psp", "provider_reference", "status", "amount_minor", "currency", "occurred_at"),
)
_LOGS = (
    "payment_reconciliation_logs",
    (
        "psp",
        "cycle_start",
        "cycle_end",
        "status",
        "divergent_amount_minor",
        "divergent_count",
        "notes",
        "created_at",
    ),
)
_GATEWAY_TABLES = (
    "payment_transactions",
    "payment_intents",
    "psp_statement_lines",
    "payment_reconciliation_logs",
)


class SeedSpecError(ReconError):
    """A seed specification is invalid (sizes, rates, time range)."""


# -- specification ------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedSpec:
    """What to generate. Same spec, same data.

    :param seed: root of every random choice.
    :param psps: PSP names (``payment_intents.provider`` / ``psp_statement_lines.psp``).
    :param rows_per_psp: gateway ``payment_transactions`` rows per PSP (exact).
    :param divergence_rate: fraction of a PSP's keys made divergent, in ``[0, 0.5]``;
        PSPs not named get 0. Default: the first PSP 0.05, the others 0.
    :param start: first hour of data (timezone-aware, on the hour).
    :param hours: the data spans ``[start, start + hours)``; at least 3, because the
        first and last hour are kept free of divergence.
    :param with_ledger: also fill ``ledger.transactions``.
    :param with_reconciliation_logs: one successful ``payment_reconciliation_logs`` row
        per PSP and hour.
    :param status_mapping: optional, per PSP, the PSP vocabulary -> gateway vocabulary
        mapping of the reconciliation configuration. Statement lines of those PSPs are
        then written in the PSP's vocabulary, so that only a configuration with the same
        mapping matches them.
    """

    seed: int = 42
    psps: tuple[str, ...] = DEFAULT_PSPS
    rows_per_psp: int = 2000
    divergence_rate: dict[str, float] | None = None
    start: datetime = DEFAULT_START
    hours: int = 24
    with_ledger: bool = True
    with_reconciliation_logs: bool = True
    status_mapping: dict[str, dict[str, str]] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise SeedSpecError(f"seed must be an integer, got {self.seed!r}")
        psps = (self.psps,) if isinstance(self.psps, str) else tuple(self.psps)
        if not psps:
            raise SeedSpecError("psps must name at least one PSP")
        for psp in psps:
            check_psp_name(psp)
        if len(set(psps)) != len(psps):
            raise SeedSpecError(f"psps has duplicates: {', '.join(psps)}")
        object.__setattr__(self, "psps", psps)
        rows = self.rows_per_psp
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise SeedSpecError(f"rows_per_psp must be a non-negative integer, got {rows!r}")
        if rows > MAX_ROWS_PER_PSP:
            raise SeedSpecError(f"rows_per_psp must be at most {MAX_ROWS_PER_PSP:,}, got {rows:,}")
        hours = self.hours
        if isinstance(hours, bool) or not isinstance(hours, int) or hours < MIN_HOURS:
            raise SeedSpecError(
                f"hours must be an integer of at least {MIN_HOURS} (the first and last hour are kept "
                f"free of divergence), got {hours!r}"
            )
        if hours > MAX_HOURS:
            raise SeedSpecError(f"hours must be at most {MAX_HOURS}, got {hours}")
        start = self.start
        if isinstance(start, str):
            start = parse_timestamp(start, name="start")
        if not isinstance(start, datetime):
            raise SeedSpecError(f"start must be a datetime, got {type(start).__name__}")
        if start.tzinfo is None or start.tzinfo.utcoffset(start) is None:
            raise SeedSpecError(f"start {start.isoformat()} has no timezone; give an explicit offset")
        start = start.astimezone(UTC)
        if start != start.replace(minute=0, second=0, microsecond=0):
            raise SeedSpecError(f"start {start.isoformat()} must be on the hour (cycles are hourly)")
        object.__setattr__(self, "start", start)
        self._check_rates()
        self._check_status_mapping()

    def _check_rates(self) -> None:
        given = self.divergence_rate
        if given is None:
            return
        if not isinstance(given, dict):
            raise SeedSpecError(f"divergence_rate must be a mapping PSP -> fraction, got {given!r}")
        for psp, rate in given.items():
            if psp not in self.psps:
                raise SeedSpecError(
                    f"divergence_rate names PSP {psp!r}, which is not in psps ({', '.join(self.psps)})"
                )
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= MAX_RATE:
                raise SeedSpecError(
                    f"divergence rate of PSP {psp!r} must be a fraction between 0 and {MAX_RATE}, "
                    f"got {rate!r}"
                )

    def _check_status_mapping(self) -> None:
        if self.status_mapping is None:
            return
        if not isinstance(self.status_mapping, dict):
            raise SeedSpecError("status_mapping must be a mapping PSP -> {psp status: gateway status}")
        for psp, mapping in self.status_mapping.items():
            if psp not in self.psps:
                raise SeedSpecError(
                    f"status_mapping names PSP {psp!r}, which is not in psps ({', '.join(self.psps)})"
                )
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                raise SeedSpecError(f"status_mapping of PSP {psp!r} must map strings to strings")
            # every gateway status must survive the round trip gateway -> PSP -> gateway,
            # otherwise healthy rows would turn into status mismatches
            to_psp = _psp_vocabulary(mapping)
            for status in GATEWAY_STATUSES:
                written = to_psp[status]
                if mapping.get(written, written) != status:
                    raise SeedSpecError(
                        f"status_mapping of PSP {psp!r} does not map back to gateway status {status!r} "
                        f"(the PSP status written would be {written!r})"
                    )

    # -- derived values ------------------------------------------------------------------
    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.hours)

    @property
    def window(self) -> Window:
        """The whole data range ``[start, start + hours)``."""
        return Window(self.start, self.end)

    @property
    def rates(self) -> dict[str, float]:
        """Divergence rate of every PSP, defaults applied."""
        if self.divergence_rate is None:
            return {psp: (DEFAULT_FIRST_PSP_RATE if i == 0 else 0.0) for i, psp in enumerate(self.psps)}
        return {psp: float(self.divergence_rate.get(psp, 0.0)) for psp in self.psps}

    def rows_in_hour(self, hour: int) -> int:
        """Gateway rows of one PSP whose ``created_at`` falls in hour ``hour`` (0-based)."""
        base, extra = divmod(self.rows_per_psp, self.hours)
        return base + (1 if hour < extra else 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "psps": list(self.psps),
            "rows_per_psp": self.rows_per_psp,
            "divergence_rate": self.rates,
            "start": self.start.isoformat(),
            "hours": self.hours,
            "with_ledger": self.with_ledger,
            "with_reconciliation_logs": self.with_reconciliation_logs,
            "status_mapping": {k: dict(v) for k, v in (self.status_mapping or {}).items()},
        }


def _psp_vocabulary(mapping: dict[str, str]) -> dict[str, str]:
    """Gateway status -> the status the PSP writes (the first PSP status mapped to it)."""
    inverse: dict[str, str] = {}
    for psp_status, gateway_status in mapping.items():
        inverse.setdefault(gateway_status, psp_status)
    return {status: inverse.get(status, status) for status in GATEWAY_STATUSES}


# -- result -------------------------------------------------------------------------------

KindFigures = dict[str, dict[str, int]]


@dataclass(frozen=True)
class SeedResult:
    """What was written, and the ground truth the classification must find.

    ``expected[psp]`` has one entry per divergence kind present (``{"count", "amount_minor"}``)
    for the whole range :attr:`window`, in the shape of ``DivergenceSummary.as_dict()["by_kind"]``;
    a healthy PSP has ``{}``. ``expected_by_cycle[psp][cycle start ISO]`` is the same per hourly
    cycle (only cycles with divergence).
    """

    spec: SeedSpec
    expected: dict[str, KindFigures]
    gateway_rows: dict[str, int]
    statement_rows: dict[str, int]
    ledger_rows: dict[str, int]
    intent_rows: dict[str, int] = field(default_factory=dict)
    expected_by_cycle: dict[str, dict[str, KindFigures]] = field(default_factory=dict)
    #: ledger rows deliberately different from the gateway (one missing, one other status)
    ledger_differences: dict[str, int] = field(default_factory=dict)
    reconciliation_log_rows: int = 0

    @property
    def window(self) -> Window:
        return self.spec.window

    def divergent_count(self, psp: str) -> int:
        return sum(v["count"] for v in self.expected.get(psp, {}).values())

    def divergent_amount_minor(self, psp: str) -> int:
        return sum(v["amount_minor"] for v in self.expected.get(psp, {}).values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.as_dict(),
            **self.window.as_dict(),
            "expected": self.expected,
            "divergent": {
                psp: {"count": self.divergent_count(psp), "amount_minor": self.divergent_amount_minor(psp)}
                for psp in self.spec.psps
            },
            "expected_by_cycle": self.expected_by_cycle,
            "gateway_rows": self.gateway_rows,
            "statement_rows": self.statement_rows,
            "ledger_rows": self.ledger_rows,
            "intent_rows": self.intent_rows,
            "ledger_differences": self.ledger_differences,
            "reconciliation_log_rows": self.reconciliation_log_rows,
        }


# -- generation ---------------------------------------------------------------------------


@dataclass
class _Ids:
    """Last id used per table: explicit ids make COPY cheaper and the data reproducible."""

    intent: int = 0
    transaction: int = 0
    statement: int = 0
    ledger: int = 0


@dataclass
class _Tally:
    """Counts and ground truth of one PSP, filled while generating."""

    gateway_rows: int = 0
    statement_rows: int = 0
    ledger_rows: int = 0
    intent_rows: int = 0
    ledger_differences: int = 0
    by_kind: dict[DivergenceKind, list[int]] = field(default_factory=dict)
    by_cycle: dict[int, dict[DivergenceKind, list[int]]] = field(default_factory=dict)

    def add(self, kind: DivergenceKind, hour: int, amount: int) -> None:
        for bucket in (self.by_kind, self.by_cycle.setdefault(hour, {})):
            figures = bucket.setdefault(kind, [0, 0])
            figures[0] += 1
            figures[1] += amount


@dataclass(frozen=True)
class Chunk:
    """COPY text (tab-separated, one line per row) of a slice of one PSP's data."""

    psp: str
    intents: str
    transactions: str
    statements: str
    ledger: str
    #: gateway rows generated so far for this PSP (for progress)
    gateway_done: int


def _eligible_keys(spec: SeedSpec) -> int:
    """Gateway rows that may become divergent: normal (non-edge) rows of the inner hours."""
    return sum(_normal_rows(spec.rows_in_hour(h)) for h in range(1, spec.hours - 1))


def _edge_intents(rows_in_hour: int) -> int:
    """Edge intents (capture at HH:59:59, statement at HH+1:00:00) of one hour."""
    if rows_in_hour < 8:
        return 0
    return max(1, rows_in_hour // 400)


def _normal_rows(rows_in_hour: int) -> int:
    return rows_in_hour - _EDGE_ROWS * _edge_intents(rows_in_hour)


def _divergent_keys(spec: SeedSpec, rate: float) -> int:
    """How many keys of a PSP diverge: ``rate`` of its rows, at least one of each kind."""
    if rate <= 0 or spec.rows_per_psp == 0:
        return 0
    eligible = _eligible_keys(spec)
    wanted = min(max(len(_KIND_ORDER), round(rate * spec.rows_per_psp)), eligible)
    if wanted % len(_KIND_ORDER) == 1:
        # one more duplicate in the gateway than rows missing there: shift by one so that
        # the gateway keeps exactly rows_per_psp rows
        wanted = wanted - 1 if wanted > len(_KIND_ORDER) or wanted + 1 > eligible else wanted + 1
    return wanted


#: zero-padded digits by table lookup: format specs such as ``:06d`` cost three times more
_TWO_DIGITS = tuple(f"{i:02d}" for i in range(60))
_THREE_DIGITS = tuple(f"{i:03d}" for i in range(1000))


class _TimestampText:
    """Fast ``timestamptz`` text for COPY: microseconds since the epoch in UTC, written
    in one of the fixed offsets of :data:`_OFFSETS` (the same instant, another clock).

    Formatting dominates the generator's time, so the ``YYYY-MM-DD HH:MM:`` part is
    cached per local minute and offset (rows arrive roughly in time order; the cache is
    emptied when it grows, so memory stays bounded on long ranges), and the last value
    is remembered (an intent and its authorization share their instant).
    """

    _MAX_CACHED = 20_000

    def __init__(self) -> None:
        self._cache: dict[int, str] = {}
        self._offsets = tuple((minutes * 60 * _US, suffix) for minutes, suffix in _OFFSETS)
        self._n = len(_OFFSETS)
        self._last: tuple[int, int, str] = (-1, -1, "")

    def _prefix(self, minute: int, which: int) -> str:
        if len(self._cache) >= self._MAX_CACHED:
            self._cache.clear()
        prefix = (_EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M:")
        self._cache[minute * 8 + which] = prefix
        return prefix

    def __call__(self, us: int, which: int) -> str:
        which %= self._n
        last_us, last_which, last_text = self._last
        if us == last_us and which == last_which:
            return last_text
        offset_us, suffix = self._offsets[which]
        minute, rest = divmod(us + offset_us, _MINUTE_US)
        prefix = self._cache.get(minute * 8 + which) or self._prefix(minute, which)
        second, micro = divmod(rest, _US)
        milli, micro = divmod(micro, 1000)
        text = f"{prefix}{_TWO_DIGITS[second]}.{_THREE_DIGITS[milli]}{_THREE_DIGITS[micro]}{suffix}"
        self._last = (us, which, text)
        return text

    def pair(self, us: int, delay: int, which: int) -> tuple[str, str]:
        """The text of ``us`` and of ``us + delay`` (``delay`` >= 0), in the same offset."""
        which %= self._n
        offset_us, suffix = self._offsets[which]
        minute, rest = divmod(us + offset_us, _MINUTE_US)
        prefix = self._cache.get(minute * 8 + which) or self._prefix(minute, which)
        last_us, last_which, last_text = self._last
        if us == last_us and which == last_which:
            first = last_text
        else:
            second, micro = divmod(rest, _US)
            milli, micro = divmod(micro, 1000)
            first = f"{prefix}{_TWO_DIGITS[second]}.{_THREE_DIGITS[milli]}{_THREE_DIGITS[micro]}{suffix}"
        rest += delay
        if rest >= _MINUTE_US:
            return first, self(us + delay, which)
        second, micro = divmod(rest, _US)
        milli, micro = divmod(micro, 1000)
        return first, f"{prefix}{_TWO_DIGITS[second]}.{_THREE_DIGITS[milli]}{_THREE_DIGITS[micro]}{suffix}"


def _epoch_us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


class _PspGenerator:
    """Generates one PSP's rows hour by hour and yields them as :class:`Chunk` objects.

    Two random streams: ``rng`` draws the healthy data, ``drng`` only the divergences,
    so a different divergence rate changes the divergent keys, not the rest.
    """

    def __init__(self, spec: SeedSpec, psp: str, ids: _Ids, chunk_rows: int = CHUNK_ROWS) -> None:
        self.spec = spec
        self.psp = psp
        self.ids = ids
        self.chunk_rows = chunk_rows
        self.tally = _Tally()
        self.rng = random.Random(f"airflow-recon-seed/{spec.seed}/{psp}/rows")
        self.drng = random.Random(f"airflow-recon-seed/{spec.seed}/{psp}/divergence")
        mapping = (spec.status_mapping or {}).get(psp) or {}
        self.psp_status = _psp_vocabulary(mapping)
        self.divergent = _divergent_keys(spec, spec.rates[psp])
        self.eligible = _eligible_keys(spec)
        self.ts = _TimestampText()
        self._statement_ids: dict[int, str] = {}

    def _statement_id(self, us: int) -> str:
        hour = us // _HOUR_US
        name = self._statement_ids.get(hour)
        if name is None:
            name = f"stmt_{self.psp}_{(_EPOCH + timedelta(hours=hour)):%Y%m%d%H}"
            self._statement_ids[hour] = name
        return name

    def _next_target(self, j: int) -> int:
        """Position (among eligible keys) of the ``j``-th divergent key: one per stride of
        ``eligible / divergent`` keys, at a random place inside it, so divergences are
        spread over the inner hours and their number is exact."""
        if j >= self.divergent:
            return -1
        lo = j * self.eligible // self.divergent
        hi = (j + 1) * self.eligible // self.divergent
        return lo + self.drng.randrange(hi - lo)

    def chunks(self) -> Iterator[Chunk]:
        spec, psp, ids, tally = self.spec, self.psp, self.ids, self.tally
        rnd = self.rng.random
        ts = self.ts
        statement_id = self._statement_id
        psp_status = self.psp_status
        with_ledger = spec.with_ledger
        start_us = _epoch_us(spec.start)
        last_hour = spec.hours - 1

        intents: list[str] = []
        txns: list[str] = []
        stmts: list[str] = []
        ledger: list[str] = []

        # divergence plan: exact number of keys, kinds round-robin
        j = 0
        target = self._next_target(0)
        eligible_seen = 0
        # ledger differences of a divergent PSP: one capture missing, one with another status
        ledger_skip_at = self.eligible // 3 if self.divergent else -1
        ledger_restatus_at = 2 * self.eligible // 3 if self.divergent else -1
        ledger_skip_done = ledger_restatus_done = False

        # ids are shared by all PSPs (one sequence per table); this PSP's row counts are
        # the id deltas, which saves a counter update per row in the hot loop
        first = (ids.transaction, ids.statement, ids.ledger, ids.intent)
        names = self._statement_ids
        pair = ts.pair

        def gateway_row(
            intent_id: int, ref: str, ttype: str, status: str, amount: int, cur: str, t: int
        ) -> str:
            ids.transaction = tid = ids.transaction + 1
            # processed a little after creation, deterministic per id
            created, processed = pair(t, 50_000 + (tid * 7919) % 1_950_000, tid)
            txns.append(f"{tid}\t{intent_id}\t{ttype}\t{status}\t{amount}\t{cur}\t{created}\t{processed}\n")
            return created

        def ledger_row(ref: str, status: str, amount: int, cur: str, created: str) -> None:
            ids.ledger = lid = ids.ledger + 1
            ledger.append(f"{lid}\t{psp}\t{ref}\t{status}\t{amount}\t{cur}\t{created}\n")

        def statement_row(ref: str, ttype: str, status: str, amount: int, cur: str, t: int) -> None:
            ids.statement = sid = ids.statement + 1
            name = names.get(t // _HOUR_US) or statement_id(t)
            occurred = ts(t, sid + 2)
            stmts.append(f"{sid}\t{psp}\t{ref}\t{ttype}\t{status}\t{amount}\t{cur}\t{occurred}\t{name}\n")

        def intent_row(ref: str, t: int) -> int:
            ids.intent = iid = ids.intent + 1
            # written in the offset of the next transaction row: the authorization shares it
            intents.append(f"{iid}\t{psp}\t{ref}\t{ts(t, ids.transaction + 1)}\n")
            return iid

        def count() -> None:
            tally.gateway_rows = ids.transaction - first[0]
            tally.statement_rows = ids.statement - first[1]
            tally.ledger_rows = ids.ledger - first[2]
            tally.intent_rows = ids.intent - first[3]

        def flush() -> Chunk:
            chunk = Chunk(
                psp=psp,
                intents="".join(intents),
                transactions="".join(txns),
                statements="".join(stmts),
                ledger="".join(ledger),
                gateway_done=ids.transaction - first[0],
            )
            intents.clear()
            txns.clear()
            stmts.clear()
            ledger.clear()
            return chunk

        n = 0  # intent number of this PSP, for provider references
        for hour in range(spec.hours):
            hour_us = start_us + hour * _HOUR_US
            rows_h = spec.rows_in_hour(hour)
            edges = _edge_intents(rows_h)
            budget = rows_h - _EDGE_ROWS * edges
            inner = 0 < hour < last_hour
            step = _SPREAD_US // budget if budget else 0
            slot = 0
            while slot < budget:
                n += 1
                ref = f"pi_{psp}_{n}"
                t0 = hour_us + slot * _SPREAD_US // budget + int(rnd() * step)
                intent_id = intent_row(ref, t0)
                r = rnd()
                cur = "BRL" if r < 0.8 else ("USD" if r < 0.92 else "EUR")
                # amounts from R$ 1,00 to R$ 9.999,99, skewed towards small tickets
                digits = 3 + int(rnd() * 4)
                amount = 10 ** (digits - 1) + int(rnd() * 9 * 10 ** (digits - 1))
                plan: list[tuple[str, str, int, int]]
                if rnd() < 0.03:
                    plan = [("authorization", "failed", amount, t0)]
                else:
                    tc = t0 + _US + int(rnd() * 89 * _US)
                    plan = [("authorization", "authorized", amount, t0), ("capture", "captured", amount, tc)]
                    if rnd() < 0.6:
                        plan.append(("settlement", "settled", amount, tc + 60 * _US + int(rnd() * 180 * _US)))
                    if rnd() < 0.06:
                        refund = max(1, amount * (10 + int(rnd() * 91)) // 100)
                        plan.append(("refund", "refunded", refund, tc + 120 * _US + int(rnd() * 240 * _US)))
                room = budget - slot
                if len(plan) > room:
                    plan = plan[:room]
                slot += len(plan)
                for ttype, status, amt, t in plan:
                    # drawn for every key, so healthy data does not depend on the divergence plan
                    t_statement = t + 50_000 + int(rnd() * 4_950_000)
                    kind = None
                    skip_ledger = False
                    ledger_status = status
                    if inner:
                        if eligible_seen == target:
                            kind = _KIND_ORDER[j % len(_KIND_ORDER)]
                            j += 1
                            target = self._next_target(j)
                        elif ttype == "capture" and status == "captured":
                            if not ledger_skip_done and eligible_seen >= ledger_skip_at >= 0:
                                skip_ledger = ledger_skip_done = True
                                tally.ledger_differences += 1
                            elif not ledger_restatus_done and eligible_seen >= ledger_restatus_at >= 0:
                                ledger_status = "settled"
                                ledger_restatus_done = True
                                tally.ledger_differences += 1
                        eligible_seen += 1
                    if kind is None:
                        created = gateway_row(intent_id, ref, ttype, status, amt, cur, t)
                        if with_ledger and not skip_ledger:
                            ledger_row(ref, ledger_status, amt, cur, created)
                        statement_row(ref, ttype, psp_status[status], amt, cur, t_statement)
                        continue
                    self._divergent_key(
                        kind,
                        hour,
                        j - 1,
                        (intent_id, ref, ttype, status, amt, cur, t, t_statement),
                        gateway_row,
                        ledger_row,
                        statement_row,
                        intent_row,
                    )
                if len(txns) >= self.chunk_rows:
                    yield flush()
            # edge intents: captured at HH:59:59.x by the gateway, at HH+1:00:00.x by the PSP
            for _ in range(edges):
                n += 1
                ref = f"pi_{psp}_{n}"
                t_capture = hour_us + 3599 * _US + int(rnd() * 999_999)
                t_auth = t_capture - _US - int(rnd() * 7 * _US)
                t_psp = hour_us + _HOUR_US + 1 + int(rnd() * 999_000)
                amount = 1000 + int(rnd() * 99_000)
                intent_id = intent_row(ref, t_auth)
                for ttype, status, t, t_statement in (
                    ("authorization", "authorized", t_auth, t_auth + 50_000 + int(rnd() * 950_000)),
                    ("capture", "captured", t_capture, t_psp),
                ):
                    created = gateway_row(intent_id, ref, ttype, status, amount, "BRL", t)
                    if with_ledger:
                        ledger_row(ref, status, amount, "BRL", created)
                    statement_row(ref, ttype, psp_status[status], amount, "BRL", t_statement)
            if len(txns) >= self.chunk_rows:
                yield flush()
        count()
        if txns or stmts or intents or ledger:
            yield flush()

    def _divergent_key(
        self,
        kind: DivergenceKind,
        hour: int,
        index: int,
        row: tuple[str | int, ...],
        gateway_row: Callable[..., str],
        ledger_row: Callable[..., None],
        statement_row: Callable[..., None],
        intent_row: Callable[..., int],
    ) -> None:
        """Write one divergent key and record its ground truth (DESIGN section 3 amounts)."""
        intent_id, ref, ttype, status, amount, cur, t, t_statement = row
        drng, with_ledger, psp_status = self.drng, self.spec.with_ledger, self.psp_status
        s_status, s_amount, s_cur = psp_status[status], amount, cur
        if kind is DivergenceKind.MISSING_IN_GATEWAY:
            # the gateway lost the row: only the PSP knows it
            statement_row(ref, ttype, s_status, amount, cur, t_statement)
            self.tally.add(kind, hour, amount)
            return
        created = gateway_row(intent_id, ref, ttype, status, amount, cur, t)
        if with_ledger:
            ledger_row(ref, status, amount, cur, created)
        divergent = amount
        if kind is DivergenceKind.DUPLICATE_IN_GATEWAY:
            # a retried call recorded twice: half on the same intent, half on a second intent
            # that reuses the reference (DESIGN: two intents sharing a reference count too)
            t_copy = t + _US + drng.randrange(29 * _US)
            copy_intent = intent_id if index // len(_KIND_ORDER) % 2 == 0 else intent_row(ref, t_copy)
            copy_created = gateway_row(copy_intent, ref, ttype, status, amount, cur, t_copy)
            if with_ledger:
                ledger_row(ref, status, amount, cur, copy_created)
            statement_row(ref, ttype, s_status, amount, cur, t_statement)
        elif kind is DivergenceKind.DUPLICATE_IN_STATEMENT:
            statement_row(ref, ttype, s_status, amount, cur, t_statement)
            statement_row(ref, ttype, s_status, amount, cur, t_statement + _US + drng.randrange(59 * _US))
        elif kind is DivergenceKind.MISSING_IN_STATEMENT:
            pass
        else:
            if kind is DivergenceKind.CURRENCY_MISMATCH:
                others = [c for c in CURRENCIES if c != cur]
                s_cur = others[drng.randrange(len(others))]
            elif kind is DivergenceKind.AMOUNT_MISMATCH:
                delta = 1 + drng.randrange(max(1, amount // 10))
                s_amount = amount - delta if delta < amount and drng.random() < 0.5 else amount + delta
                divergent = abs(amount - s_amount)
            else:  # status mismatch, real after the PSP's status mapping
                others = _OTHER_STATUS[status]
                s_status = psp_status[others[drng.randrange(len(others))]]
            statement_row(ref, ttype, s_status, s_amount, s_cur, t_statement)
        self.tally.add(kind, hour, divergent)


def generate_chunks(spec: SeedSpec, *, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """The COPY text of the whole spec (ids from 1), PSP after PSP; no database needed."""
    ids = _Ids()
    for psp in spec.psps:
        yield from _PspGenerator(spec, psp, ids, chunk_rows).chunks()


# -- loading ------------------------------------------------------------------------------

T = TypeVar("T")


def _in_background(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run ``items`` in a thread, ``depth`` items ahead.

    Generating text is Python work, loading it is the server's; psycopg releases the GIL
    while it waits on the socket, so the two overlap. The bounded queue keeps memory flat.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed over to the consumer, re-raised there
            put(("error", exc))

    worker = threading.Thread(target=run, name="recon-seed-generator", daemon=True)
    worker.start()
    try:
        while True:
            tag, value = q.get()
            if tag == "done":
                return
            if tag == "error":
                raise value
            yield value
    finally:
        stop.set()
        worker.join()


def _copy_statement(table: str, columns: tuple[str, ...]) -> sql.Composed:
    ident = sql.Identifier(*table.split("."))
    return sql.SQL("COPY {} ({}) FROM STDIN").format(ident, sql.SQL(", ").join(map(sql.Identifier, columns)))


def _copy_text(cur: psycopg.Cursor, statement: sql.Composed, text: str) -> None:
    if text:
        with cur.copy(statement) as copy:
            copy.write(text)


def _table_exists(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def _column_exists(conn: psycopg.Connection, table: str, column: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s)"
        " AND attname = %s AND NOT attisdropped)",
        (table, column),
    ).fetchone()
    return bool(row and row[0])


def _ensure_tables(gateway_conn: psycopg.Connection, ledger_conn: psycopg.Connection | None) -> None:
    """Create the runbook tables where they are missing (test and demo databases)."""
    from airflow_recon_provider.schema import create_runbook_tables

    if not all(_table_exists(gateway_conn, name) for name in _GATEWAY_TABLES):
        create_runbook_tables(gateway_conn, gateway=True, ledger=False)
    if ledger_conn is not None and not _column_exists(ledger_conn, "ledger.transactions", "currency"):
        # missing, or created before the ledger kept the currency of its amounts
        create_runbook_tables(ledger_conn, gateway=False, ledger=True)


def _max_id(conn: psycopg.Connection, table: str) -> int:
    ident = sql.Identifier(*table.split("."))
    row = conn.execute(sql.SQL("SELECT COALESCE(max(id), 0) FROM {}").format(ident)).fetchone()
    return int(row[0])


def _fix_sequence(conn: psycopg.Connection, table: str) -> None:
    """Explicit ids bypass the sequences: move them past the largest id."""
    ident = sql.Identifier(*table.split("."))
    conn.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), GREATEST(max(id), 1), max(id) IS NOT NULL) "
            "FROM {}"
        ).format(ident),
        (table,),
    )


def _cycle_key(start: datetime, hour: int) -> str:
    return Cycle(start + timedelta(hours=hour)).start.isoformat()


def _figures(counts: dict[DivergenceKind, list[int]]) -> KindFigures:
    return {
        kind.value: {"count": counts[kind][0], "amount_minor": counts[kind][1]}
        for kind in ALL_KINDS
        if kind in counts
    }


#: total gateway rows from which a truncating seed takes the secondary indexes and
#: foreign keys off during the load and rebuilds them afterwards (about 2x faster)
BULK_THRESHOLD = 100_000


def _deferrable_ddl(conn: psycopg.Connection, tables: tuple[str, ...]) -> list[tuple[str, str]] | None:
    """``(drop, restore)`` statements of the foreign keys and plain (non-unique,
    non-constraint) indexes of ``tables``, written by the server itself
    (``pg_get_indexdef``, ``pg_get_constraintdef``) so the restored schema is identical.

    ``None`` when the current role does not own every table (then nothing is deferred).
    """
    names = list(tables)
    owned = conn.execute(
        "SELECT bool_and(pg_has_role(c.relowner, 'USAGE')) FROM pg_class AS c "
        "WHERE c.oid = ANY(%s::text[]::regclass[])",
        (names,),
    ).fetchone()
    if not owned or not owned[0]:
        return None
    rows = conn.execute(
        """
SELECT format('ALTER TABLE %%s DROP CONSTRAINT %%I', c.conrelid::regclass, c.conname),
       format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', c.conrelid::regclass, c.conname,
              pg_get_constraintdef(c.oid))
FROM pg_constraint AS c
WHERE c.contype = 'f' AND c.conrelid = ANY(%(tables)s::text[]::regclass[])
UNION ALL
SELECT format('DROP INDEX %%s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
FROM pg_index AS i
WHERE i.indrelid = ANY(%(tables)s::text[]::regclass[])
  AND NOT i.indisunique AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.indexrelid)
""",
        {"tables": names},
    ).fetchall()
    return [(str(drop), str(restore)) for drop, restore in rows]


def seed_database(
    gateway_conn: psycopg.Connection,
    ledger_conn: psycopg.Connection | None,
    spec: SeedSpec,
    *,
    truncate: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    bulk: bool | None = None,
) -> SeedResult:
    """Load ``spec``'s data and return the ground truth.

    :param gateway_conn: the billing gateway database (runbook tables).
    :param ledger_conn: the payments ledger database; ``None`` or the same connection
        when ``ledger.transactions`` lives in the gateway database.
    :param truncate: empty the runbook tables first (``TRUNCATE ... RESTART IDENTITY``).
        The data is byte-identical across runs only then; when appending, ids continue
        after the existing rows and the ground truth covers the new rows only.
    :param progress: called as ``progress(stage, done, total)`` after each chunk.
    :param bulk: take the secondary indexes and foreign keys off during the load and
        rebuild them, identical, before commit (only with ``truncate``, and only on
        tables the role owns). Default: from :data:`BULK_THRESHOLD` rows on.

    Everything is written in one transaction per database, committed before returning
    (when the caller already has a transaction open on a connection, the work joins it
    and the caller commits); ``TRUNCATE`` locks the tables anyway, so nobody sees them
    half loaded or without their indexes.
    """
    if not isinstance(spec, SeedSpec):
        raise SeedSpecError(f"spec must be a SeedSpec, got {type(spec).__name__}")
    ledger = (ledger_conn if ledger_conn is not None else gateway_conn) if spec.with_ledger else None
    separate_ledger = ledger is not None and ledger is not gateway_conn
    if bulk is None:
        bulk = spec.rows_per_psp * len(spec.psps) >= BULK_THRESHOLD
    bulk = bulk and truncate

    copy_intents = _copy_statement(*_INTENTS)
    copy_txns = _copy_statement(*_TRANSACTIONS)
    copy_stmts = _copy_statement(*_STATEMENTS)
    copy_ledger = _copy_statement(*_LEDGER)
    tallies: dict[str, _Tally] = {}
    log_rows = 0
    with ExitStack() as stack:
        stack.enter_context(gateway_conn.transaction())
        if separate_ledger:
            stack.enter_context(ledger.transaction())
        # every statement, reads included, runs inside these blocks: on an idle connection
        # that is not in autocommit they BEGIN and COMMIT themselves (hooks close theirs
        # without committing), inside a caller's transaction they are savepoints
        _ensure_tables(gateway_conn, ledger)
        gcur = stack.enter_context(gateway_conn.cursor())
        lcur = stack.enter_context(ledger.cursor()) if separate_ledger else gcur
        if truncate:
            gcur.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                    sql.SQL(", ").join(map(sql.Identifier, _GATEWAY_TABLES))
                )
            )
            if ledger is not None:
                lcur.execute("TRUNCATE ledger.transactions RESTART IDENTITY")
        deferred: list[tuple[psycopg.Cursor, list[tuple[str, str]]]] = []
        if bulk:
            targets = [(gcur, gateway_conn, (_INTENTS[0], _TRANSACTIONS[0], _STATEMENTS[0]))]
            if ledger is not None:
                targets.append((lcur, ledger, (_LEDGER[0],)))
            for cur, conn, tables in targets:
                ddl = _deferrable_ddl(conn, tables)
                if ddl:
                    cur.execute("SELECT set_config('maintenance_work_mem', '256MB', true)")
                    for drop, _restore in ddl:
                        cur.execute(drop)
                    deferred.append((cur, ddl))
        ids = _Ids(
            intent=_max_id(gateway_conn, _INTENTS[0]),
            transaction=_max_id(gateway_conn, _TRANSACTIONS[0]),
            statement=_max_id(gateway_conn, _STATEMENTS[0]),
            ledger=_max_id(ledger, _LEDGER[0]) if ledger is not None else 0,
        )
        generators = [_PspGenerator(spec, psp, ids) for psp in spec.psps]
        for gen in generators:
            tallies[gen.psp] = gen.tally

        def all_chunks() -> Iterator[Chunk]:
            for gen in generators:
                yield from gen.chunks()

        for chunk in _in_background(all_chunks()):
            # intents first: transactions reference them
            _copy_text(gcur, copy_intents, chunk.intents)
            _copy_text(gcur, copy_txns, chunk.transactions)
            _copy_text(gcur, copy_stmts, chunk.statements)
            if ledger is not None:
                _copy_text(lcur, copy_ledger, chunk.ledger)
            if progress is not None:
                progress(chunk.psp, chunk.gateway_done, spec.rows_per_psp)

        if deferred:
            if progress is not None:
                progress("indexes", 0, sum(len(ddl) for _, ddl in deferred))
            # indexes before foreign keys: a foreign key is checked in one pass when added
            for cur, ddl in deferred:
                for _drop, restore in sorted(ddl, key=lambda d: d[1].startswith("ALTER")):
                    cur.execute(restore)
        for table in (_INTENTS[0], _TRANSACTIONS[0], _STATEMENTS[0]):
            _fix_sequence(gateway_conn, table)
        if ledger is not None:
            _fix_sequence(ledger, _LEDGER[0])
        if spec.with_reconciliation_logs:
            log_rows = _write_logs(gcur, spec, tallies)
            if progress is not None:
                progress("reconciliation_logs", log_rows, log_rows)
        # fresh statistics: the first summary after a seed should get a sensible plan
        gcur.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(map(sql.Identifier, _GATEWAY_TABLES))))
        if ledger is not None:
            lcur.execute("ANALYZE ledger.transactions")

    return SeedResult(
        spec=spec,
        expected={psp: _figures(t.by_kind) for psp, t in tallies.items()},
        gateway_rows={psp: t.gateway_rows for psp, t in tallies.items()},
        statement_rows={psp: t.statement_rows for psp, t in tallies.items()},
        ledger_rows={psp: t.ledger_rows for psp, t in tallies.items()},
        intent_rows={psp: t.intent_rows for psp, t in tallies.items()},
        expected_by_cycle={
            psp: {_cycle_key(spec.start, h): _figures(c) for h, c in sorted(t.by_cycle.items())}
            for psp, t in tallies.items()
        },
        ledger_differences={psp: t.ledger_differences for psp, t in tallies.items()},
        reconciliation_log_rows=log_rows,
    )


def _write_logs(cur: psycopg.Cursor, spec: SeedSpec, tallies: dict[str, _Tally]) -> int:
    """One successful cycle per PSP and hour, with the cycle's true divergent figures,
    recorded a couple of minutes after the cycle ended (lag 0 at the end of the range)."""
    lines: list[str] = []
    for index, psp in enumerate(spec.psps):
        by_cycle = tallies[psp].by_cycle
        for hour in range(spec.hours):
            cycle_start = spec.start + timedelta(hours=hour)
            cycle_end = cycle_start + timedelta(hours=1)
            figures = by_cycle.get(hour, {})
            count = sum(v[0] for v in figures.values())
            amount = sum(v[1] for v in figures.values())
            recorded = cycle_end + timedelta(minutes=2, seconds=index)
            lines.append(
                f"{psp}\t{cycle_start.isoformat()}\t{cycle_end.isoformat()}\tsuccess\t{amount}\t{count}\t"
                f"seeded cycle (airflow-recon seed {spec.seed})\t{recorded.isoformat()}\n"
            )
    _copy_text(cur, _copy_statement(*_LOGS), "".join(lines))
    return len(lines)
