"""A Pulsar → Kafka bridge as a Quix Streams / Python user writes it today (Quix has no Pulsar
source): the C++ client's consumer, librdkafka's producer (idempotent, acks=all), each
message acknowledged to Pulsar from its Kafka delivery report (at-least-once). Key, value,
properties (as headers) and event time (else publish time) are carried over, like Sluice.

Usage: pulsar_bridge.py PULSAR_URL TOPIC SUBSCRIPTION KAFKA_BROKERS KAFKA_TOPIC
Runs until SIGTERM/SIGINT, then flushes and exits.
"""

import signal
import sys

import pulsar
from confluent_kafka import Producer


def main() -> None:
    pulsar_url, topic, subscription, kafka_brokers, kafka_topic = sys.argv[1:6]
    client = pulsar.Client(pulsar_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    consumer = client.subscribe(
        topic,
        subscription,
        consumer_type=pulsar.ConsumerType.Failover,
        initial_position=pulsar.InitialPosition.Earliest,
    )
    producer = Producer({"bootstrap.servers": kafka_brokers, "enable.idempotence": True, "acks": "all"})
    running = True

    def stop(_signal, _frame):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def acknowledge_when_delivered(message):
        def on_delivery(error, _kafka_message):
            if error is None:
                consumer.acknowledge(message)
            else:
                consumer.negative_acknowledge(message)

        return on_delivery

    while running:
        try:
            message = consumer.receive(timeout_millis=100)
        except pulsar.Timeout:
            producer.poll(0)
            continue
        while True:
            try:
                producer.produce(
                    kafka_topic,
                    key=message.partition_key() or None,
                    value=message.data(),
                    headers=list(message.properties().items()),
                    timestamp=message.event_timestamp() or message.publish_timestamp(),
                    on_delivery=acknowledge_when_delivered(message),
                )
                break
            except BufferError:  # librdkafka's queue is full: serve deliveries, then retry
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(30)
    consumer.close()
    client.close()


if __name__ == "__main__":
    main()
