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
from airflow_recon_provider.reconciliation.money import (
    DEFAULT_LOCALE,
    DEFAULT_REPORTING_CURRENCY,
    Converter,
    FxRate,
    exponent,
    format_money,
    format_pct,
    rate_text,
)
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
    #: the statement side's currency when it has one (differs from ``currency`` for a
    #: currency mismatch); ``None`` when missing or in several currencies
    statement_currency: str | None = None
    #: extra copies of a duplicate in other currencies than the key's: ``{currency: amount}``
    #: (DESIGN 3a: they count in their own currency, never added to ``divergent_amount_minor``)
    other_amounts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_db(cls, record: tuple[Any, ...]) -> DivergenceRow:
        kind, ref, ttype, gs, ss, ga, sa, amount, cur, gn, sn, gid, s_cur, other = record
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
            statement_currency=s_cur if s_cur is not None else (cur if sa is not None else None),
            other_amounts={str(c): int(v) for c, v in (other or {}).items()},
        )

    @property
    def statement_amount_currency(self) -> str | None:
        """The currency of ``statement_amount_minor``."""
        return self.statement_currency or self.currency

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
class CurrencyFigures:
    """The summary figures of one currency, in its own minor units (DESIGN 3a).

    ``by_kind`` counts the divergent keys whose currency this is, and the divergent amounts
    in this currency (an extra copy of a duplicate in this currency adds its amount, not a
    count)."""

    currency: str
    gateway_count: int = 0
    gateway_amount_minor: int = 0
    by_kind: dict[DivergenceKind, KindTotal] = field(default_factory=dict)

    @property
    def exponent(self) -> int | None:
        return exponent(self.currency)

    @property
    def divergent_count(self) -> int:
        return sum(t.count for t in self.by_kind.values())

    @property
    def divergent_amount_minor(self) -> int:
        return sum(t.amount_minor for t in self.by_kind.values())

    @property
    def has_divergence(self) -> bool:
        return any(t.count or t.amount_minor for t in self.by_kind.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "exponent": self.exponent,
            "gateway_count": self.gateway_count,
            "gateway_amount_minor": self.gateway_amount_minor,
            "divergent_count": self.divergent_count,
            "divergent_amount_minor": self.divergent_amount_minor,
            "by_kind": _kinds_dict(self.by_kind),
        }


def _kinds_dict(by_kind: dict[DivergenceKind, KindTotal]) -> dict[str, dict[str, int]]:
    return {
        kind.value: {"count": total.count, "amount_minor": total.amount_minor}
        for kind, total in sorted(by_kind.items(), key=lambda kv: kv[0].rank)
    }


