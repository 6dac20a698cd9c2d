"""The records of the benchmark and the broker plumbing around them.

Every record is keyed (64 keys) and its value is JSON padded to an exact size:
`{"seq":N,"sent_ns":T,"email":"...","phone":"...","pad":"xxx"}`. `seq` tells pre-loaded
records (below LATENCY_SEQ_BASE) from the latency probes; `sent_ns` is the wall clock
(`time.time_ns()`) when a probe was handed to the source client. Every contender keeps both
fields (the redact guest masks only `email` and `phone`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

KEYS = 64
LATENCY_SEQ_BASE = 1_000_000_000
PUBSUB_PROJECT = "sluice-bench"


def value_of(seq: int, size: int, sent_ns: int = 0) -> bytes:
    head = json.dumps(
        {"seq": seq, "sent_ns": sent_ns, "email": f"u{seq}@example.com", "phone": "+1-555-0100", "pad": ""},
        separators=(",", ":"),
    )
    return (head[:-2] + "x" * max(0, size - len(head)) + head[-2:]).encode()


def key_of(seq: int) -> str:
    return f"key-{seq % KEYS}"


@dataclass
class Brokers:
    kafka: str  # host:port
    pulsar_url: str  # pulsar://host:port
    pubsub: str  # emulator host:port


def sluice_headers(source: str, seq: int) -> list[tuple[str, bytes]]:
    """The headers Sluice writes on the Kafka record of pre-loaded record `seq` from `source`:
    the source's attributes (Pub/Sub: `key`; the Pulsar records have no properties) and the
    identity headers, with values as long as real ones (a Pulsar message id
    `ledger:entry:partition:batch-index`, a Pub/Sub message id of 16 digits)."""
    if source == "pulsar":
        source_id = f"{10 + seq // 50_000}:{seq // 1000}:-1:{seq % 1000}"
        attributes = []
    else:
        source_id = f"{18_000_000_000_000_000 + seq}"[:16]
        attributes = [("key", key_of(seq).encode())]
    return [*attributes, ("sluice.source.id", source_id.encode()), ("sluice.pipeline", b"bench"),
            ("sluice.output.index", b"0")]


# --------------------------------------------------------------------------------------------
# Kafka


def kafka_admin(brokers: Brokers):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": brokers.kafka})


def create_kafka_topic(brokers: Brokers, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import NewTopic

    from confluent_kafka import Consumer, KafkaException, TopicPartition

    admin = kafka_admin(brokers)  # kept alive until the result is in
    futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=30)
    futures[topic].result(timeout=60)
    # Created is not yet served: wait until every partition has a leader that answers.
    consumer = Consumer({"bootstrap.servers": brokers.kafka, "group.id": f"bench-create-{topic}"})
    deadline = time.monotonic() + 60
    try:
        for partition in range(partitions):
            while True:
                try:
                    consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                    break
                except KafkaException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
    finally:
        consumer.close()


class KafkaProgress:
    """Counts the records in a topic by summing its partitions' high watermarks."""

    def __init__(self, brokers: Brokers, topic: str, partitions: int):
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer({"bootstrap.servers": brokers.kafka, "group.id": f"bench-watch-{topic}"})
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._last = 0

    def count(self) -> int:
        """The sum of the high watermarks; the last sum while a broker cannot tell (a leader
        moving, say)."""
        from confluent_kafka import KafkaException

        try:
            self._last = sum(self._consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in self._partitions)
        except KafkaException:
            pass
        return self._last

    def close(self) -> None:
        self._consumer.close()


class KafkaTail:
    """Reads a topic from its current end and records when each latency probe arrives."""

    def __init__(self, brokers: Brokers, topic: str, partitions: int):
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        self._consumer = Consumer(
            {
                "bootstrap.servers": brokers.kafka,
                "group.id": f"bench-tail-{topic}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
                "fetch.min.bytes": 1,
            }
        )
        self._consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in range(partitions)])
        self.latencies_ms: dict[int, float] = {}

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for message in self._consumer.consume(1000, timeout=min(left, 0.05)):
                if message.error():
                    continue
                arrived_ns = time.time_ns()
                record = json.loads(message.value())
                if record["seq"] >= LATENCY_SEQ_BASE:
                    self.latencies_ms.setdefault(record["seq"], (arrived_ns - record["sent_ns"]) / 1e6)

    def close(self) -> None:
        self._consumer.close()


