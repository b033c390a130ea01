"""ReconciliationEventsHook against librdkafka's mock Kafka cluster, reached over TCP.

Runbook, Investigação 3: "Verificar tópicos Kafka (reconciliation.events) para mensagens
com erro". Real messages with explicit timestamps are produced to a 3-broker mock cluster
(tests/kafka_mock.py); the hook reads them through an Airflow connection like any other.

The mock answers -1 to every lookup of offsets by time, so the hook checks the last
message of each partition and, finding it inside or after the window, reads the partition
from its first offset: the messages before the window are read and counted in
``outside_window``. A real broker starts at the window, and those counts are smaller.
"""

from __future__ import annotations

import json
from datetime import timedelta

import kafka_mock
import pytest
from kafka_mock import MockKafkaCluster, Record

from airflow_recon_provider.hooks.reconciliation_events import ReconciliationEventsHook
from airflow_recon_provider.reconciliation.errors import ConfigError, ConnectionMissingError, UnknownPspError
from airflow_recon_provider.reconciliation.events import (
    OFFSET_END,
    UNSPECIFIED_ERROR,
    EventsInspection,
    EventsTally,
    EventsTopicError,
    KafkaUnavailableError,
    MalformedEventError,
    parse_event,
    start_offset,
    to_millis,
)
from airflow_recon_provider.reconciliation.window import Window

kafka_cluster = kafka_mock.kafka_cluster

pytestmark = pytest.mark.timeout(120)

WINDOW = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
START = to_millis(WINDOW.start)
END = to_millis(WINDOW.end)
MINUTE = 60_000
MAIN_GROUP = "billing-gateway-reconciliation-worker"
LONG_GARBAGE = "<html>" + "x" * 1000


def event(psp: str, status: str, error_type: str | None = None, *, tx: int | None = None, **over) -> dict:
    return {
        "psp": psp,
        "cycle_start": "2026-11-20T10:00:00Z",
        "event": "reconciliation.failed" if status == "error" else "reconciliation.completed",
        "status": status,
        "error_type": error_type,
        "message": f"{psp} {status} {error_type or ''}".strip(),
        "transaction_id": tx,
        **over,
    }


def records() -> list[Record]:
    """Three partitions of the topic (the mock's fourth stays empty)."""
    p0 = [
        Record(0, START - MINUTE, event("stripe", "error", "psp_timeout")),  # before the window
        Record(0, START - 1, event("stripe", "error", "psp_timeout")),  # 1 ms before the window
        Record(0, START, event("stripe", "error", "psp_timeout", tx=1)),  # first instant: inside
        Record(0, START + 1 * MINUTE, event("stripe", "ok")),
        Record(0, START + 2 * MINUTE, event("adyen", "error", "psp_timeout")),
        Record(0, START + 3 * MINUTE, event("stripe", "error", "amount_mismatch", tx=41)),
        Record(0, START + 4 * MINUTE, "not json {"),
        Record(0, END - 1, event("stripe", "error", "psp_timeout", tx=2)),  # last instant: inside
        Record(0, END, event("stripe", "error", "psp_timeout")),  # the end: outside, stops the partition
        Record(0, END + MINUTE, event("stripe", "error", "psp_timeout")),  # never read
    ]
    p1 = [
        Record(1, START + 5 * MINUTE, event("stripe", "error", "psp_timeout", tx=3)),
        Record(1, START + 6 * MINUTE, event("stripe", "ok")),
        Record(1, START + 7 * MINUTE, event("cielo", "ok")),
        Record(1, START + 8 * MINUTE, "[1, 2]"),
        Record(1, START + 9 * MINUTE, {"psp": "stripe", "status": "error"}),
        Record(1, START + 10 * MINUTE, {"psp": "adyen", "status": "weird"}),
        Record(1, START + 11 * MINUTE, event("stripe", "error", None)),
        Record(1, START + 12 * MINUTE, event("stripe", "error", "amount_mismatch", tx=42)),
        Record(1, END + 5 * MINUTE, event("stripe", "ok")),
    ]
    p2 = [
        Record(2, START + 30_000, event("stripe", "ok")),
        Record(2, START + 2 * MINUTE, LONG_GARBAGE),
        *[
            Record(2, START + (13 + i) * MINUTE, event("stripe", "error", "psp_timeout", tx=100 + i))
            for i in range(7)
        ],
        Record(2, START + 20 * MINUTE, b"\xff\xfe\x00"),
        Record(2, START + 21 * MINUTE, None),
        Record(2, START + 24 * MINUTE, event("stripe", "error", "x", cycle_start="2026-11-20T10:00:00")),
    ]
    return p0 + p1 + p2


