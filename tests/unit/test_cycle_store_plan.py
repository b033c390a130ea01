"""Planning of a read through the cycle store: which parts of a window come from clean
stored cycles and which are classified live (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow_recon_provider.reconciliation.cycle_store import (
    mapping_fingerprint,
    plan_params,
    plan_window,
)
from airflow_recon_provider.reconciliation.mapping import TableMapping
from airflow_recon_provider.reconciliation.window import Window

H = timedelta(hours=1)
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_aligned_window_all_clean_has_no_live_segment() -> None:
    plan = plan_window(Window(T0, T0 + 3 * H), [T0, T0 + H, T0 + 2 * H])
    assert plan.clean == (T0, T0 + H, T0 + 2 * H)
    assert plan.live == ()
    assert plan.usable


def test_dirty_missing_and_partial_cycles_are_live() -> None:
    window = Window(T0 + timedelta(minutes=20), T0 + 4 * H + timedelta(minutes=5))
    # 10:00 is only partly inside, 12:00 is missing (dirty), 14:00 partly inside
    plan = plan_window(window, [T0, T0 + H, T0 + 3 * H, T0 + 4 * H])
    assert plan.clean == (T0 + H, T0 + 3 * H)
    assert plan.live == (
        Window(window.start, T0 + H),
        Window(T0 + 2 * H, T0 + 3 * H),
        Window(T0 + 4 * H, window.end),
    )


def test_no_clean_cycle_means_the_store_is_not_used() -> None:
    plan = plan_window(Window(T0, T0 + 2 * H), [T0 - H, T0 + 2 * H])
    assert not plan.usable
    assert plan.live == (Window(T0, T0 + 2 * H),)


def test_plan_params_and_marks_cover_the_widened_window() -> None:
    window = Window(T0 + timedelta(minutes=30), T0 + 2 * H)
    params = plan_params(plan_window(window, [T0 + H]), window, timedelta(minutes=90))
    assert params["clean"] == [T0 + H]
    assert params["live_starts"] == [window.start]
    assert params["live_ends"] == [T0 + H]
    # the hour containing start - grace (10:30 - 1h30 = 09:00) is the first whose marks count
    assert params["mark_from"] == T0 - H
    shifted = Window(T0 + timedelta(minutes=20), T0 + 2 * H)
    assert plan_params(plan_window(shifted, []), shifted, timedelta(minutes=90))["mark_from"] == T0 - 2 * H


def test_fingerprint_changes_with_the_classification_tables_only() -> None:
    default = mapping_fingerprint(TableMapping())
    renamed = TableMapping.from_dict({"psp_statement_lines": {"table": "lines"}})
    ledger = TableMapping.from_dict({"ledger_transactions": {"table": "other.ledger"}})
    assert mapping_fingerprint(renamed) != default
    assert mapping_fingerprint(ledger) == default


def test_the_store_answers_only_when_most_of_the_window_is_stored() -> None:
    from airflow_recon_provider.reconciliation.cycle_store import MAX_LIVE_SHARE, worth_using

    window = Window(T0, T0 + 8 * H)
    all_clean = plan_window(window, [T0 + k * H for k in range(8)])
    assert worth_using(all_clean, window, touched_hours=0)
    assert worth_using(all_clean, window, touched_hours=int(8 * MAX_LIVE_SHARE))
    # hours changed since the oldest clean cycle was stored would be classified key by key
    assert not worth_using(all_clean, window, touched_hours=8)
    half = plan_window(window, [T0 + k * H for k in range(4)])
    assert not worth_using(half, window, touched_hours=0)
    assert not worth_using(plan_window(window, []), window, touched_hours=0)
