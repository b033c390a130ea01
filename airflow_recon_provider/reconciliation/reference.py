"""A plain-Python statement of the divergence rules (DESIGN sections 3 and 3a).

It is the specification the SQL classification is tested against, and is only
suitable for small datasets: it holds every row in memory.

Currency (DESIGN 3a): a divergent key's currency is that of its gateway row with the
smallest id, else of its statement line with the smallest id. A report row's amounts are
in the key's currency: a side whose rows are all in one currency reports its total (in that
currency: the statement side of a currency mismatch is in the statement's currency, named
by ``statement_currency``); a side holding several currencies reports its rows in the key's
currency only (0 when it has none). The divergent amount of a duplicate is the sum of the
duplicated side's copies other than its first (smallest id) one, per currency: the key's
currency part is ``divergent_amount_minor``, the other currencies' non-zero parts are
``other_amounts``, counted in their own currency (never added to the key's).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind
from airflow_recon_provider.reconciliation.report import DivergenceRow
from airflow_recon_provider.reconciliation.window import Window


@dataclass(frozen=True)
class GatewayRow:
    id: int
    psp: str
    provider_reference: str
    transaction_type: str
    status: str
    amount_minor: int
    currency: str
    created_at: datetime


@dataclass(frozen=True)
class StatementRow:
    id: int
    psp: str
    provider_reference: str
    transaction_type: str
    status: str
    amount_minor: int
    currency: str
    occurred_at: datetime


def _by_currency(rows: Sequence[GatewayRow | StatementRow]) -> dict[str, int]:
    """Sum of the rows' amounts per upper-case currency."""
    out: dict[str, int] = defaultdict(int)
    for row in rows:
        out[row.currency.upper()] += row.amount_minor
    return dict(out)


def _side_amount(rows: Sequence[GatewayRow | StatementRow], key_currency: str) -> int | None:
    """A side's amount in a report row: its total when all its rows share one currency (in
    that currency), else its rows in the key's currency; ``None`` when the side has no row."""
    if not rows:
        return None
    totals = _by_currency(rows)
    if len(totals) == 1:
        return next(iter(totals.values()))
    return totals.get(key_currency, 0)


def classify_records(
    psp: str,
    window: Window,
    gateway: Iterable[GatewayRow],
    statements: Iterable[StatementRow],
    *,
    grace: timedelta = timedelta(hours=1),
    status_mapping: Mapping[str, str] | None = None,
    kinds: tuple[DivergenceKind, ...] = ALL_KINDS,
) -> list[tuple[Any, ...]]:
    """The report's records exactly as the SQL returns them (``queries.REPORT_COLUMNS``):
    ``statement_currency`` is the statement side's currency when all its lines share one,
    else ``None``; ``other_amounts`` is ``None`` when there is none."""
    mapping = dict(status_mapping or {})
    wide = window.widened(grace)
    g: dict[tuple[str, str], list[GatewayRow]] = defaultdict(list)
    s: dict[tuple[str, str], list[StatementRow]] = defaultdict(list)
    in_scope: set[tuple[str, str]] = set()
    for row in gateway:
        if row.psp == psp and wide.contains(row.created_at):
            key = (row.provider_reference, row.transaction_type)
            g[key].append(row)
            if window.contains(row.created_at):
                in_scope.add(key)
    for line in statements:
        if line.psp == psp and wide.contains(line.occurred_at):
            key = (line.provider_reference, line.transaction_type)
            s[key].append(line)
            if window.contains(line.occurred_at):
                in_scope.add(key)

    out = []
    for key in in_scope:
        gr = sorted(g.get(key, []), key=lambda r: r.id)
        sr = sorted(s.get(key, []), key=lambda r: r.id)
        g_status = min(r.status for r in gr) if gr else None
        s_status = min(mapping.get(r.status, r.status) for r in sr) if sr else None
        g_currencies = {r.currency.upper() for r in gr}
        s_currencies = {r.currency.upper() for r in sr}
        # the key's currency: its gateway row with the smallest id, else its statement line's
        key_currency = (gr or sr)[0].currency.upper()
        duplicated: Sequence[GatewayRow | StatementRow] = ()
        kind: DivergenceKind | None
        if len(gr) > 1:
            kind, duplicated = DivergenceKind.DUPLICATE_IN_GATEWAY, gr
        elif len(sr) > 1:
            kind, duplicated = DivergenceKind.DUPLICATE_IN_STATEMENT, sr
        elif not sr:
            kind, amount = DivergenceKind.MISSING_IN_STATEMENT, gr[0].amount_minor
        elif not gr:
            kind, amount = DivergenceKind.MISSING_IN_GATEWAY, sr[0].amount_minor
        elif g_currencies != s_currencies:
            kind, amount = DivergenceKind.CURRENCY_MISMATCH, gr[0].amount_minor
        elif gr[0].amount_minor != sr[0].amount_minor:
            kind, amount = DivergenceKind.AMOUNT_MISMATCH, abs(gr[0].amount_minor - sr[0].amount_minor)
        elif g_status != s_status:
            kind, amount = DivergenceKind.STATUS_MISMATCH, gr[0].amount_minor
        else:
            kind = None
        if kind is None or kind not in kinds:
            continue
        other: dict[str, int] | None = None
        if duplicated:
            # every copy but the first counts, each in its own currency
            extra = _by_currency(duplicated[1:])
            amount = extra.get(key_currency, 0)
            other = {c: v for c, v in sorted(extra.items()) if c != key_currency and v != 0} or None
        out.append(
            (
                kind.value,
                key[0],
                key[1],
                g_status,
                s_status,
                _side_amount(gr, key_currency),
                _side_amount(sr, key_currency),
                amount,
                key_currency,
                len(gr) or None,
                len(sr) or None,
                gr[0].id if gr else None,
                next(iter(s_currencies)) if len(s_currencies) == 1 else None,
                other,
            )
        )
    rank = {k.value: k.rank for k in ALL_KINDS}
    out.sort(key=lambda r: (rank[r[0]], r[1], r[2]))
    return out