@dataclass(frozen=True)
class DivergenceSummary:
    """Summary figures of DESIGN sections 3 and 3a for one PSP and window.

    Per-currency figures are in ``by_currency``; the top-level amounts are in the reporting
    currency: each currency's total converted once with its rate in ``fx_rates`` (the rate in
    force at the window's end), currencies without a rate left out and listed in
    ``unconverted_currencies``. Counts always include every currency. Decisions (alert,
    recovery) use the converted figures; a currency without a rate that has a divergence
    fires the alert (``fx_rate_missing``) and keeps the window from recovering.
    """

    psp: str
    window: Window
    by_currency: dict[str, CurrencyFigures] = field(default_factory=dict)
    lag_cycles: int | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    reporting_currency: str = DEFAULT_REPORTING_CURRENCY
    fx_rates: dict[str, FxRate] = field(default_factory=dict)

    @classmethod
    def in_one_currency(
        cls,
        *,
        psp: str,
        window: Window,
        gateway_count: int,
        gateway_amount_minor: int,
        by_kind: dict[DivergenceKind, KindTotal] | None = None,
        currency: str = DEFAULT_REPORTING_CURRENCY,
        **kwargs: Any,
    ) -> DivergenceSummary:
        """A summary whose every row is in ``currency`` (the reporting one by default)."""
        figures = CurrencyFigures(currency, gateway_count, gateway_amount_minor, dict(by_kind or {}))
        return cls(psp=psp, window=window, by_currency={currency: figures}, **kwargs)

    @property
    def converter(self) -> Converter:
        return Converter(self.reporting_currency, self.fx_rates)

    @property
    def currencies(self) -> list[str]:
        return sorted(self.by_currency)

    @property
    def unconverted_currencies(self) -> list[str]:
        """Currencies of the window with no rate in force (their amounts are left out of the
        converted figures)."""
        return [c for c in self.currencies if not self.converter.can_convert(c)]

    @property
    def fx_rate_missing(self) -> bool:
        """A currency without a rate has a divergence: never assumed small."""
        return any(self.by_currency[c].has_divergence for c in self.unconverted_currencies)

    @property
    def used_rates(self) -> dict[str, FxRate]:
        """The rates the converted figures used: currencies of the window other than the
        reporting one that have a rate."""
        return {
            c: self.fx_rates[c]
            for c in self.currencies
            if c != self.reporting_currency and c in self.fx_rates
        }

    @property
    def gateway_count(self) -> int:
        return sum(f.gateway_count for f in self.by_currency.values())

    @property
    def gateway_amount_minor(self) -> int:
        """Reporting-currency minor units: each currency's gateway total converted once."""
        return self.converter.total((c, f.gateway_amount_minor) for c, f in self.by_currency.items())

    @property
    def divergent_count(self) -> int:
        return sum(f.divergent_count for f in self.by_currency.values())

    @property
    def divergent_amount_minor(self) -> int:
        """Reporting-currency minor units: each currency's divergent total converted once."""
        return self.converter.total((c, f.divergent_amount_minor) for c, f in self.by_currency.items())

    @property
    def by_kind(self) -> dict[DivergenceKind, KindTotal]:
        """Per kind: keys of every currency, and the amount in reporting-currency minor units
        (each (currency, kind) total converted separately: the kinds may add up to
        ``divergent_amount_minor`` within one minor unit per pair)."""
        out: dict[DivergenceKind, KindTotal] = {}
        for currency, figures in self.by_currency.items():
            for kind, total in figures.by_kind.items():
                converted = self.converter.convert(total.amount_minor, currency) or 0
                have = out.get(kind, KindTotal())
                out[kind] = KindTotal(have.count + total.count, have.amount_minor + converted)
        return out

    @property
    def divergence_pct(self) -> float | None:
        return divergence_pct(self.divergent_amount_minor, self.gateway_amount_minor)

    @property
    def alert_reasons(self) -> list[AlertReason]:
        return self.thresholds.alert_reasons(
            divergent_amount_minor=self.divergent_amount_minor,
            lag_cycles=self.lag_cycles,
            fx_rate_missing=self.fx_rate_missing,
        )

    @property
    def alert(self) -> bool:
        return bool(self.alert_reasons)

    @property
    def recovered(self) -> bool:
        """Amount and count criteria only; the successful-runs criterion is the sensor's.
        A divergence in a currency without a rate is never taken as recovered."""
        return self.thresholds.amounts_recovered(
            divergent_amount_minor=self.divergent_amount_minor,
            divergent_count=self.divergent_count,
            fx_rate_missing=self.fx_rate_missing,
        )

    def money(self, amount_minor: int | None, *, locale: str = DEFAULT_LOCALE) -> str:
        """A reporting-currency amount as people read it (``R$ 1.234,56``)."""
        return format_money(amount_minor, self.reporting_currency, locale=locale)

    def as_dict(self) -> dict[str, Any]:
        return {
            "psp": self.psp,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "reporting_currency": self.reporting_currency,
            "gateway_count": self.gateway_count,
            "gateway_amount_minor": self.gateway_amount_minor,
            "divergent_count": self.divergent_count,
            "divergent_amount_minor": self.divergent_amount_minor,
            "divergence_pct": self.divergence_pct,
            "by_kind": _kinds_dict(self.by_kind),
            "by_currency": {c: self.by_currency[c].as_dict() for c in self.currencies},
            "fx_rates": {c: rate.as_dict() for c, rate in sorted(self.used_rates.items())},
            "unconverted_currencies": self.unconverted_currencies,
            "lag_cycles": self.lag_cycles,
            "alert": self.alert,
            "alert_reasons": [r.value for r in self.alert_reasons],
            "recovered": self.recovered,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, thresholds: Thresholds | None = None) -> DivergenceSummary:
        """The summary back from :meth:`as_dict` (a trigger event, an XCom)."""
        from datetime import datetime

        by_currency = {
            code: CurrencyFigures(
                code,
                int(fig["gateway_count"]),
                int(fig["gateway_amount_minor"]),
                {
                    DivergenceKind(k): KindTotal(int(v["count"]), int(v["amount_minor"]))
                    for k, v in fig["by_kind"].items()
                },
            )
            for code, fig in (data.get("by_currency") or {}).items()
        }
        rates = {
            code: FxRate(
                code, Decimal(r["rate"]), datetime.fromisoformat(r["valid_from"]), r.get("source", "")
            )
            for code, r in (data.get("fx_rates") or {}).items()
        }
        return cls(
            psp=data["psp"],
            window=Window(
                datetime.fromisoformat(data["window_start"]), datetime.fromisoformat(data["window_end"])
            ),
            by_currency=by_currency,
            lag_cycles=data.get("lag_cycles"),
            thresholds=thresholds or Thresholds(),
            reporting_currency=data.get("reporting_currency") or DEFAULT_REPORTING_CURRENCY,
            fx_rates=rates,
        )


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


