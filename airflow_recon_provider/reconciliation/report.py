"""Divergence report and summary models, and their renderers (jsonl, csv, table).

Amounts are ``int`` minor units throughout; ``divergence_pct`` is computed with
integer arithmetic and rounded half-up to 4 decimals, for display only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import IO, Any

from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind
from airflow_recon_provider.reconciliation.thresholds import AlertReason, Thresholds
from airflow_recon_provider.reconciliation.window import Window

#: The keys of one report line (DESIGN section 6), in output order.
REPORT_FIELDS = (
    "kind",
    "provider_reference",
    "transaction_type",
    "gateway_status",
    "statement_status",
    "gateway_amount_minor",
    "statement_amount_minor",
    "divergent_amount_minor",
    "currency",
)

FORMATS = ("jsonl", "csv", "table")


@dataclass(frozen=True, slots=True)
class DivergenceRow:
    """One divergent ``(provider_reference, transaction_type)`` key.

    For duplicates, the side's amount is the sum of its copies and its status that of
    the copy with the smallest status value; ``gateway_count`` / ``statement_count`` say
    how many rows each side has (0 when missing).
    """

    kind: DivergenceKind
    provider_reference: str
    transaction_type: str
    gateway_status: str | None
    statement_status: str | None
    gateway_amount_minor: int | None
    statement_amount_minor: int | None
    divergent_amount_minor: int
    currency: str | None
    gateway_count: int = 0
    statement_count: int = 0
    gateway_first_id: int | None = None

    @classmethod
    def from_db(cls, record: tuple[Any, ...]) -> DivergenceRow:
        kind, ref, ttype, gs, ss, ga, sa, amount, cur, gn, sn, gid = record
        return cls(
            kind=DivergenceKind(kind),
            provider_reference=ref,
            transaction_type=ttype,
            gateway_status=gs,
            statement_status=ss,
            gateway_amount_minor=None if ga is None else int(ga),
            statement_amount_minor=None if sa is None else int(sa),
            divergent_amount_minor=int(amount),
            currency=cur,
            gateway_count=int(gn or 0),
            statement_count=int(sn or 0),
            gateway_first_id=None if gid is None else int(gid),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "provider_reference": self.provider_reference,
            "transaction_type": self.transaction_type,
            "gateway_status": self.gateway_status,
            "statement_status": self.statement_status,
            "gateway_amount_minor": self.gateway_amount_minor,
            "statement_amount_minor": self.statement_amount_minor,
            "divergent_amount_minor": self.divergent_amount_minor,
            "currency": self.currency,
        }


@dataclass(frozen=True)
class KindTotal:
    count: int = 0
    amount_minor: int = 0


def divergence_pct(divergent_amount_minor: int, gateway_amount_minor: int) -> float | None:
    """100 * divergent / gateway, rounded half-up to 4 decimals (display only)."""
    if gateway_amount_minor == 0:
        return None
    ratio = Decimal(100 * divergent_amount_minor) / Decimal(gateway_amount_minor)
    return float(ratio.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class DivergenceSummary:
    """Summary figures of DESIGN section 3 for one PSP and window."""

    psp: str
    window: Window
    gateway_count: int
    gateway_amount_minor: int
    by_kind: dict[DivergenceKind, KindTotal] = field(default_factory=dict)
    lag_cycles: int | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def divergent_count(self) -> int:
        return sum(t.count for t in self.by_kind.values())

    @property
    def divergent_amount_minor(self) -> int:
        return sum(t.amount_minor for t in self.by_kind.values())

    @property
    def divergence_pct(self) -> float | None:
        return divergence_pct(self.divergent_amount_minor, self.gateway_amount_minor)

    @property
    def alert_reasons(self) -> list[AlertReason]:
        return self.thresholds.alert_reasons(
            divergent_amount_minor=self.divergent_amount_minor, lag_cycles=self.lag_cycles
        )

    @property
    def alert(self) -> bool:
        return bool(self.alert_reasons)

    @property
    def recovered(self) -> bool:
        """Amount and count criteria only; the successful-runs criterion is the sensor's."""
        return self.thresholds.amounts_recovered(
            divergent_amount_minor=self.divergent_amount_minor, divergent_count=self.divergent_count
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "psp": self.psp,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "gateway_count": self.gateway_count,
            "gateway_amount_minor": self.gateway_amount_minor,
            "divergent_count": self.divergent_count,
            "divergent_amount_minor": self.divergent_amount_minor,
            "divergence_pct": self.divergence_pct,
            "by_kind": {
                kind.value: {"count": total.count, "amount_minor": total.amount_minor}
                for kind, total in sorted(self.by_kind.items(), key=lambda kv: kv[0].rank)
            },
            "lag_cycles": self.lag_cycles,
            "alert": self.alert,
            "alert_reasons": [r.value for r in self.alert_reasons],
            "recovered": self.recovered,
        }