def classify(
    psp: str,
    window: Window,
    gateway: Iterable[GatewayRow],
    statements: Iterable[StatementRow],
    *,
    grace: timedelta = timedelta(hours=1),
    status_mapping: Mapping[str, str] | None = None,
    kinds: tuple[DivergenceKind, ...] = ALL_KINDS,
) -> list[DivergenceRow]:
    """The divergence report of ``psp`` and ``window``: one row per divergent key, ordered
    by kind then key (:func:`classify_records` read as :class:`DivergenceRow`)."""
    records = classify_records(
        psp, window, gateway, statements, grace=grace, status_mapping=status_mapping, kinds=kinds
    )
    return [DivergenceRow.from_db(r) for r in records]


#: per currency: gateway row count and amount, and per kind (divergent key count, amount)
CurrencySummary = tuple[int, int, dict[DivergenceKind, tuple[int, int]]]


def summary_by_currency(
    psp: str,
    window: Window,
    gateway: Iterable[GatewayRow],
    statements: Iterable[StatementRow],
    *,
    grace: timedelta = timedelta(hours=1),
    status_mapping: Mapping[str, str] | None = None,
    kinds: tuple[DivergenceKind, ...] = ALL_KINDS,
) -> dict[str, CurrencySummary]:
    """The summary figures of DESIGN 3a per currency, each in its own minor units:
    ``{currency: (gateway_count, gateway_amount_minor, {kind: (count, amount)})}``.

    Gateway figures: every gateway row of the PSP created in the window, by its currency.
    A divergent key counts once, in its key's currency, with its ``divergent_amount_minor``;
    an extra copy of a duplicate in another currency adds its amount to that currency
    (count 0). A ``(currency, kind)`` whose count and amount are both 0 is left out, and so
    is a currency with nothing left."""
    gateway = list(gateway)
    figures: dict[str, list[Any]] = {}

    def of(currency: str) -> list[Any]:
        return figures.setdefault(currency, [0, 0, {}])

    for row in gateway:
        if row.psp == psp and window.contains(row.created_at):
            fig = of(row.currency.upper())
            fig[0] += 1
            fig[1] += row.amount_minor
    parts: dict[tuple[str, DivergenceKind], tuple[int, int]] = defaultdict(lambda: (0, 0))
    report = classify(
        psp, window, gateway, statements, grace=grace, status_mapping=status_mapping, kinds=kinds
    )
    for r in report:
        n, a = parts[(r.currency, r.kind)]
        parts[(r.currency, r.kind)] = (n + 1, a + r.divergent_amount_minor)
        for currency, amount in r.other_amounts.items():
            n, a = parts[(currency, r.kind)]
            parts[(currency, r.kind)] = (n, a + amount)
    for (currency, kind), (n, a) in parts.items():
        if n or a:
            of(currency)[2][kind] = (n, a)
    return {c: (n, a, by_kind) for c, (n, a, by_kind) in sorted(figures.items())}