def read_back(brokers: Brokers, topic: str, partitions: int) -> tuple[int, int]:
    """Every record of `topic`: (pre-loaded records, distinct pre-loaded `seq`s)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": brokers.kafka, "group.id": f"bench-verify-{topic}", "enable.auto.commit": False}
    )
    ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    remaining, loaded, seqs = sum(ends), 0, set()
    idle_since = time.monotonic()
    while remaining > 0 and time.monotonic() - idle_since < 30:
        messages = consumer.consume(5000, timeout=0.5)
        if messages:
            idle_since = time.monotonic()
        for message in messages:
            if message.error():
                continue
            remaining -= 1
            seq = json.loads(message.value())["seq"]
            if seq < LATENCY_SEQ_BASE:
                loaded += 1
                seqs.add(seq)
    consumer.close()
    return loaded, len(seqs)


# --------------------------------------------------------------------------------------------
# Pulsar


def pulsar_client(url: str):
    import pulsar

    return pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


def preload_pulsar(url: str, topic: str, count: int, size: int, progress) -> None:
    """Publishes `count` records, batched (as a throughput-minded producer does)."""
    client = pulsar_client(url)
    producer = client.create_producer(
        topic,
        batching_enabled=True,
        batching_max_messages=1000,
        batching_max_publish_delay_ms=10,
        block_if_queue_full=True,
        max_pending_messages=10000,
    )
    failures = []
    for seq in range(count):
        producer.send_async(
            value_of(seq, size),
            lambda result, _id: failures.append(result) if str(result) != "Result.Ok" else None,
            partition_key=key_of(seq),
        )
        if seq % 5000 == 0:
            progress(seq)
    producer.flush()
    client.close()
    if failures:
        raise RuntimeError(f"pre-loading {topic}: {len(failures)} sends failed, e.g. {failures[0]}")


class PulsarProbe:
    """Publishes latency probes one by one (unbatched), stamping `sent_ns` at the send call."""

    def __init__(self, url: str, topic: str, size: int):
        self._client = pulsar_client(url)
        self._producer = self._client.create_producer(topic, batching_enabled=False, block_if_queue_full=True)
        self._size = size

    def send(self, seq: int) -> None:
        sent_ns = time.time_ns()
        self._producer.send_async(
            value_of(seq, self._size, sent_ns),
            None,
            partition_key=key_of(seq),
            event_timestamp=sent_ns // 1_000_000,
        )

    def close(self) -> None:
        self._producer.flush()
        self._client.close()


# --------------------------------------------------------------------------------------------
# Pub/Sub (Google's emulator)


def create_pubsub_topic(topic: str, subscriptions: list[str]) -> None:
    """Creates the topic and subscriptions on it.

    Record keys travel as the attribute `key` (Sluice: `key_attribute = "key"`), not as
    ordering keys: quixstreams' PubSubSource stalls after one message per ordering key (it
    acks with unary Acknowledge calls, which never release the Python client's messages held
    back for that key), and it cannot forward keys anyway."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic_path = publisher.topic_path(PUBSUB_PROJECT, topic)
    publisher.create_topic(name=topic_path)
    for subscription in subscriptions:
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(PUBSUB_PROJECT, subscription),
                "topic": topic_path,
                "ack_deadline_seconds": 60,
            }
        )
    subscriber.close()


def pubsub_publisher(max_latency_s: float):
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_latency=max_latency_s)
    )


def preload_pubsub(topic: str, count: int, size: int, progress) -> None:
    publisher = pubsub_publisher(0.01)
    path = publisher.topic_path(PUBSUB_PROJECT, topic)
    futures = []
    for seq in range(count):
        futures.append(publisher.publish(path, value_of(seq, size), key=key_of(seq)))
        if seq % 2000 == 0:
            progress(seq)
            # Keep the client's buffer bounded: wait for what was published a while ago.
            for future in futures[:-4000]:
                future.result(timeout=120)
            futures = futures[-4000:]
    for future in futures:
        future.result(timeout=120)
    publisher.stop()


class PubSubProbe:
    """Publishes latency probes with a 1 ms client batching window."""

    def __init__(self, topic: str, size: int):
        self._publisher = pubsub_publisher(0.001)
        self._path = self._publisher.topic_path(PUBSUB_PROJECT, topic)
        self._size = size
        self._futures = []

    def send(self, seq: int) -> None:
        value = value_of(seq, self._size, time.time_ns())
        self._futures.append(self._publisher.publish(self._path, value, key=key_of(seq)))

    def close(self) -> None:
        for future in self._futures:
            future.result(timeout=120)
        self._publisher.stop()
