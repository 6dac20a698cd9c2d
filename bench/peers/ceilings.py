"""The raw limits every contender runs into, measured with the brokers' own C/C++/Python
clients and no bridge in between. Prints one JSON line: {"records": N, "seconds": S}.

  ceilings.py kafka-produce BROKERS TOPIC COUNT SIZE SOURCE
                                                       librdkafka producer with Sluice's settings
                                                       (idempotent, acks=all, murmur2_random), keyed
                                                       records with the headers Sluice writes from
                                                       SOURCE (pulsar, pubsub)
  ceilings.py pulsar-consume URL TOPIC SUBSCRIPTION COUNT
                                                       C++ client: receive + acknowledge the backlog
  ceilings.py pubsub-consume PROJECT SUBSCRIPTION COUNT
                                                       Google's Python client: streaming pull + ack

Consume rates count from the first record received, so connecting is not included.
"""

import json
import sys
import threading
import time

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from workload import key_of, sluice_headers, value_of  # noqa: E402


def kafka_produce(brokers: str, topic: str, count: int, size: int, source: str) -> dict:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random"}
    )
    records = [(value_of(seq, size), sluice_headers(source, seq)) for seq in range(count)]
    failed = []
    started = time.monotonic()
    for seq, (value, headers) in enumerate(records):
        while True:
            try:
                producer.produce(topic, key=key_of(seq), value=value, headers=headers,
                                 on_delivery=lambda e, _m: e and failed.append(e))
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(120)
    seconds = time.monotonic() - started
    if failed:
        raise SystemExit(f"{len(failed)} records not delivered, e.g. {failed[0]}")
    return {"records": count, "seconds": seconds}


def pulsar_consume(url: str, topic: str, subscription: str, count: int) -> dict:
    import pulsar

    client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    consumer = client.subscribe(
        topic,
        subscription,
        consumer_type=pulsar.ConsumerType.Failover,
        initial_position=pulsar.InitialPosition.Earliest,
    )
    seen, first = set(), None
    while len(seen) < count:
        message = consumer.receive(timeout_millis=30_000)
        first = first or time.monotonic()
        consumer.acknowledge(message)
        seen.add(message.message_id().serialize())
    seconds = time.monotonic() - first
    client.close()
    return {"records": count, "seconds": seconds}


def pubsub_consume(project: str, subscription: str, count: int) -> dict:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(project, subscription)
    seen, lock, done = set(), threading.Lock(), threading.Event()
    first = []

    def on_message(message):
        message.ack()
        with lock:
            if not first:
                first.append(time.monotonic())
            seen.add(message.message_id)
            if len(seen) >= count:
                done.set()

    future = subscriber.subscribe(
        path, on_message, flow_control=pubsub_v1.types.FlowControl(max_messages=10_000)
    )
    if not done.wait(600):
        raise SystemExit(f"only {len(seen)} of {count} messages in 600 s")
    seconds = time.monotonic() - first[0]
    future.cancel()
    future.result()
    subscriber.close()
    return {"records": count, "seconds": seconds}


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    if command == "kafka-produce":
        result = kafka_produce(args[0], args[1], int(args[2]), int(args[3]), args[4])
    elif command == "pulsar-consume":
        result = pulsar_consume(args[0], args[1], args[2], int(args[3]))
    elif command == "pubsub-consume":
        result = pubsub_consume(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown command {command!r}; see {__file__}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
