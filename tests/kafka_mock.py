"""librdkafka's built-in mock Kafka cluster, reached over TCP, for tests and demos.

A confluent-kafka client configured with ``test.mock.num.brokers`` starts an in-process
mock cluster (librdkafka's ``rd_kafka_mock_cluster``) whose brokers listen on 127.0.0.1
and ephemeral ports; that client ignores its own ``bootstrap.servers``. The Python binding
does not expose ``rd_kafka_mock_cluster_bootstraps()``, but the cluster's metadata does:
``list_topics().brokers`` lists every mock broker as ``127.0.0.1:<port>``, and that list
is the ``bootstrap.servers`` of any other client, such as an Airflow connection. The
cluster lives as long as the client that created it, so it is held for the session.

What the mock does not do (librdkafka 2.x), so tests do not rely on it:

- a lookup of offsets by time (``offsets_for_times``) answers -1 for any timestamp
  (``FIXME: by timestamp`` in ``rdkafka_mock_handlers.c``);
- ``AdminClient.create_topics`` times out waiting for a controller; topics are created on
  first use instead, with :data:`MOCK_PARTITIONS` partitions.

Use it through the session fixture :func:`kafka_cluster`, e.g. in a test module::

    import kafka_mock

    kafka_cluster = kafka_mock.kafka_cluster
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

#: partitions of a topic the mock cluster creates on first use (librdkafka's default)
MOCK_PARTITIONS = 4


@dataclass(frozen=True)
class Record:
    """One message to produce: where, when, and what."""

    partition: int
    timestamp_ms: int
    value: bytes | str | dict[str, Any] | None

    def payload(self) -> bytes | None:
        if self.value is None or isinstance(self.value, bytes):
            return self.value
        if isinstance(self.value, str):
            return self.value.encode()
        return json.dumps(self.value).encode()


class MockKafkaCluster:
    """An in-process mock Kafka cluster of ``num_brokers`` brokers on 127.0.0.1."""

    def __init__(self, num_brokers: int = 3) -> None:
        self.num_brokers = num_brokers
        self._owner: Producer | None = None
        self.bootstrap_servers = ""

    def start(self, timeout: float = 10.0) -> str:
        """Start the cluster and return its ``bootstrap.servers``, checked over TCP."""
        self._owner = Producer(
            {"test.mock.num.brokers": self.num_brokers, "client.id": "mock-cluster-owner", "log_level": 4}
        )
        brokers = self._owner.list_topics(timeout=timeout).brokers.values()
        self.bootstrap_servers = ",".join(f"{b.host}:{b.port}" for b in sorted(brokers, key=lambda b: b.id))
        if len(brokers) != self.num_brokers:
            raise RuntimeError(f"mock cluster has {len(brokers)} brokers, expected {self.num_brokers}")
        # a separate client, bootstrapped over TCP like any real one
        probe = Consumer({"bootstrap.servers": self.bootstrap_servers, "group.id": "mock-probe"})
        try:
            reached = probe.list_topics(timeout=timeout).brokers
        except KafkaException as exc:
            raise RuntimeError(
                f"mock Kafka cluster at {self.bootstrap_servers} is not reachable: {exc}"
            ) from exc
        finally:
            probe.close()
        if len(reached) != self.num_brokers:
            raise RuntimeError(f"mock Kafka cluster at {self.bootstrap_servers}: {len(reached)} brokers seen")
        return self.bootstrap_servers

    def stop(self) -> None:
        if self._owner is not None:
            self._owner.close()
            self._owner = None

    def __enter__(self) -> MockKafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for tests -----------------------------------------------------------------
    def new_topic(self, prefix: str = "reconciliation.events") -> str:
        """A topic name no other test uses (the cluster is shared by the session)."""
        return f"{prefix}.{uuid.uuid4().hex[:10]}"

    def client_config(self, **extra: Any) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap_servers, **extra}

    def connection_json(self, **extra: Any) -> str:
        """An Airflow connection (``AIRFLOW_CONN_<ID>``) of type kafka on this cluster."""
        return json.dumps({"conn_type": "kafka", "extra": self.client_config(**extra)})

    def produce(self, topic: str, records: Iterable[Record], timeout: float = 30.0) -> int:
        """Produce ``records`` with their explicit partitions and timestamps, over TCP."""
        producer = Producer(self.client_config(**{"client.id": "mock-test-producer", "linger.ms": 5}))
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        count = 0
        for record in records:
            producer.produce(
                topic,
                value=record.payload(),
                partition=record.partition,
                timestamp=record.timestamp_ms,
                on_delivery=delivered,
            )
            producer.poll(0)
            count += 1
        left = producer.flush(timeout)
        if left or failures:
            raise RuntimeError(f"{left} message(s) not delivered to {topic}; errors: {failures[:3]}")
        return count

    def commit(self, group_id: str, topic: str, offsets: dict[int, int]) -> None:
        """Commit ``{partition: offset}`` for ``group_id``, as a running consumer would."""
        consumer = Consumer(self.client_config(**{"group.id": group_id, "enable.auto.commit": False}))
        try:
            consumer.commit(
                offsets=[TopicPartition(topic, p, offset) for p, offset in offsets.items()],
                asynchronous=False,
            )
        finally:
            consumer.close()

    def committed(
        self, group_id: str, topic: str, partitions: Iterable[int], timeout: float = 10.0
    ) -> dict[int, int]:
        """Committed offsets of ``group_id`` (-1001, OFFSET_INVALID, where none)."""
        consumer = Consumer(self.client_config(**{"group.id": group_id, "enable.auto.commit": False}))
        try:
            found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in found}


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[MockKafkaCluster]:
    """A 3-broker mock Kafka cluster for the whole session (bootstrap on 127.0.0.1)."""
    with MockKafkaCluster(num_brokers=3) as cluster:
        yield cluster