@pytest.fixture(scope="module")
def events_topic(kafka_cluster: MockKafkaCluster) -> str:
    topic = kafka_cluster.new_topic()
    kafka_cluster.produce(topic, records())
    return topic


@pytest.fixture
def kafka_conn(kafka_cluster: MockKafkaCluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """Connection reconciliation_kafka on the mock cluster. Its extra names the worker's
    own group and auto-commit, as a shared connection would: the hook must ignore both."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_RECONCILIATION_KAFKA",
        kafka_cluster.connection_json(**{"group.id": MAIN_GROUP, "enable.auto.commit": True}),
    )
    return "reconciliation_kafka"


def inspect(topic: str, psp: str = "stripe", window: Window = WINDOW, **kwargs) -> EventsInspection:
    return ReconciliationEventsHook(topic=topic).inspect(psp, window, **{"timeout_s": 60, **kwargs})


# -- against the mock cluster ---------------------------------------------------------------------


def test_counts_the_psp_events_by_status_and_error_type(kafka_conn, events_topic):
    result = inspect(events_topic)

    assert result.psp == "stripe" and result.window == WINDOW and result.topic == events_topic
    assert result.ok == 3
    assert {t: g.count for t, g in result.errors_by_type.items()} == {
        "psp_timeout": 10,
        "amount_mismatch": 2,
        UNSPECIFIED_ERROR: 1,
    }
    assert result.errors == 13 and result.for_psp == 16
    assert result.other_psps == 3  # adyen twice (one of them not even valid), cielo once
    assert result.malformed == 7
    # 2 before the window, the one at its end on partition 0, the one after it on partition 1
    assert result.outside_window == 4
    assert result.total_read == 30 == result.for_psp + result.other_psps + result.malformed + 4
    assert result.partitions_read == 3  # partition 3 is empty
    assert result.truncated is False
    assert result.has_errors


def test_samples_are_the_earliest_messages_whatever_the_partition(kafka_conn, events_topic):
    result = inspect(events_topic)

    timeouts = result.errors_by_type["psp_timeout"].sample
    assert [(s.partition, s.event.transaction_id) for s in timeouts] == [
        (0, 1),
        (1, 3),
        (2, 100),
        (2, 101),
        (2, 102),
    ]
    assert timeouts[0].timestamp == WINDOW.start and timeouts[0].offset == 2
    assert [s.event.transaction_id for s in result.errors_by_type["amount_mismatch"].sample] == [41, 42]
    assert result.errors_by_type[UNSPECIFIED_ERROR].sample[0].event.error_type is None

    reasons = [(s.partition, s.reason) for s in result.malformed_sample]
    assert len(reasons) == 5
    assert reasons[0][0] == 2 and reasons[0][1].startswith("not JSON")
    assert reasons[1][0] == 0 and reasons[1][1].startswith("not JSON")
    assert reasons[2] == (1, "not a JSON object: got [1, 2] (array)")
    assert reasons[3] == (1, "missing field(s) cycle_start, event, message")
    assert reasons[4] == (2, "not UTF-8 text")
    garbage = result.malformed_sample[0].raw
    assert garbage.startswith("<html>xxx") and garbage.endswith("...") and len(garbage) == 303
    assert result.malformed_sample[1].raw == "not json {"


def test_sample_size_bounds_every_sample(kafka_conn, events_topic):
    wide = inspect(events_topic, sample_size=50)
    assert len(wide.errors_by_type["psp_timeout"].sample) == 10
    assert [s.reason for s in wide.malformed_sample][-2:] == [
        "empty message",
        "cycle_start 2026-11-20T10:00:00 has no timezone; give an explicit offset such as Z or -03:00",
    ]
    none = inspect(events_topic, sample_size=0)
    assert none.errors_by_type["psp_timeout"].count == 10
    assert none.errors_by_type["psp_timeout"].sample == () and none.malformed_sample == ()


def test_as_dict_is_json_for_xcom(kafka_conn, events_topic):
    payload = inspect(events_topic, sample_size=1).as_dict()

    assert json.loads(json.dumps(payload)) == payload
    assert payload["window_start"] == "2026-11-20T10:00:00+00:00"
    assert list(payload["errors_by_type"]) == ["psp_timeout", "amount_mismatch", UNSPECIFIED_ERROR]
    assert payload["errors_by_type"]["psp_timeout"] == {
        "count": 10,
        "sample": [
            {
                "partition": 0,
                "offset": 2,
                "timestamp": "2026-11-20T10:00:00+00:00",
                "cycle_start": "2026-11-20T10:00:00+00:00",
                "event": "reconciliation.failed",
                "error_type": "psp_timeout",
                "message": "stripe error psp_timeout",
                "transaction_id": 1,
            }
        ],
    }
    assert {k: payload[k] for k in ("total_read", "for_psp", "ok", "errors", "malformed", "other_psps")} == {
        "total_read": 30,
        "for_psp": 16,
        "ok": 3,
        "errors": 13,
        "malformed": 7,
        "other_psps": 3,
    }
    assert payload["malformed_sample"][0]["reason"].startswith("not JSON")
    assert payload["truncated"] is False and payload["partitions_read"] == 3


def test_another_psp_sees_only_its_own_events(kafka_conn, events_topic):
    adyen = inspect(events_topic, psp="adyen")
    assert adyen.ok == 0 and {t: g.count for t, g in adyen.errors_by_type.items()} == {"psp_timeout": 1}
    # adyen's own invalid event is malformed for adyen; stripe's and cielo's events are not its business
    assert adyen.malformed == 6 and adyen.other_psps == 19
    assert inspect(events_topic, psp="stone").for_psp == 0


def test_window_bounds_are_half_open(kafka_conn, events_topic):
    first_minute = Window(WINDOW.start, WINDOW.start + timedelta(minutes=1))
    just_before = Window(WINDOW.start - timedelta(milliseconds=1), WINDOW.start)
    last_ms = Window(WINDOW.end - timedelta(milliseconds=1), WINDOW.end)

    inside = inspect(events_topic, window=first_minute)
    assert inside.ok == 1 and inside.errors == 1  # 10:00:00.000 (error) and 10:00:30 (ok)
    assert [s.event.transaction_id for s in inside.errors_by_type["psp_timeout"].sample] == [1]
    assert inspect(events_topic, window=just_before).errors == 1  # 09:59:59.999 only
    assert inspect(events_topic, window=last_ms).errors == 1  # 10:59:59.999, not 11:00:00.000

    # adjacent windows split the messages without losing or repeating one
    halves = [
        inspect(events_topic, window=Window(WINDOW.start, WINDOW.start + timedelta(minutes=10))),
        inspect(events_topic, window=Window(WINDOW.start + timedelta(minutes=10), WINDOW.end)),
    ]
    whole = inspect(events_topic)
    assert sum(h.for_psp for h in halves) == whole.for_psp
    assert sum(h.malformed for h in halves) == whole.malformed
    assert sum(h.other_psps for h in halves) == whole.other_psps


def test_window_after_the_last_messages_reads_nothing(kafka_conn, events_topic):
    later = Window(WINDOW.end + timedelta(hours=1), WINDOW.end + timedelta(hours=2))
    result = inspect(events_topic, window=later)
    assert result.total_read == 0 and result.partitions_read == 0 and not result.has_errors


def test_max_messages_stops_and_says_so(kafka_conn, events_topic):
    cut = inspect(events_topic, max_messages=5)
    assert cut.total_read == 5 and cut.truncated is True
    # exactly enough to finish every partition is not a truncation
    exact = inspect(events_topic, max_messages=30)
    assert exact.total_read == 30 and exact.truncated is False


def test_the_main_consumer_groups_offsets_are_untouched(kafka_cluster, kafka_conn, events_topic):
    kafka_cluster.commit(MAIN_GROUP, events_topic, {0: 3, 1: 2, 2: 7})
    before = kafka_cluster.committed(MAIN_GROUP, events_topic, range(4))
    assert before == {0: 3, 1: 2, 2: 7, 3: -1001}

    hook = ReconciliationEventsHook(topic=events_topic)
    hook.inspect("stripe", WINDOW, timeout_s=60)
    first_group = hook.last_group_id
    hook.inspect("stripe", WINDOW, timeout_s=60)

    assert kafka_cluster.committed(MAIN_GROUP, events_topic, range(4)) == before
    assert first_group.startswith("airflow-recon-inspect-") and first_group != hook.last_group_id
    # the inspection's own groups never commit either
    for group in (first_group, hook.last_group_id):
        assert set(kafka_cluster.committed(group, events_topic, range(4)).values()) == {-1001}


def test_connection_test_button_reaches_the_cluster(kafka_conn):
    ok, message = ReconciliationEventsHook().test_connection()
    assert ok, message


def test_missing_topic_is_named(kafka_conn):
    with pytest.raises(EventsTopicError, match=r"topic 'reconciliation\.events\.nope' does not exist"):
        inspect("reconciliation.events.nope")


def test_unreachable_broker_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_RECONCILIATION_KAFKA",
        json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": "127.0.0.1:1"}}),
    )
    with pytest.raises(KafkaUnavailableError) as caught:
        ReconciliationEventsHook().inspect("stripe", WINDOW, timeout_s=60)
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "'reconciliation_kafka'" in message
    assert "unreachable" in message and "refused" in message.lower()


def test_missing_connection_names_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_RECONCILIATION_KAFKA", raising=False)
    with pytest.raises(ConnectionMissingError, match=r"'reconciliation_kafka' is not defined") as caught:
        ReconciliationEventsHook().inspect("stripe", WINDOW)
    assert "AIRFLOW_CONN_RECONCILIATION_KAFKA" in str(caught.value)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "has no 'bootstrap.servers'"),
        ({"bootstrap.servers": "127.0.0.1:1", "no.such.setting": "1"}, "no.such.setting"),
    ],
)
def test_unusable_connection_is_a_config_error(monkeypatch, extra, expected):
    monkeypatch.setenv("AIRFLOW_CONN_EVENTS_BAD", json.dumps({"conn_type": "kafka", "extra": extra}))
    with pytest.raises(ConfigError, match=expected):
        ReconciliationEventsHook("events_bad").inspect("stripe", WINDOW)


def test_bad_arguments_are_refused_before_any_io(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_RECONCILIATION_KAFKA", raising=False)
    hook = ReconciliationEventsHook()
    with pytest.raises(UnknownPspError):
        hook.inspect("Stripe; DROP", WINDOW)
    for kwargs in ({"sample_size": -1}, {"max_messages": 0}, {"timeout_s": 0}):
        with pytest.raises(ValueError):
            hook.inspect("stripe", WINDOW, **kwargs)
    with pytest.raises(ValueError):
        ReconciliationEventsHook(topic="")


# -- the pure part ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty message"),
        (b"", "empty message"),
        (b"\xff", "not UTF-8 text"),
        ("{", "not JSON"),
        ('"text"', "not a JSON object"),
        ('{"psp": "stripe"}', "missing field(s) cycle_start, event, status, message"),
        (json.dumps(event("stripe", "failed")), "status must be one of ok, error"),
        (json.dumps(event("stripe", "error", tx=True)), "transaction_id must be an integer or null"),
        (json.dumps(event("stripe", "error", tx="12")), "transaction_id must be an integer or null"),
        (json.dumps(event("stripe", "error", 7)), "error_type must be a text or null"),
        (json.dumps(event("", "ok")), "psp must be a non-empty text"),
        (json.dumps(event("stripe", "ok", cycle_start="yesterday")), "not an ISO 8601 timestamp"),
    ],
)
def test_parse_event_names_the_problem(raw, reason):
    with pytest.raises(MalformedEventError) as caught:
        parse_event(raw)
    assert reason in str(caught.value)


def test_parse_event_accepts_absent_nullable_fields():
    document = event("stripe", "error", "psp_timeout", tx=9)
    parsed = parse_event(json.dumps(document).encode())
    assert parsed.is_error and parsed.transaction_id == 9 and parsed.cycle_start == WINDOW.start
    del document["error_type"], document["transaction_id"]
    bare = parse_event(json.dumps(document))
    assert bare.error_type is None and bare.transaction_id is None and bare.error_group == UNSPECIFIED_ERROR


def test_tally_counts_without_kafka():
    tally = EventsTally("stripe", WINDOW, sample_size=1)
    tally.add(partition=0, offset=0, timestamp=None, value=b"{}")  # no timestamp: cannot be windowed
    tally.add(partition=0, offset=1, timestamp=START, value=json.dumps(event("stripe", "ok")))
    tally.add(partition=0, offset=2, timestamp=START + 1, value=json.dumps(event("stripe", "error", " ")))
    result = tally.result(partitions_read=1, truncated=False)
    assert (result.total_read, result.outside_window, result.ok) == (3, 1, 1)
    assert list(result.errors_by_type) == [UNSPECIFIED_ERROR]
    assert tally.is_past_window(END) and not tally.is_past_window(END - 1) and not tally.is_past_window(None)


@pytest.mark.parametrize(
    ("low", "high", "by_time", "last", "expected"),
    [
        (0, 0, OFFSET_END, None, None),  # empty partition
        (5, 5, 3, None, None),  # emptied by retention
        (0, 10, 4, None, 4),  # the broker found the window's first message
        (6, 10, 4, None, 6),  # ... since deleted: start at what is kept
        (0, 10, 10, None, None),  # at the end: nothing yet
        (0, 10, OFFSET_END, START - 1, None),  # nothing at or after the start, and the last message agrees
        (0, 10, OFFSET_END, START, 0),  # the broker could not look up by time: scan
        (2, 10, OFFSET_END, None, 2),  # last message unknown: scan
    ],
)
def test_start_offset(low, high, by_time, last, expected):
    assert (
        start_offset(low=low, high=high, by_time=by_time, last_timestamp=last, window_start=START) == expected
    )
