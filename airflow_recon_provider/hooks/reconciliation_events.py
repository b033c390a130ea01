"""Hook on the reconciliation events topic (connection ``reconciliation_kafka``, Kafka).

Runbook, Investigação step 3 ("Integridade de Dados"): "Verificar tópicos Kafka
(reconciliation.events) para mensagens com erro". :meth:`ReconciliationEventsHook.inspect`
reads the part of ``reconciliation.events`` that covers a window and summarises it for
one PSP; what a message means is decided by
:mod:`airflow_recon_provider.reconciliation.events`.

Reading never disturbs the reconciliation worker: every inspection has its own consumer
group (``airflow-recon-inspect-<uuid>``), takes its partitions with ``assign`` (no group
membership, no rebalance of anybody) and never commits an offset.

Failure modes have their own errors: :class:`ConnectionMissingError` (no connection),
:class:`ConfigError` (the connection has no ``bootstrap.servers`` or a bad setting),
:class:`KafkaUnavailableError` (brokers unreachable, or no answer in ``timeout_s``),
:class:`EventsTimeoutError` (the window could not be read in ``timeout_s``),
:class:`EventsTopicError` (the topic does not exist or may not be read).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

from airflow_recon_provider.hooks._connections import is_missing_connection
from airflow_recon_provider.names import RECONCILIATION_KAFKA_CONN_ID
from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.errors import ConfigError, ConnectionMissingError
from airflow_recon_provider.reconciliation.events import (
    DEFAULT_TOPIC,
    EventsInspection,
    EventsTally,
    EventsTimeoutError,
    EventsTopicError,
    KafkaUnavailableError,
    start_offset,
)

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError

    from airflow_recon_provider.reconciliation.window import Window

# librdkafka's own log lines go through Python logging (and so into the task log)
_LIBRDKAFKA_LOG = logging.getLogger("airflow_recon_provider.kafka")

#: longest single wait on the broker, so that an error reported meanwhile is seen soon
_MAX_WAIT_S = 1.0


class ReconciliationEventsHook(KafkaBaseHook):
    """Read ``reconciliation.events`` without touching any consumer group's offsets.

    The connection is an apache-kafka style connection: its extra is the
    confluent-kafka configuration (``bootstrap.servers``, security settings, ...). A
    ``group.id`` or commit setting in it is ignored: each inspection uses its own group
    and never commits.

    :param kafka_config_id: Airflow connection of the Kafka cluster.
    :param topic: the events topic.
    """

    conn_name_attr = "kafka_config_id"
    default_conn_name = RECONCILIATION_KAFKA_CONN_ID
    conn_type = "reconciliation_kafka"
    hook_name = "Reconciliation Events (Kafka)"

    #: prefix of the consumer group of each inspection
    group_id_prefix = "airflow-recon-inspect"
    #: most messages taken from the client per call
    batch_size = 500

    def __init__(self, kafka_config_id: str = default_conn_name, *, topic: str = DEFAULT_TOPIC) -> None:
        if not isinstance(topic, str) or not topic.strip():
            raise ValueError(f"topic must be a non-empty text, got {topic!r}")
        super().__init__(kafka_config_id=kafka_config_id)
        self.topic = topic
        #: consumer group of the latest inspection (it never commits; kept for the log)
        self.last_group_id: str | None = None
        self._bootstrap = "?"
        self._broker_errors: list[KafkaError] = []

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "login", "password", "port", "host"],
            "relabeling": {"extra": "Config Dict"},
            "placeholders": {
                "extra": '{"bootstrap.servers": "kafka-1:9092,kafka-2:9092", "security.protocol": "SSL"}',
            },
        }

    # -- consumer ------------------------------------------------------------------------------
    def _get_client(self, config: dict[str, Any]) -> Consumer:
        """The KafkaBaseHook factory: the connection's settings, made safe for inspection."""
        from confluent_kafka import Consumer

        user_error_cb = config.get("error_cb")

        def on_error(error: KafkaError) -> None:
            self._broker_errors.append(error)
            if callable(user_error_cb):
                user_error_cb(error)

        self._bootstrap = str(config.get("bootstrap.servers"))
        settings = {
            "client.id": "airflow-recon-inspect",
            **config,
            "group.id": self.last_group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "error_cb": on_error,
            "logger": _LIBRDKAFKA_LOG,
        }
        return Consumer(settings)

    def _new_group_id(self) -> str:
        return f"{self.group_id_prefix}-{uuid.uuid4()}"

    @contextmanager
    def _consumer(self) -> Iterator[Consumer]:
        """A new consumer, in a new group, closed on exit."""
        from confluent_kafka import KafkaException

        conn_id = self.kafka_config_id
        self.last_group_id = self._new_group_id()
        self._broker_errors = []
        try:
            consumer = self.get_conn
        except KafkaException as exc:
            raise ConfigError(
                f"Airflow connection {conn_id!r} has a Kafka setting the client refuses: {exc.args[0].str()}"
            ) from None
        except ValueError as exc:
            if "bootstrap.servers" in str(exc):
                raise ConfigError(
                    f"Airflow connection {conn_id!r} has no 'bootstrap.servers' in its extra; "
                    'set it, e.g. {"bootstrap.servers": "kafka-1:9092"}'
                ) from None
            raise
        except Exception as exc:
            if is_missing_connection(exc):
                raise ConnectionMissingError(
                    f"Airflow connection {conn_id!r} is not defined; create it (type kafka or "
                    f'{self.conn_type}, extra {{"bootstrap.servers": "host:9092"}}) or set '
                    f"AIRFLOW_CONN_{conn_id.upper()}"
                ) from None
            raise
        finally:
            # KafkaBaseHook caches its client; each inspection needs a fresh consumer and group
            self.__dict__.pop("get_conn", None)
        try:
            yield consumer
        finally:
            consumer.close()

    # -- inspection ------------------------------------------------------------------------------
    def inspect(
        self,
        psp: str,
        window: Window,
        *,
        sample_size: int = 5,
        max_messages: int = 200_000,
        timeout_s: float = 30,
    ) -> EventsInspection:
        """Summarise the events of ``psp`` in ``window``: ok, errors by type, malformed.

        Each partition is read from the first message at or after the window's start up to
        the first message at or after its end, or up to its end when the inspection began.

        :param psp: the PSP under investigation.
        :param window: the window, applied to the message timestamps (half-open).
        :param sample_size: most messages kept as examples per error type (and malformed).
        :param max_messages: most messages read; beyond it the result says ``truncated``.
        :param timeout_s: longest time the whole inspection may take.
        """
        check_psp_name(psp)
        tally = EventsTally(psp, window, sample_size=sample_size)
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
            raise ValueError(f"max_messages must be a whole number of at least 1, got {max_messages!r}")
        if not timeout_s or timeout_s <= 0:
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        deadline = time.monotonic() + float(timeout_s)
        clock = _Deadline(deadline, float(timeout_s))

        with self._consumer() as consumer:
            partitions = self._partitions(consumer, clock)
            plan = self._plan(consumer, partitions, tally.start_ms, clock)
            truncated = self._read(consumer, plan, tally, max_messages, clock)
        inspection = tally.result(topic=self.topic, partitions_read=len(plan), truncated=truncated)
        self.log.info(
            "Topic %s, PSP %s, window %s: %d message(s) read from %d partition(s); %d for the PSP "
            "(%d ok, %d error), %d malformed, %d of other PSPs%s",
            self.topic,
            psp,
            window,
            inspection.total_read,
            inspection.partitions_read,
            inspection.for_psp,
            inspection.ok,
            inspection.errors,
            inspection.malformed,
            inspection.other_psps,
            f"; stopped at max_messages={max_messages}" if truncated else "",
        )
        return inspection

    # -- steps ---------------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"Kafka {self._bootstrap} (connection {self.kafka_config_id!r})"

    def _check_broker_errors(self) -> None:
        """Fail fast on what librdkafka reported through ``error_cb`` that retrying cannot fix."""
        from confluent_kafka import KafkaError

        for error in self._broker_errors:
            if error.code() == KafkaError._ALL_BROKERS_DOWN:
                transport = [e.str() for e in self._broker_errors if e.code() == KafkaError._TRANSPORT]
                detail = transport[-1] if transport else error.str()
                raise KafkaUnavailableError(f"{self._where()} is unreachable: {detail}")
            if error.code() == KafkaError._AUTHENTICATION or error.fatal():
                raise KafkaUnavailableError(f"{self._where()} refused the client: {error.str()}")
        self._broker_errors.clear()

    def _partitions(self, consumer: Consumer, clock: _Deadline) -> list[int]:
        """Partition ids of the topic; waits for the cluster at most until the deadline."""
        from confluent_kafka import KafkaError, KafkaException

        while True:
            remaining = clock.remaining()
            if remaining <= 0:
                raise KafkaUnavailableError(
                    f"{self._where()} did not answer within {clock.total:g} s (topic {self.topic})"
                )
            try:
                metadata = consumer.list_topics(self.topic, timeout=min(_MAX_WAIT_S, remaining))
            except KafkaException:
                consumer.poll(0)  # serves error_cb: a refused connection is known by now
                self._check_broker_errors()
                continue
            topic = metadata.topics.get(self.topic)
            error = topic.error if topic is not None else None
            if topic is not None and error is None and topic.partitions:
                return sorted(topic.partitions)
            if error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise EventsTopicError(f"{self._where()} does not allow reading topic {self.topic!r}")
            if topic is None or (error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                raise EventsTopicError(
                    f"topic {self.topic!r} does not exist on {self._where()}; check the topic name"
                )
            # leader elections and the like: ask again until the deadline
            time.sleep(min(0.1, max(clock.remaining(), 0)))

    def _plan(
        self, consumer: Consumer, partitions: list[int], window_start: int, clock: _Deadline
    ) -> dict[int, tuple[int, int]]:
        """``{partition: (first offset to read, high watermark)}`` of the partitions with
        something to read for the window."""
        from confluent_kafka import TopicPartition

        watermarks = {
            p: self._broker_call(
                lambda p=p: consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=clock.left(), cached=False
                ),
                clock,
                "the partitions' offsets",
            )
            for p in partitions
        }
        non_empty = [p for p, (low, high) in watermarks.items() if high > low]
        if not non_empty:
            return {}
        found = self._broker_call(
            lambda: consumer.offsets_for_times(
                [TopicPartition(self.topic, p, window_start) for p in non_empty], timeout=clock.left()
            ),
            clock,
            "the offsets at the window's start",
        )
        by_time: dict[int, int] = {}
        for tp in found:
            if tp.error is not None:
                raise KafkaUnavailableError(
                    f"{self._where()} could not look up offsets by time in partition {tp.partition} of "
                    f"{self.topic}: {tp.error.str()}"
                )
            by_time[tp.partition] = tp.offset
        unresolved = {p: watermarks[p][1] - 1 for p in non_empty if by_time.get(p, -1) < 0}
        last = self._last_timestamps(consumer, unresolved, clock) if unresolved else {}
        plan = {}
        for p in non_empty:
            low, high = watermarks[p]
            start = start_offset(
                low=low,
                high=high,
                by_time=by_time.get(p, -1),
                last_timestamp=last.get(p),
                window_start=window_start,
            )
            if start is not None:
                plan[p] = (start, high)
        return plan

    def _last_timestamps(
        self, consumer: Consumer, last_offsets: dict[int, int], clock: _Deadline
    ) -> dict[int, int | None]:
        """Timestamp of the last message of each partition (``None`` when unknown)."""
        from confluent_kafka import KafkaError, TopicPartition

        consumer.assign([TopicPartition(self.topic, p, offset) for p, offset in last_offsets.items()])
        found: dict[int, int | None] = {}
        try:
            while len(found) < len(last_offsets):
                self._check_broker_errors()
                if clock.remaining() <= 0:
                    raise EventsTimeoutError(
                        f"{self._where()}: the last messages of topic {self.topic} could not be read "
                        f"within {clock.total:g} s"
                    )
                for message in _take(consumer, len(last_offsets), clock):
                    p = message.partition()
                    if p in found:
                        continue
                    error = message.error()
                    if error is None:
                        found[p] = _timestamp(message)
                    elif error.code() == KafkaError._PARTITION_EOF:
                        found[p] = None
                    else:
                        self._message_error(error)
        finally:
            consumer.unassign()
        return found

    def _read(
        self,
        consumer: Consumer,
        plan: dict[int, tuple[int, int]],
        tally: EventsTally,
        max_messages: int,
        clock: _Deadline,
    ) -> bool:
        """Feed the planned messages to ``tally``; whether ``max_messages`` cut the reading short."""
        from confluent_kafka import KafkaError, TopicPartition

        if not plan:
            return False
        pending = {p: high for p, (_, high) in plan.items()}

        def done(partition: int) -> None:
            pending.pop(partition, None)
            consumer.pause([TopicPartition(self.topic, partition)])

        consumer.assign([TopicPartition(self.topic, p, start) for p, (start, _) in plan.items()])
        read = 0
        while pending:
            self._check_broker_errors()
            if clock.remaining() <= 0:
                raise EventsTimeoutError(
                    f"{self._where()}: {read} message(s) of topic {self.topic} read in {clock.total:g} s "
                    f"and {len(pending)} partition(s) not finished; raise timeout_s or narrow the window"
                )
            batch = _take(consumer, min(self.batch_size, max_messages - read), clock)
            for message in batch:
                partition = message.partition()
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done(partition)
                    else:
                        self._message_error(error)
                    continue
                # already finished (fetched before the pause), or written after the inspection began
                if partition not in pending or message.offset() >= pending[partition]:
                    done(partition)
                    continue
                timestamp = _timestamp(message)
                tally.add(
                    partition=partition, offset=message.offset(), timestamp=timestamp, value=message.value()
                )
                read += 1
                if tally.is_past_window(timestamp) or message.offset() >= pending[partition] - 1:
                    done(partition)
                if read >= max_messages:
                    return bool(pending)
        return False

    def _message_error(self, error: KafkaError) -> None:
        from confluent_kafka import KafkaError

        if error.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.UNKNOWN_TOPIC_OR_PART):
            raise EventsTopicError(f"{self._where()} cannot serve topic {self.topic!r}: {error.str()}")
        if error.fatal():
            raise KafkaUnavailableError(f"{self._where()} failed while reading {self.topic}: {error.str()}")
        self.log.warning("Kafka reported %s while reading %s; going on", error.str(), self.topic)

    def _broker_call(self, call: Any, clock: _Deadline, what: str) -> Any:
        from confluent_kafka import KafkaException

        try:
            return call()
        except KafkaException as exc:
            self._check_broker_errors()
            raise KafkaUnavailableError(
                f"{self._where()} could not give {what}: {exc.args[0].str()}"
            ) from None


class _Deadline:
    """Time left of one inspection."""

    def __init__(self, deadline: float, total: float) -> None:
        self.deadline = deadline
        self.total = total

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def left(self) -> float:
        """How long a single lookup may block: what is left."""
        return max(0.001, self.remaining())

    def wait(self) -> float:
        """How long the next call to the broker may block."""
        return max(0.001, min(_MAX_WAIT_S, self.remaining()))


def _take(consumer: Consumer, most: int, clock: _Deadline) -> list[Any]:
    """What the client already holds (up to ``most``), else the next message or event.

    ``consume`` waits for a full batch, which a short topic never fills: ask for what is
    there without waiting, and block on ``poll`` only when there is nothing.
    """
    batch = consumer.consume(num_messages=most, timeout=0)
    if batch:
        return batch
    message = consumer.poll(clock.wait())
    return [] if message is None else [message]


def _timestamp(message: Any) -> int | None:
    from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

    kind, value = message.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE or value < 0 else value
