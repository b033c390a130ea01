"""A plain-Python statement of the divergence rules (DESIGN section 3).

It is the specification the SQL classification is tested against, and is only
suitable for small datasets: it holds every row in memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

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
        g_total = sum(r.amount_minor for r in gr) if gr else None
        s_total = sum(r.amount_minor for r in sr) if sr else None
        g_status = min(r.status for r in gr) if gr else None
        s_status = min(mapping.get(r.status, r.status) for r in sr) if sr else None
        g_cur = min(r.currency.upper() for r in gr) if gr else None
        s_cur = min(r.currency.upper() for r in sr) if sr else None
        kind: DivergenceKind | None
        if len(gr) > 1:
            kind, amount = DivergenceKind.DUPLICATE_IN_GATEWAY, g_total - gr[0].amount_minor
        elif len(sr) > 1:
            kind, amount = DivergenceKind.DUPLICATE_IN_STATEMENT, s_total - sr[0].amount_minor
        elif not sr:
            kind, amount = DivergenceKind.MISSING_IN_STATEMENT, g_total
        elif not gr:
            kind, amount = DivergenceKind.MISSING_IN_GATEWAY, s_total
        elif g_cur != s_cur:
            kind, amount = DivergenceKind.CURRENCY_MISMATCH, g_total
        elif g_total != s_total:
            kind, amount = DivergenceKind.AMOUNT_MISMATCH, abs(g_total - s_total)
        elif g_status != s_status:
            kind, amount = DivergenceKind.STATUS_MISMATCH, g_total
        else:
            kind = None
        if kind is None or kind not in kinds:
            continue
        out.append(
            DivergenceRow(
                kind=kind,
                provider_reference=key[0],
                transaction_type=key[1],
                gateway_status=g_status,
                statement_status=s_status,
                gateway_amount_minor=g_total,
                statement_amount_minor=s_total,
                divergent_amount_minor=amount,
                currency=g_cur if g_cur is not None else s_cur,
                gateway_count=len(gr),
                statement_count=len(sr),
                gateway_first_id=gr[0].id if gr else None,
            )
        )
    out.sort(key=lambda r: (r.kind.rank, r.provider_reference, r.transaction_type))
    return out
