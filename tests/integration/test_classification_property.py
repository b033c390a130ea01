"""The SQL classification equals the plain-Python statement of DESIGN sections 3 and 3a.

``reconciliation.reference`` is the specification; the set-based queries of
``reconciliation.queries`` run on a real PostgreSQL. Hypothesis draws small datasets
with few references (so duplicates and collisions are common), currencies of exponents
0, 2 and 3 in mixed case (so duplicates whose copies are in several currencies are common),
amounts up to 10**15 and around 2**53, timestamps on and around every boundary of the
window and of its widened range, random status mappings and random kind subsets. Compared:
the report's records column for column (key currency, amounts in it, ``statement_currency``,
``other_amounts``), the per-(currency, kind) figures and the per-currency gateway totals.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_recon_provider.reconciliation import (
    ALL_KINDS,
    DivergenceKind,
    DivergenceRow,
    TableMapping,
    Window,
)
from airflow_recon_provider.reconciliation.queries import (
    ClassificationParams,
    divergence_by_kind_query,
    divergence_report_query,
    gateway_totals_query,
    merge_by_kind,
    merge_report_parts,
    split_params,
)
from airflow_recon_provider.reconciliation.reference import (
    GatewayRow,
    StatementRow,
    classify,
    classify_records,
    summary_by_currency,
)
from airflow_recon_provider.reconciliation.report import summary_from_results
from airflow_recon_provider.reconciliation.thresholds import Thresholds

pytestmark = pytest.mark.integration

MAPPING = TableMapping()
REPORT_SQL = divergence_report_query(MAPPING)
BY_KIND_SQL = divergence_by_kind_query(MAPPING)
TOTALS_SQL = gateway_totals_query(MAPPING)
PART_REPORT_SQL = divergence_report_query(MAPPING, partitioned=True)
PART_BY_KIND_SQL = divergence_by_kind_query(MAPPING, partitioned=True)

PSPS = ("stripe", "adyen")
REFERENCES = ("r1", "r2", "R1", "r10", "pix_é")
TYPES = ("authorization", "capture", "settlement", "refund")
STATUSES = ("captured", "CAPTURED", "settled", "failed", "pending")
# exponents 2 (BRL, EUR, USD), 0 (JPY), 3 (BHD); case differs, the currency does not
CURRENCIES = ("BRL", "brl", "EUR", "usd", "JPY", "BHD")

AMOUNTS = st.one_of(
    st.integers(min_value=0, max_value=1_000),
    # tiny amounts of both signs: extra copies in one currency that cancel out across keys
    st.integers(min_value=-2, max_value=2),
    st.integers(min_value=-1_000, max_value=-1),
    st.integers(min_value=2**53 - 3, max_value=2**53 + 3),
    st.integers(min_value=0, max_value=10**15),
    st.sampled_from([0, 10**15, 2**53]),
)

BASE = datetime(2026, 11, 20, 10, tzinfo=UTC)


@st.composite
def windows(draw: st.DrawFn) -> tuple[Window, timedelta]:
    start = BASE + timedelta(minutes=draw(st.sampled_from([0, 30, -17])))
    span = timedelta(minutes=draw(st.sampled_from([60, 120, 45, 1])))
    grace = timedelta(minutes=draw(st.sampled_from([60, 60, 30, 0])))
    return Window(start, start + span), grace


def moments(window: Window, grace: timedelta) -> st.SearchStrategy[datetime]:
    """Second-precision instants over ``[start - 2h, end + 2h)``, boundaries often."""
    low = window.start - timedelta(hours=2)
    seconds = int((window.end + timedelta(hours=2) - low).total_seconds())
    second = timedelta(seconds=1)
    edges = []
    for edge in (window.start, window.end, window.start - grace, window.end + grace):
        edges += [edge - second, edge, edge + second]
    return st.one_of(
        st.sampled_from(edges),
        st.integers(min_value=0, max_value=seconds - 1).map(lambda s: low + timedelta(seconds=s)),
    )


@st.composite
def datasets(draw: st.DrawFn) -> dict:
    window, grace = draw(windows())
    psps = PSPS[: draw(st.integers(min_value=1, max_value=2))]
    refs = REFERENCES[: draw(st.integers(min_value=1, max_value=len(REFERENCES)))]
    when = moments(window, grace)

    n_gateway = draw(st.integers(min_value=0, max_value=25))
    # intents: (psp, reference); several intents may share a reference (they count as duplicates)
    intents = draw(
        st.lists(
            st.tuples(st.sampled_from(psps), st.sampled_from(refs)),
            min_size=1 if n_gateway else 0,
            max_size=8,
        )
    )
    # ids are not in insertion or time order, so "the copy with the smallest id" is tested
    gw_ids = draw(st.lists(st.integers(1, 10_000), min_size=n_gateway, max_size=n_gateway, unique=True))
    gateway = []
    for gid in gw_ids:
        intent_idx = draw(st.integers(min_value=0, max_value=len(intents) - 1))
        gateway.append(
            {
                "id": gid,
                "intent": intent_idx,
                "type": draw(st.sampled_from(TYPES)),
                "status": draw(st.sampled_from(STATUSES)),
                "amount": draw(AMOUNTS),
                "currency": draw(st.sampled_from(CURRENCIES)),
                "at": draw(when),
            }
        )

    n_lines = draw(st.integers(min_value=0, max_value=25))
    st_ids = draw(st.lists(st.integers(1, 10_000), min_size=n_lines, max_size=n_lines, unique=True))
    lines = [
        {
            "id": sid,
            "psp": draw(st.sampled_from(psps)),
            "ref": draw(st.sampled_from(refs)),
            "type": draw(st.sampled_from(TYPES)),
            "status": draw(st.sampled_from(STATUSES)),
            "amount": draw(AMOUNTS),
            "currency": draw(st.sampled_from(CURRENCIES)),
            "at": draw(when),
        }
        for sid in st_ids
    ]

    status_maps = {
        psp: draw(st.dictionaries(st.sampled_from(STATUSES), st.sampled_from(STATUSES), max_size=3))
        for psp in PSPS
    }
    # a subset in any order: the report order must not depend on how kinds were listed
    kinds = tuple(draw(st.lists(st.sampled_from(ALL_KINDS), min_size=1, max_size=7, unique=True)))
    return {
        "window": window,
        "grace": grace,
        "intents": intents,
        "gateway": gateway,
        "lines": lines,
        "status_maps": status_maps,
        "kinds": kinds,
    }


def _load(db, data: dict) -> None:
    with db.transaction():
        db.execute(
            "TRUNCATE payment_transactions, payment_intents, psp_statement_lines RESTART IDENTITY CASCADE"
        )
        with db.cursor() as cur:
            if data["intents"]:
                cur.executemany(
                    "INSERT INTO payment_intents (id, provider, provider_reference) VALUES (%s, %s, %s)",
                    [(idx + 1, psp, ref) for idx, (psp, ref) in enumerate(data["intents"])],
                )
            if data["gateway"]:
                cur.executemany(
                    "INSERT INTO payment_transactions (id, intent_id, transaction_type, status, amount_minor,"
                    " currency, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            g["id"],
                            g["intent"] + 1,
                            g["type"],
                            g["status"],
                            g["amount"],
                            g["currency"],
                            g["at"],
                        )
                        for g in data["gateway"]
                    ],
                )
            if data["lines"]:
                cur.executemany(
                    "INSERT INTO psp_statement_lines (id, psp, provider_reference, transaction_type, status,"
                    " amount_minor, currency, occurred_at, statement_id) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, 'stmt-1')",
                    [
                        (
                            s["id"],
                            s["psp"],
                            s["ref"],
                            s["type"],
                            s["status"],
                            s["amount"],
                            s["currency"],
                            s["at"],
                        )
                        for s in data["lines"]
                    ],
                )


def _reference_rows(data: dict) -> tuple[list[GatewayRow], list[StatementRow]]:
    gateway = [
        GatewayRow(
            id=g["id"],
            psp=data["intents"][g["intent"]][0],
            provider_reference=data["intents"][g["intent"]][1],
            transaction_type=g["type"],
            status=g["status"],
            amount_minor=g["amount"],
            currency=g["currency"],
            created_at=g["at"],
        )
        for g in data["gateway"]
    ]
    statements = [
        StatementRow(
            id=s["id"],
            psp=s["psp"],
            provider_reference=s["ref"],
            transaction_type=s["type"],
            status=s["status"],
            amount_minor=s["amount"],
            currency=s["currency"],
            occurred_at=s["at"],
        )
        for s in data["lines"]
    ]
    return gateway, statements


def _check(db, data: dict) -> None:
    window: Window = data["window"]
    gateway, statements = _reference_rows(data)
    for psp in PSPS:  # also the PSP that has no rows in a one-PSP example
        params = ClassificationParams(
            psp=psp,
            window=window,
            grace=data["grace"],
            status_mapping=data["status_maps"][psp],
            kinds=data["kinds"],
        ).as_params()
        rules = {"grace": data["grace"], "status_mapping": data["status_maps"][psp], "kinds": data["kinds"]}
        records = db.execute(REPORT_SQL, params).fetchall()
        # column for column, as the SQL returns them (NULLs included)
        assert records == classify_records(psp, window, gateway, statements, **rules)
        assert [DivergenceRow.from_db(r) for r in records] == classify(
            psp, window, gateway, statements, **rules
        )

        expected = summary_by_currency(psp, window, gateway, statements, **rules)
        by_kind_rows = db.execute(BY_KIND_SQL, params).fetchall()
        got_by_kind = {(c, DivergenceKind(k)): (n, amount) for c, k, n, amount in by_kind_rows}
        assert len(got_by_kind) == len(by_kind_rows)  # one row per (currency, kind)
        assert got_by_kind == {
            (c, k): figures for c, (_, _, kinds) in expected.items() for k, figures in kinds.items()
        }
        for _, _, n, amount in by_kind_rows:
            assert type(n) is int and type(amount) is int

        # a long window's live classification split by key hash over several connections
        # (hooks/_key_parts.py): the parts merged are the whole, row for row and in order
        for parts in (2, 3):
            part_params = [split_params(params, k, parts) for k in range(parts)]
            part_rows = [db.execute(PART_REPORT_SQL, p).fetchall() for p in part_params]
            assert list(merge_report_parts(part_rows, params["kinds"])) == records
            part_by_kind = [db.execute(PART_BY_KIND_SQL, p).fetchall() for p in part_params]
            assert sorted(merge_by_kind(part_by_kind)) == sorted(by_kind_rows)

        totals_rows = db.execute(TOTALS_SQL, params).fetchall()
        got_totals = {c: (n, amount) for c, n, amount in totals_rows}
        assert len(got_totals) == len(totals_rows)
        assert got_totals == {c: (n, a) for c, (n, a, _) in expected.items() if n}
        in_window = [g for g in gateway if g.psp == psp and window.contains(g.created_at)]
        assert sum(n for n, _ in got_totals.values()) == len(in_window)

        # and the summary built from those rows holds the same per-currency figures
        summary = summary_from_results(
            psp=psp,
            window=window,
            totals=totals_rows,
            by_kind_rows=by_kind_rows,
            last_success_end=None,
            reference=window.end,
            thresholds=Thresholds(),
        )
        assert {
            c: (
                f.gateway_count,
                f.gateway_amount_minor,
                {k: (t.count, t.amount_minor) for k, t in f.by_kind.items()},
            )
            for c, f in summary.by_currency.items()
        } == expected
        assert summary.divergent_count == len(records)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=datasets())
def test_sql_classification_equals_reference(db, data):
    _load(db, data)
    _check(db, data)


# -- hand-picked cases of DESIGN section 3, through the same comparison -------------------


def _dataset(**overrides) -> dict:
    window = Window(BASE, BASE + timedelta(hours=1))
    data = {
        "window": window,
        "grace": timedelta(hours=1),
        "intents": [("stripe", "r1")],
        "gateway": [],
        "lines": [],
        "status_maps": {"stripe": {}, "adyen": {}},
        "kinds": ALL_KINDS,
    }
    data.update(overrides)
    return data


def _gw(gid: int, at: datetime, *, intent: int = 0, amount: int = 1000, **kw) -> dict:
    return {
        "id": gid,
        "intent": intent,
        "type": "capture",
        "status": "captured",
        "amount": amount,
        "currency": "BRL",
        "at": at,
        **kw,
    }


def _line(sid: int, at: datetime, *, amount: int = 1000, **kw) -> dict:
    return {
        "id": sid,
        "psp": "stripe",
        "ref": "r1",
        "type": "capture",
        "status": "captured",
        "amount": amount,
        "currency": "BRL",
        "at": at,
        **kw,
    }


def _report(db, data: dict, psp: str = "stripe") -> list[DivergenceRow]:
    _load(db, data)
    _check(db, data)
    params = ClassificationParams(
        psp=psp,
        window=data["window"],
        grace=data["grace"],
        status_mapping=data["status_maps"][psp],
        kinds=data["kinds"],
    ).as_params()
    return [DivergenceRow.from_db(r) for r in db.execute(REPORT_SQL, params)]


def test_cross_boundary_match_within_grace_is_not_a_divergence(db):
    data = _dataset(
        gateway=[_gw(1, BASE + timedelta(minutes=59, seconds=59))],
        lines=[_line(1, BASE + timedelta(hours=1, seconds=1))],
    )
    assert _report(db, data) == []


def test_rows_beyond_the_widened_range_are_never_looked_at(db):
    # the statement line sits exactly at end + grace (excluded): the gateway row is missing
    data = _dataset(
        gateway=[_gw(1, BASE + timedelta(minutes=30))],
        lines=[_line(1, BASE + timedelta(hours=2))],
    )
    rows = _report(db, data)
    assert [(r.kind, r.divergent_amount_minor, r.statement_count) for r in rows] == [
        (DivergenceKind.MISSING_IN_STATEMENT, 1000, 0)
    ]


def test_key_only_outside_the_window_is_not_in_scope(db):
    # a gateway row in the grace range and no row in [start, end): not reported
    data = _dataset(gateway=[_gw(1, BASE - timedelta(minutes=1))])
    assert _report(db, data) == []


def test_duplicate_amount_excludes_the_copy_with_smallest_id(db):
    data = _dataset(
        intents=[("stripe", "r1"), ("stripe", "r1")],
        gateway=[
            _gw(7, BASE + timedelta(minutes=5), intent=1, amount=2**53 + 1),
            _gw(3, BASE + timedelta(minutes=50), intent=0, amount=10**15),
        ],
        lines=[_line(1, BASE + timedelta(minutes=5), amount=10**15)],
    )
    (row,) = _report(db, data)
    assert row.kind is DivergenceKind.DUPLICATE_IN_GATEWAY
    assert row.divergent_amount_minor == 2**53 + 1
    assert row.gateway_amount_minor == 10**15 + 2**53 + 1
    assert (row.gateway_count, row.statement_count, row.gateway_first_id) == (2, 1, 3)


def test_currency_case_and_status_mapping(db):
    data = _dataset(
        gateway=[_gw(1, BASE, currency="brl", status="captured")],
        lines=[_line(1, BASE, currency="BRL", status="CAPTURED")],
        status_maps={"stripe": {"CAPTURED": "captured"}, "adyen": {}},
    )
    assert _report(db, data) == []
    unmapped = dict(data, status_maps={"stripe": {}, "adyen": {}})
    (row,) = _report(db, unmapped)
    assert row.kind is DivergenceKind.STATUS_MISMATCH and row.divergent_amount_minor == 1000


def test_kind_order_does_not_depend_on_the_order_kinds_are_listed(db):
    data = _dataset(
        intents=[("stripe", "r1"), ("stripe", "r2")],
        gateway=[_gw(1, BASE, intent=0), _gw(2, BASE, intent=1, status="failed")],
        lines=[_line(1, BASE, ref="r2"), _line(2, BASE, ref="r9", type="refund")],
        kinds=(DivergenceKind.STATUS_MISMATCH, DivergenceKind.MISSING_IN_STATEMENT),
    )
    rows = _report(db, data)
    assert [(r.kind, r.provider_reference) for r in rows] == [
        (DivergenceKind.MISSING_IN_STATEMENT, "r1"),
        (DivergenceKind.STATUS_MISMATCH, "r2"),
    ]


# -- DESIGN 3a: each amount in its own currency ----------------------------------------


def _by_kind(db, data: dict, psp: str = "stripe") -> dict[tuple[str, str], tuple[int, int]]:
    params = ClassificationParams(
        psp=psp,
        window=data["window"],
        grace=data["grace"],
        status_mapping=data["status_maps"][psp],
        kinds=data["kinds"],
    ).as_params()
    return {(c, k): (n, a) for c, k, n, a in db.execute(BY_KIND_SQL, params)}


def test_duplicate_copies_count_in_their_own_currencies(db):
    # the first copy (smallest id, not the earliest) is in EUR: the key's currency
    data = _dataset(
        intents=[("stripe", "r1")] * 4,
        gateway=[
            _gw(12, BASE + timedelta(minutes=1), intent=0, amount=700, currency="brl"),
            _gw(5, BASE + timedelta(minutes=9), intent=1, amount=1000, currency="EUR"),
            _gw(8, BASE + timedelta(minutes=3), intent=2, amount=300, currency="BRL"),
            _gw(9, BASE + timedelta(minutes=4), intent=3, amount=250, currency="eur"),
        ],
        lines=[_line(1, BASE + timedelta(minutes=5), currency="EUR")],
    )
    (row,) = _report(db, data)
    assert (row.kind, row.currency, row.gateway_first_id) == (DivergenceKind.DUPLICATE_IN_GATEWAY, "EUR", 5)
    assert row.gateway_amount_minor == 1250  # the gateway's EUR rows: never EUR + BRL
    assert row.divergent_amount_minor == 250 and row.other_amounts == {"BRL": 1000}
    assert (row.statement_amount_minor, row.statement_currency) == (1000, "EUR")
    assert _by_kind(db, data) == {
        ("EUR", "duplicate_in_gateway"): (1, 250),
        ("BRL", "duplicate_in_gateway"): (0, 1000),
    }


def test_statement_duplicate_in_other_currencies_than_the_gateway_row(db):
    data = _dataset(
        gateway=[_gw(1, BASE, amount=500, currency="JPY")],
        lines=[
            _line(4, BASE + timedelta(minutes=1), amount=1234, currency="BHD"),
            _line(6, BASE + timedelta(minutes=2), amount=1000, currency="bhd"),
            _line(7, BASE + timedelta(minutes=3), amount=55, currency="BRL"),
        ],
    )
    (row,) = _report(db, data)
    assert (row.kind, row.currency) == (DivergenceKind.DUPLICATE_IN_STATEMENT, "JPY")
    # no extra copy in yen; the BHD line with the smallest id is the first copy
    assert row.divergent_amount_minor == 0 and row.other_amounts == {"BHD": 1000, "BRL": 55}
    assert row.gateway_amount_minor == 500
    assert row.statement_amount_minor == 0  # the statement's lines in yen: none
    assert _by_kind(db, data) == {
        ("JPY", "duplicate_in_statement"): (1, 0),
        ("BHD", "duplicate_in_statement"): (0, 1000),
        ("BRL", "duplicate_in_statement"): (0, 55),
    }
    # all the statement's copies in one other currency: its total, in that currency
    one = dict(data, lines=[dict(line, currency="BHD") for line in data["lines"]])
    (row,) = _report(db, one)
    assert (row.statement_amount_minor, row.statement_currency) == (2289, "BHD")
    assert row.divergent_amount_minor == 0 and row.other_amounts == {"BHD": 1055}
    records = db.execute(
        REPORT_SQL, ClassificationParams("stripe", one["window"], one["grace"], {}).as_params()
    ).fetchall()
    assert records[0][-2:] == ("BHD", {"BHD": 1055})


def test_key_without_gateway_row_takes_its_first_statement_lines_currency(db):
    data = _dataset(
        intents=[],
        lines=[
            _line(3, BASE + timedelta(minutes=1), amount=70, currency="usd"),
            _line(2, BASE + timedelta(minutes=2), amount=9, currency="JPY"),
        ],
    )
    (row,) = _report(db, data)
    assert (row.kind, row.currency, row.divergent_amount_minor) == (
        DivergenceKind.DUPLICATE_IN_STATEMENT,
        "JPY",
        0,
    )
    assert row.other_amounts == {"USD": 70} and row.gateway_amount_minor is None
    records = db.execute(
        REPORT_SQL, ClassificationParams("stripe", data["window"], data["grace"], {}).as_params()
    ).fetchall()
    assert records[0][-2:] == (None, {"USD": 70})  # several currencies: no single statement currency


def test_extra_copies_that_cancel_out_leave_no_figure(db):
    # two keys each with an extra EUR copy, +5 and -5: no EUR figure (as in the cycle store)
    data = _dataset(
        intents=[("stripe", "r1"), ("stripe", "r1"), ("stripe", "r2"), ("stripe", "r2")],
        gateway=[
            _gw(1, BASE, intent=0, amount=100),
            _gw(2, BASE, intent=1, amount=5, currency="EUR"),
            _gw(3, BASE, intent=2, amount=100),
            _gw(4, BASE, intent=3, amount=-5, currency="eur"),
        ],
    )
    assert [(r.provider_reference, r.other_amounts) for r in _report(db, data)] == [
        ("r1", {"EUR": 5}),
        ("r2", {"EUR": -5}),
    ]
    assert _by_kind(db, data) == {("BRL", "duplicate_in_gateway"): (2, 0)}
