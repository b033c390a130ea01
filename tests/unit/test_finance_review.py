"""Encerramento 4 — the review with finance: the slot after the closing moment, the policy's
configuration errors, and the iCalendar invitation parsed back with icalendar. Pure domain
code: no Airflow, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from airflow_recon_provider.reconciliation.config import ReconConfig
from airflow_recon_provider.reconciliation.errors import ConfigError
from airflow_recon_provider.reconciliation.finance_review import (
    REVIEW_STEP,
    FinanceReview,
    ReviewConfigError,
    ReviewInputError,
    ReviewPolicy,
    format_review_time,
    next_review_slot,
    review_uid,
    schedule_review,
    scheduled_review,
)

SP = ZoneInfo("America/Sao_Paulo")


def sp(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SP)


# -- the slot ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("closed", "expected"),
    [
        # Monday 2026-12-07 before 10:00: the same day's slot is still ahead
        (sp(2026, 12, 7, 9, 59), sp(2026, 12, 7, 10)),
        # exactly at the slot, or after it: never the same day, the next business day
        (sp(2026, 12, 7, 10, 0), sp(2026, 12, 8, 10)),
        (sp(2026, 12, 7, 15, 30), sp(2026, 12, 8, 10)),
        # Friday after the slot, Saturday, Sunday: Monday
        (sp(2026, 12, 4, 10, 1), sp(2026, 12, 7, 10)),
        (sp(2026, 12, 5, 8, 0), sp(2026, 12, 7, 10)),
        (sp(2026, 12, 6, 23, 59), sp(2026, 12, 7, 10)),
        # a closing in UTC late on Friday is still Friday evening in Sao Paulo
        (datetime(2026, 12, 5, 2, 0, tzinfo=UTC), sp(2026, 12, 7, 10)),
        # ... and 13:30 UTC on a Tuesday is 10:30 in Sao Paulo: Wednesday
        (datetime(2026, 12, 8, 13, 30, tzinfo=UTC), sp(2026, 12, 9, 10)),
    ],
)
def test_the_next_business_day_slot_after_the_closing_moment(closed, expected):
    slot = next_review_slot(closed)
    assert slot.start == expected and slot.start.tzinfo == SP
    assert slot.end - slot.start == timedelta(minutes=60)
    assert slot.timezone == "America/Sao_Paulo"


def test_sao_paulo_has_no_daylight_saving_time_any_more():
    # until 2019 Brazil moved its clocks in November and February; since then -03:00 all year
    for closed in (sp(2026, 1, 15, 18), sp(2026, 11, 3, 18), sp(2027, 2, 15, 18), sp(2026, 7, 1, 18)):
        slot = next_review_slot(closed)
        assert slot.start.utcoffset() == timedelta(hours=-3), closed
        assert slot.start.astimezone(UTC).time() == time(13, 0)


def test_holidays_are_skipped_like_weekends():
    policy = ReviewPolicy.from_dict({"holidays": ["2026-12-24", "2026-12-25", "2026-12-28"]})
    # Wednesday 23rd after the slot: 24 and 25 holidays, 26-27 weekend, 28 holiday -> 29th
    assert next_review_slot(sp(2026, 12, 23, 11), policy).start == sp(2026, 12, 29, 10)
    # a holiday before its slot is not the review day either
    assert next_review_slot(sp(2026, 12, 24, 7), policy).start == sp(2026, 12, 29, 10)


def test_time_zone_duration_and_time_come_from_the_policy():
    policy = ReviewPolicy.from_dict({"time": "14:30", "timezone": "Europe/Lisbon", "duration_minutes": 45})
    slot = next_review_slot(datetime(2026, 12, 7, 14, 0, tzinfo=UTC), policy)
    assert slot.start == datetime(2026, 12, 7, 14, 30, tzinfo=ZoneInfo("Europe/Lisbon"))
    assert slot.end - slot.start == timedelta(minutes=45)


def test_a_wall_time_skipped_by_a_dst_change_is_a_real_instant():
    # Cairo springs forward at 00:00 on Friday 2026-04-24 (a business day): 00:30 never exists
    cairo = ZoneInfo("Africa/Cairo")
    policy = ReviewPolicy.from_dict({"time": "00:30", "timezone": "Africa/Cairo"})
    slot = next_review_slot(datetime(2026, 4, 23, 12, tzinfo=UTC), policy)
    assert slot.start.astimezone(UTC) == datetime(2026, 4, 23, 22, 30, tzinfo=UTC)
    assert slot.start == datetime(2026, 4, 24, 1, 30, tzinfo=cairo)  # as the clock then reads
    assert slot.end.astimezone(UTC) - slot.start.astimezone(UTC) == timedelta(minutes=60)


def test_holidays_covering_a_whole_year_are_a_clear_error():
    start = date(2026, 12, 7)
    every_day = [(start + timedelta(days=n)).isoformat() for n in range(400)]
    policy = ReviewPolicy.from_dict({"holidays": every_day})
    with pytest.raises(ReviewConfigError, match=r"no business day .* finance_review.holidays"):
        next_review_slot(sp(2026, 12, 7, 11), policy)


def test_a_naive_closing_moment_is_refused():
    with pytest.raises(ReviewInputError, match="timezone-aware"):
        next_review_slot(datetime(2026, 12, 7, 11))


@settings(max_examples=300, deadline=None)
@given(
    closed=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
    ),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
)
def test_the_slot_is_the_first_business_day_slot_after_the_closing(closed, hour, minute):
    policy = ReviewPolicy(time=time(hour, minute), holidays=frozenset({date(2026, 12, 25), date(2027, 1, 1)}))
    slot = next_review_slot(closed, policy)
    local = slot.start.astimezone(SP)
    assert slot.start > closed
    assert local.time() == time(hour, minute) and local.weekday() < 5 and local.date() not in policy.holidays
    # no business-day slot between the closing and this one
    day = closed.astimezone(SP).date()
    while day < local.date():
        candidate = datetime.combine(day, time(hour, minute), tzinfo=SP)
        assert not (candidate > closed and day.weekday() < 5 and day not in policy.holidays), day
        day += timedelta(days=1)


# -- the configuration ------------------------------------------------------------------------


def test_defaults_and_configuration_through_recon_config():
    assert ReconConfig().finance_review == ReviewPolicy()
    assert ReviewPolicy() == ReviewPolicy(time(10, 0), "America/Sao_Paulo", timedelta(minutes=60))
    config = ReconConfig.from_dict(
        {"finance_review": {"time": "09:00", "duration_minutes": 30, "holidays": ["2026-12-25"]}}
    )
    assert config.finance_review.time == time(9, 0)
    assert config.finance_review.duration == timedelta(minutes=30)
    assert config.finance_review.holidays == frozenset({date(2026, 12, 25)})
    assert ReconConfig.from_dict({"finance_review": None}).finance_review == ReviewPolicy()


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("10:00", r"finance_review must be a JSON object"),
        ({"start": "10:00"}, r"unknown key\(s\) \['start'\] in finance_review"),
        ({"time": "25:00"}, r"finance_review.time '25:00' must be HH:MM"),
        ({"time": "10h"}, r"finance_review.time '10h' must be HH:MM"),
        ({"time": 10}, r"finance_review.time 10 must be HH:MM"),
        ({"timezone": "Mars/Olympus"}, r"'Mars/Olympus' is not an IANA time zone"),
        ({"timezone": "../etc/passwd"}, r"is not an IANA time zone"),
        ({"timezone": ""}, r"must be an IANA time zone name"),
        ({"timezone": -3}, r"must be an IANA time zone name"),
        ({"duration_minutes": 0}, r"duration_minutes must be a whole number of minutes from 1 to 1440"),
        ({"duration_minutes": 1441}, r"from 1 to 1440, got 1441"),
        ({"duration_minutes": "60"}, r"got '60'"),
        ({"duration_minutes": True}, r"got True"),
        ({"holidays": "2026-12-25"}, r"holidays must be a list of dates"),
        (
            {"holidays": ["2026-12-25", "25/12/2026"]},
            r"holidays item 2 \('25/12/2026'\) is not a date YYYY-MM-DD",
        ),
        ({"holidays": ["2026-02-30"]}, r"item 1 \('2026-02-30'\) is not a date"),
        ({"holidays": [20261225]}, r"item 1 \(20261225\) is not a date"),
    ],
)
def test_bad_configuration_is_a_clear_error(given, says):
    with pytest.raises(ReviewConfigError, match=says):
        ReviewPolicy.from_dict(given)
    # through RECON_CONFIG too, as a configuration error
    with pytest.raises(ConfigError, match=says):
        ReconConfig.from_dict({"finance_review": given})


# -- the review and its invitation ----------------------------------------------------------------


def review(**overrides) -> FinanceReview:
    arguments = {
        "incident_id": "INCIDENT-472",
        "psp": "stripe",
        "closed_at": datetime(2026, 12, 4, 18, 0, tzinfo=UTC),  # Friday 15:00 in Sao Paulo
        "organizer": "reconciliation@platform.io",
        "attendees": ["finance@platform.io", "oncall@platform.io", "Finance@platform.io"],
        "scheduled_at": datetime(2026, 12, 4, 18, 1, tzinfo=UTC),
        "report_link": "http://localhost:8080/recon/artifacts/17",
        **overrides,
    }
    return schedule_review(**arguments)


def test_the_invitation_parses_back_at_the_slot_with_its_time_zone():
    r = review()
    assert r.attendees == ("finance@platform.io", "oncall@platform.io")  # one invitation each
    assert r.when == "segunda-feira, 7 de dezembro de 2026, das 10:00 às 11:00 (America/Sao_Paulo)"
    assert r.outcome().startswith("revisão agendada para segunda-feira, 7 de dezembro de 2026")
    ics = r.to_ical()
    calendar = Calendar.from_ical(ics)
    assert calendar["METHOD"] == "REQUEST" and calendar["VERSION"] == "2.0"
    [event] = calendar.events
    assert event.start == sp(2026, 12, 7, 10) and event.end == sp(2026, 12, 7, 11)
    assert b"DTSTART;TZID=America/Sao_Paulo:20261207T100000" in ics
    assert b"DTEND;TZID=America/Sao_Paulo:20261207T110000" in ics
    assert [tz["TZID"] for tz in calendar.timezones] == ["America/Sao_Paulo"]
    assert str(event["UID"]) == "incident-472-revisao-financeiro@airflow-recon-provider"
    assert str(event["ORGANIZER"]) == "mailto:reconciliation@platform.io"
    attendees = event["ATTENDEE"]
    assert [str(a) for a in attendees] == ["mailto:finance@platform.io", "mailto:oncall@platform.io"]
    assert {a.params["ROLE"] for a in attendees} == {"REQ-PARTICIPANT"}
    assert {a.params["RSVP"] for a in attendees} == {"TRUE"}
    assert str(event["URL"]) == "http://localhost:8080/recon/artifacts/17"
    assert "http://localhost:8080/recon/artifacts/17" in str(event["DESCRIPTION"])
    assert "INCIDENT-472" in str(event["SUMMARY"])
    assert event["DTSTAMP"].dt == datetime(2026, 12, 4, 18, 1, tzinfo=UTC)


def test_the_same_review_is_the_same_event_byte_for_byte():
    r = review()
    again = FinanceReview.from_details("INCIDENT-472", r.as_details())
    assert again == r and again.to_ical() == r.to_ical()
    # another incident: another event
    assert review_uid("INCIDENT-473") != r.uid


class _Event:
    def __init__(self, step: str, details: dict) -> None:
        self.step = step
        self.details = details


def test_the_first_review_on_the_timeline_is_the_scheduled_one():
    first, later = review(), review(report_link=None, scheduled_at=datetime(2026, 12, 5, tzinfo=UTC))
    events = [
        _Event("incident.closing_report", {}),
        _Event(REVIEW_STEP, first.as_details()),
        _Event(REVIEW_STEP, later.as_details()),
    ]
    assert scheduled_review("INCIDENT-472", events) == first
    assert scheduled_review("INCIDENT-472", events[:1]) is None
    with pytest.raises(ReviewInputError, match="review recorded on INCIDENT-472 is unreadable"):
        scheduled_review("INCIDENT-472", [_Event(REVIEW_STEP, {"uid": "x", "start": "yesterday"})])


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"incident_id": "INC-1"}, r"incident id 'INC-1' is not like INCIDENT-472"),
        ({"organizer": "reconciliation"}, r"review organizer 'reconciliation' is not an e-mail address"),
        ({"attendees": ["finance@platform.io", "on call"]}, r"review attendee 'on call' is not an e-mail"),
        ({"attendees": []}, r"has nobody to invite"),
        ({"scheduled_at": datetime(2026, 12, 4, 18)}, r"scheduled_at must be a timezone-aware"),
        ({"report_link": "/tmp/report.md"}, r"'/tmp/report.md' is not an http\(s\) address"),
    ],
)
def test_bad_review_input_is_refused_by_name(overrides, says):
    with pytest.raises(ReviewInputError, match=says):
        review(**overrides)


def test_a_review_over_midnight_says_the_end_day():
    policy = ReviewPolicy.from_dict({"time": "23:30", "duration_minutes": 60})
    slot = next_review_slot(sp(2026, 12, 7, 12), policy)
    assert format_review_time(slot) == (
        "segunda-feira, 7 de dezembro de 2026, das 23:30 às 00:30 de 8 de dezembro (America/Sao_Paulo)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "relatório de encerramento: https://recon.example/recon/artifacts/12.",
            'relatório de encerramento: <a href="https://recon.example/recon/artifacts/12">'
            "https://recon.example/recon/artifacts/12</a>.",
        ),
        (
            "(see http://h/x?a=1&b=<2>), then",
            '(see <a href="http://h/x?a=1&amp;b=">http://h/x?a=1&amp;b=</a>&lt;2&gt;), then',
        ),
        ("no address <b>here</b>", "no address &lt;b&gt;here&lt;/b&gt;"),
        ("file:///etc/passwd stays text", "file:///etc/passwd stays text"),
    ],
)
def test_the_html_mail_turns_http_addresses_into_links_and_escapes_the_rest(text, expected):
    from airflow_recon_provider.reconciliation.incident_messages import _linked

    assert _linked(text) == expected