# -- renderers -----------------------------------------------------------------------


def write_jsonl(rows: Iterable[DivergenceRow], out: IO[str]) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(row.as_dict(), ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        count += 1
    return count


def write_csv(rows: Iterable[DivergenceRow], out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=REPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.as_dict().items()})
        count += 1
    return count


def format_minor(amount_minor: int | None, currency: str | None = None) -> str:
    """``123456`` -> ``1,234.56`` (two-decimal currencies); exact, no float involved."""
    if amount_minor is None:
        return "-"
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 100)
    text = f"{sign}{units:,}.{cents:02d}"
    return f"{text} {currency}" if currency else text


def iter_table_lines(rows: Iterable[DivergenceRow]) -> Iterator[list[str]]:
    for row in rows:
        yield [
            row.kind.value,
            row.provider_reference,
            row.transaction_type,
            row.gateway_status or "-",
            row.statement_status or "-",
            format_minor(row.gateway_amount_minor),
            format_minor(row.statement_amount_minor),
            format_minor(row.divergent_amount_minor),
            row.currency or "-",
        ]


def write_table(rows: Iterable[DivergenceRow], out: IO[str], *, batch: int = 500) -> int:
    """A terminal table, printed in batches so memory stays flat on long reports."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=160, force_terminal=False)
    headers = [
        "kind",
        "reference",
        "type",
        "gateway status",
        "PSP status",
        "gateway",
        "PSP",
        "divergent",
        "currency",
    ]
    count = 0
    table = None
    for line in iter_table_lines(rows):
        if table is None:
            table = Table(*headers, show_lines=False)
        table.add_row(*line)
        count += 1
        if count % batch == 0:
            console.print(table)
            table = None
    if table is not None:
        console.print(table)
    if count == 0:
        console.print("No divergence in this window.")
    return count


def render_rows(rows: Iterable[DivergenceRow], out: IO[str], fmt: str) -> int:
    if fmt == "jsonl":
        return write_jsonl(rows, out)
    if fmt == "csv":
        return write_csv(rows, out)
    if fmt == "table":
        return write_table(rows, out)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def summary_table(summary: DivergenceSummary) -> str:
    """A readable per-kind table of a summary (demo, CLI, task logs)."""
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=110, force_terminal=False, soft_wrap=True)
    pct = summary.divergence_pct
    console.print(f"PSP {summary.psp}  window {summary.window}")
    console.print(
        f"gateway: {summary.gateway_count:,} rows, {format_minor(summary.gateway_amount_minor)}  |  "
        f"divergent: {summary.divergent_count:,} keys, {format_minor(summary.divergent_amount_minor)}"
        f" ({'n/a' if pct is None else f'{pct:.4f}%'})"
    )
    table = Table()
    table.add_column("divergence kind")
    table.add_column("keys", justify="right")
    table.add_column("divergent amount", justify="right")
    for kind in ALL_KINDS:
        total = summary.by_kind.get(kind, KindTotal())
        table.add_row(kind.value, f"{total.count:,}", format_minor(total.amount_minor))
    table.add_row(
        "total", f"{summary.divergent_count:,}", format_minor(summary.divergent_amount_minor), style="bold"
    )
    console.print(table)
    reasons = ", ".join(r.value for r in summary.alert_reasons) or "none"
    console.print(
        f"alert billing_gateway-reconciliation: {'YES' if summary.alert else 'no'} (reasons: {reasons}); "
        f"lag: {'never reconciled' if summary.lag_cycles is None else f'{summary.lag_cycles} cycle(s)'}; "
        f"recovered (amount/count): {'yes' if summary.recovered else 'no'}"
    )
    return buf.getvalue()


def summary_from_results(
    *,
    psp: str,
    window: Window,
    totals: tuple[int, int],
    by_kind_rows: Iterable[tuple[str, int, int]],
    last_success_end: Any,
    reference: Any,
    thresholds: Thresholds,
) -> DivergenceSummary:
    """Build a summary from the results of the summary statements (sync or async I/O):
    ``totals`` of :func:`queries.gateway_totals_query`, rows of
    :func:`queries.divergence_by_kind_query`, and the value of
    :func:`queries.latest_success_query` at ``reference``."""
    from airflow_recon_provider.reconciliation.window import cycles_between

    count, amount = totals
    return DivergenceSummary(
        psp=psp,
        window=window,
        gateway_count=int(count),
        gateway_amount_minor=int(amount),
        by_kind={DivergenceKind(kind): KindTotal(int(n), int(total)) for kind, n, total in by_kind_rows},
        lag_cycles=cycles_between(last_success_end, reference),
        thresholds=thresholds,
    )
