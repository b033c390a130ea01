"""Window, Cycle and cycles_between: half-open UTC windows and the hourly cycles."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from airflow_recon_provider.reconciliation import Cycle, Window, WindowError, cycles_between, parse_timestamp


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T10:00:00Z", utc(2026, 11, 20, 10)),
        ("2026-11-20T10:00:00z", utc(2026, 11, 20, 10)),
        ("2026-11-20T10:00:00+00:00", utc(2026, 11, 20, 10)),
        ("2026-11-20T07:00:00-03:00", utc(2026, 11, 20, 10)),
        ("2026-11-20T22:30:00-03:00", utc(2026, 11, 21, 1, 30)),
        ("2026-11-20T15:30:00+05:30", utc(2026, 11, 20, 10)),
        ("  2026-11-20T10:00:00Z  ", utc(2026, 11, 20, 10)),
    ],
)
def test_parse_timestamp_converts_offsets_to_utc(text, expected):
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.tzinfo is UTC


def test_window_parse_converts_both_bounds_to_utc():
    w = Window.parse("2026-11-20T07:00:00-03:00", "2026-11-20T08:00:00-03:00")
    assert w.start == utc(2026, 11, 20, 10) and w.end == utc(2026, 11, 20, 11)
    assert w.start.tzinfo is UTC and w.end.tzinfo is UTC
    assert w.as_dict() == {
        "window_start": "2026-11-20T10:00:00+00:00",
        "window_end": "2026-11-20T11:00:00+00:00",
    }


def test_window_constructor_converts_aware_datetimes_to_utc():
    minus3 = timezone(timedelta(hours=-3))
    w = Window(datetime(2026, 11, 20, 7, tzinfo=minus3), datetime(2026, 11, 20, 9, tzinfo=minus3))
    assert (w.start, w.end) == (utc(2026, 11, 20, 10), utc(2026, 11, 20, 12))
    assert w.start.tzinfo is UTC
    assert w == Window(utc(2026, 11, 20, 10), utc(2026, 11, 20, 12))


@pytest.mark.parametrize(
    "bad",
    ["2026-11-20T10:00:00", "2026-11-20", "2026-11-20 10:00"],
)
def test_naive_strings_are_refused(bad):
    with pytest.raises(WindowError, match="no timezone"):
        Window.parse(bad, "2026-11-20T12:00:00Z")
    with pytest.raises(WindowError, match="no timezone"):
        Window.parse("2026-11-20T09:00:00Z", bad)


def test_naive_datetimes_are_refused():
    with pytest.raises(WindowError, match="no timezone"):
        Window(datetime(2026, 11, 20, 10), utc(2026, 11, 20, 11))
    with pytest.raises(WindowError, match="no timezone"):
        Window(utc(2026, 11, 20, 10), datetime(2026, 11, 20, 11))
    with pytest.raises(WindowError, match="no timezone"):
        parse_timestamp(datetime(2026, 11, 20, 10))


@pytest.mark.parametrize(
    "bad",
    ["yesterday", "", "2026-13-01T00:00:00Z", "2026-11-20T25:00:00Z", "20/11/2026 10:00", "10:00Z", "now"],
)
def test_malformed_strings_are_refused_with_the_value(bad):
    with pytest.raises(WindowError) as info:
        Window.parse(bad, "2026-11-20T12:00:00Z")
    assert repr(bad) in str(info.value) or bad in str(info.value)
    assert "window start" in str(info.value)


def test_non_datetime_bounds_are_refused():
    with pytest.raises(WindowError, match="must be a datetime"):
        Window("2026-11-20T10:00:00Z", utc(2026, 11, 20, 11))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z"),
        ("2026-11-20T11:00:00Z", "2026-11-20T10:00:00Z"),
        # same instant written with two offsets: still empty
        ("2026-11-20T10:00:00Z", "2026-11-20T07:00:00-03:00"),
        # end is later on the clock but earlier in UTC
        ("2026-11-20T10:00:00Z", "2026-11-20T08:00:00-01:00"),
    ],
)
def test_end_must_be_after_start(start, end):
    with pytest.raises(WindowError, match="must be after its start"):
        Window.parse(start, end)


def test_span_limit():
    assert Window.parse("2026-11-01T00:00:00Z", "2026-12-02T00:00:00Z").span == timedelta(days=31)
    with pytest.raises(WindowError, match="larger than the maximum of 31 days"):
        Window.parse("2026-11-01T00:00:00Z", "2026-12-02T00:00:01Z")
    with pytest.raises(WindowError, match="larger than the maximum of 2 hours"):
        Window.parse("2026-11-20T10:00:00Z", "2026-11-20T12:00:01Z", max_span=timedelta(hours=2))
    long = Window.parse("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", max_span=None)
    assert long.span == timedelta(days=365)


def test_half_open_contains():
    w = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    assert w.contains(utc(2026, 11, 20, 10))
    assert w.contains(utc(2026, 11, 20, 10, 59, 59, 999999))
    assert not w.contains(utc(2026, 11, 20, 11))
    assert not w.contains(utc(2026, 11, 20, 9, 59, 59))
    assert w.contains(datetime(2026, 11, 20, 7, 30, tzinfo=timezone(timedelta(hours=-3))))


def test_widened():
    w = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    wide = w.widened(timedelta(hours=1))
    assert (wide.start, wide.end) == (utc(2026, 11, 20, 9), utc(2026, 11, 20, 12))
    assert w.widened(timedelta(0)) == w


# -- cycles --------------------------------------------------------------------------


def test_cycles_of_aligned_window():
    w = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T13:00:00Z")
    assert [c.start for c in w.cycles()] == [utc(2026, 11, 20, h) for h in (10, 11, 12)]
    assert [str(c) for c in w.cycles()] == ["2026-11-20T10:00Z", "2026-11-20T11:00Z", "2026-11-20T12:00Z"]
    assert all(c.end - c.start == timedelta(hours=1) for c in w.cycles())


def test_cycles_of_unaligned_window_cover_both_edges():
    w = Window.parse("2026-11-20T10:30:00Z", "2026-11-20T12:15:00Z")
    assert [c.start for c in w.cycles()] == [utc(2026, 11, 20, h) for h in (10, 11, 12)]


def test_cycles_end_exclusive_at_hour():
    w = Window.parse("2026-11-20T10:59:59Z", "2026-11-20T12:00:00Z")
    assert [c.start for c in w.cycles()] == [utc(2026, 11, 20, 10), utc(2026, 11, 20, 11)]


def test_cycles_within_one_hour():
    w = Window.parse("2026-11-20T10:10:00Z", "2026-11-20T10:20:00Z")
    assert w.cycles() == [Cycle(utc(2026, 11, 20, 10))]


def test_cycles_across_midnight_with_offset():
    w = Window.parse("2026-11-20T20:30:00-03:00", "2026-11-20T22:00:00-03:00")
    assert [c.start for c in w.cycles()] == [utc(2026, 11, 20, 23), utc(2026, 11, 21, 0)]


def test_cycle_rules():
    c = Cycle.containing(utc(2026, 11, 20, 10, 42, 7))
    assert c.start == utc(2026, 11, 20, 10)
    assert c.window == Window(utc(2026, 11, 20, 10), utc(2026, 11, 20, 11))
    with pytest.raises(WindowError, match="not on the hour"):
        Cycle(utc(2026, 11, 20, 10, 30))
    with pytest.raises(WindowError, match="no timezone"):
        Cycle(datetime(2026, 11, 20, 10))
    # an hour in another offset is still a cycle, stored in UTC
    assert Cycle(datetime(2026, 11, 20, 7, tzinfo=timezone(timedelta(hours=-3)))).start == utc(
        2026, 11, 20, 10
    )
    # +05:30 puts the local hour on a half hour of UTC
    with pytest.raises(WindowError, match="not on the hour"):
        Cycle(datetime(2026, 11, 20, 10, tzinfo=timezone(timedelta(hours=5, minutes=30))))


# -- lag -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_end", "reference", "expected"),
    [
        (None, utc(2026, 11, 20, 10), None),
        (utc(2026, 11, 20, 10), utc(2026, 11, 20, 10), 0),
        (utc(2026, 11, 20, 11), utc(2026, 11, 20, 10), 0),
        (utc(2026, 11, 20, 10), utc(2026, 11, 20, 10, 59, 59), 0),
        (utc(2026, 11, 20, 10), utc(2026, 11, 20, 11), 1),
        (utc(2026, 11, 20, 7), utc(2026, 11, 20, 10), 3),
        (utc(2026, 11, 20, 7), utc(2026, 11, 20, 9, 59, 59), 2),
        (utc(2026, 11, 19, 10), utc(2026, 11, 20, 10), 24),
    ],
)
def test_cycles_between(last_end, reference, expected):
    result = cycles_between(last_end, reference)
    assert result == expected
    if expected is not None:
        assert type(result) is int


# -- windows typed by people: resolve_form_window, window_in_both_zones --------------------------


def test_a_form_window_from_a_start_and_a_duration():
    from airflow_recon_provider.reconciliation.window import resolve_form_window, window_in_both_zones

    window = resolve_form_window("2026-12-06T19:00-03:00", "", 3)
    assert (window.start, window.end) == (
        datetime(2026, 12, 6, 22, tzinfo=UTC),
        datetime(2026, 12, 7, 1, tzinfo=UTC),
    )
    assert resolve_form_window("2026-12-06T22:00Z", "2026-12-07T01:00:00+00:00", "3") == window
    assert window_in_both_zones(window) == (
        "2026-12-06 22:00 a 2026-12-07 01:00 UTC (19:00 a 22:00 de 06/12/2026 em America/Sao_Paulo, 3 h)"
    )


@pytest.mark.parametrize(
    ("start", "end", "hours", "says"),
    [
        ("", "2026-12-07T01:00Z", None, "informe o início da janela"),
        ("2026-12-06T22:00", "2026-12-07T01:00Z", None, "não está no formato AAAA-MM-DDTHH:MMZ"),
        ("2026-12-06T22:00Z", "", None, "informe o fim da janela ou a duração em horas"),
        ("2026-12-07T01:00Z", "2026-12-06T22:00Z", None, "é anterior ou igual ao início"),
        ("2026-12-06T22:00Z", "2027-03-06T22:00Z", None, "passa do máximo de 744 h (31 dias)"),
        ("2026-12-06T22:00Z", None, 745, "passa do máximo de 744 h"),
        ("2026-12-06T22:00Z", None, 0, "pelo menos 1 hora"),
        ("2026-12-06T22:00Z", None, "três", "não é um número inteiro de horas"),
        ("2026-12-06T22:00Z", "2026-12-07T01:00Z", 4, "não corresponde à duração de 4 h"),
        ("2026-02-30T22:00Z", "2026-12-07T01:00Z", None, "não é uma data e hora válida"),
    ],
)
def test_a_bad_form_window_is_refused_in_words(start, end, hours, says):
    from airflow_recon_provider.reconciliation.window import resolve_form_window

    with pytest.raises(WindowError, match=re.escape(says)):
        resolve_form_window(start, end, hours)