def iter_table_lines(rows: Iterable[DivergenceRow], *, locale: str = DEFAULT_LOCALE) -> Iterator[list[str]]:
    """Report rows as people read them: every amount with its own currency and decimals."""
    for row in rows:
        divergent = format_money(row.divergent_amount_minor, row.currency, locale=locale)
        if row.other_amounts:
            divergent += "".join(
                f" + {format_money(v, c, locale=locale)}" for c, v in sorted(row.other_amounts.items())
            )
        yield [
            row.kind.value,
            row.provider_reference,
            row.transaction_type,
            row.gateway_status or "-",
            row.statement_status or "-",
            format_money(row.gateway_amount_minor, row.currency, locale=locale),
            format_money(row.statement_amount_minor, row.statement_amount_currency, locale=locale),
            divergent,
            row.currency or "-",
        ]


def write_table(
    rows: Iterable[DivergenceRow], out: IO[str], *, batch: int = 500, locale: str = DEFAULT_LOCALE
) -> int:
    """A terminal table, printed in batches so memory stays flat on long reports."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=180, force_terminal=False)
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
    for line in iter_table_lines(rows, locale=locale):
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


def rates_text(summary: DivergenceSummary, *, locale: str | None = None) -> str:
    """The rates a summary's converted figures used, and the currencies left out, in words:
    ``1 EUR = 6,25 BRL (from 2026-12-04 16:00 UTC, BCB PTAX)``; in the language in force, or
    ``locale``'s when given."""
    from airflow_recon_provider.reconciliation.i18n import _
    from airflow_recon_provider.reconciliation.money import _words

    parts = [
        rate_text(r, summary.reporting_currency, locale=locale)
        for _code, r in sorted(summary.used_rates.items())
    ]
    if summary.unconverted_currencies:
        with _words(locale):
            parts.append(
                _("no rate (left out): %(currencies)s", currencies=", ".join(summary.unconverted_currencies))
            )
    return "; ".join(parts)


def summary_table(summary: DivergenceSummary, *, locale: str = DEFAULT_LOCALE) -> str:
    """A readable summary (demo, CLI, task logs): each currency's figures in that currency,
    then the per-kind figures converted to the reporting currency, with the rates used."""
    from rich.console import Console
    from rich.table import Table

    def money(amount: int | None, currency: str) -> str:
        return format_money(amount, currency, locale=locale)

    rc = summary.reporting_currency
    buf = io.StringIO()
    console = Console(file=buf, width=130, force_terminal=False, soft_wrap=True)
    console.print(f"PSP {summary.psp}  window {summary.window}")
    per_currency = Table(title="per currency (own minor units, never added across currencies)")
    for header in ("currency", "gateway rows", "gateway amount", "divergent keys", "divergent amount"):
        per_currency.add_column(header, justify="left" if header == "currency" else "right")
    for code in summary.currencies:
        fig = summary.by_currency[code]
        per_currency.add_row(
            code or "?",
            f"{fig.gateway_count:,}",
            money(fig.gateway_amount_minor, code),
            f"{fig.divergent_count:,}",
            money(fig.divergent_amount_minor, code),
        )
    console.print(per_currency)
    converted = len(summary.currencies) > 1 or summary.currencies not in ([], [rc])
    suffix = f" (converted to {rc})" if converted else ""
    pct = summary.divergence_pct
    console.print(
        f"gateway: {summary.gateway_count:,} rows, {money(summary.gateway_amount_minor, rc)}{suffix}  |  "
        f"divergent: {summary.divergent_count:,} keys, {money(summary.divergent_amount_minor, rc)}{suffix}"
        f" ({format_pct(pct, locale=locale)})"
    )
    if summary.used_rates or summary.unconverted_currencies:
        console.print(f"rates: {rates_text(summary, locale=locale)}")
    table = Table()
    table.add_column("divergence kind")
    table.add_column("keys", justify="right")
    table.add_column(f"divergent amount{suffix}", justify="right")
    by_kind = summary.by_kind
    for kind in ALL_KINDS:
        total = by_kind.get(kind, KindTotal())
        table.add_row(kind.value, f"{total.count:,}", money(total.amount_minor, rc))
    table.add_row(
        "total", f"{summary.divergent_count:,}", money(summary.divergent_amount_minor, rc), style="bold"
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
    totals: Iterable[tuple[str, int, int]],
    by_kind_rows: Iterable[tuple[str, str, int, int]],
    last_success_end: Any,
    reference: Any,
    thresholds: Thresholds,
    reporting_currency: str = DEFAULT_REPORTING_CURRENCY,
    fx_rates: Iterable[FxRate] = (),
) -> DivergenceSummary:
    """Build a summary from the results of the summary statements (sync or async I/O):
    rows ``(currency, count, amount)`` of :func:`queries.gateway_totals_query`, rows
    ``(currency, kind, count, amount)`` of :func:`queries.divergence_by_kind_query`, the
    value of :func:`queries.latest_success_query` at ``reference``, and the rates in force
    (``fx_queries.rates_in_force_query``)."""
    from airflow_recon_provider.reconciliation.window import cycles_between

    gateway: dict[str, tuple[int, int]] = {}
    for currency, count, amount in totals:
        code = currency or ""
        n, a = gateway.get(code, (0, 0))
        gateway[code] = (n + int(count), a + int(amount))
    kinds: dict[str, dict[DivergenceKind, KindTotal]] = {}
    for currency, kind, count, amount in by_kind_rows:
        kinds.setdefault(currency or "", {})[DivergenceKind(kind)] = KindTotal(int(count), int(amount))
    by_currency = {
        code: CurrencyFigures(code, *gateway.get(code, (0, 0)), kinds.get(code, {}))
        for code in sorted(set(gateway) | set(kinds))
    }
    return DivergenceSummary(
        psp=psp,
        window=window,
        by_currency=by_currency,
        lag_cycles=cycles_between(last_success_end, reference),
        thresholds=thresholds,
        reporting_currency=reporting_currency,
        fx_rates={rate.currency: rate for rate in fx_rates},
    )
