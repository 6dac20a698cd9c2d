"""Quix Streams' own Pub/Sub → Kafka path: `PubSubSource` added to an `Application`
(at-least-once, the default, as Sluice's contenders are), defaults otherwise. The source
runs in a child process, as Quix runs every source.

Usage: quix_pubsub.py [--release-leases] PROJECT TOPIC SUBSCRIPTION KAFKA_BROKERS KAFKA_TOPIC STATE_DIR
The emulator is found through PUBSUB_EMULATOR_HOST. Runs until SIGTERM/SIGINT.

As shipped (3.28.1), PubSubSource acknowledges with unary Acknowledge calls by ack id and never
calls `message.ack()`, so Google's client keeps every message it delivered leased and counted
against its flow control (1,000 messages by default): the stream stops after 1,000 messages.
`--release-leases` adds the smallest fix (each committed message is `drop()`ped from the
client's lease management after its unary ack) so the rest of Quix's path can be measured too.
"""

import sys

from quixstreams import Application
from quixstreams.sources.community.pubsub import PubSubSource
from quixstreams.sources.community.pubsub import consumer as quix_consumer


class LeaseReleasingConsumer(quix_consumer.PubSubConsumer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._delivered = []

    def _async_pull_callback(self, message) -> None:
        super()._async_pull_callback(message)
        self._delivered.append(message)

    def commit(self) -> None:
        delivered, self._delivered = self._delivered, []
        super().commit()
        for message in delivered:
            message.drop()


class LeaseReleasingSource(PubSubSource):
    """PubSubSource.setup() with the consumer above (Quix runs sources in a spawned process,
    so the fix must travel with the source's class)."""

    def setup(self):
        self._client = LeaseReleasingConsumer(
            credentials=self._credentials,
            project_id=self._project_id,
            topic_id=self._topic_id,
            subscription_id=self._subscription_id,
            create_subscription=self._create_subscription,
            enable_message_ordering=self._enable_message_ordering,
            async_function=self._handle_pubsub_message,
            max_batch_size=self._commit_every,
            batch_timeout_secs=self._commit_interval,
        ).__enter__()


def main() -> None:
    args = sys.argv[1:]
    source_class = PubSubSource
    if args and args[0] == "--release-leases":
        args = args[1:]
        source_class = LeaseReleasingSource
    project, topic, subscription, kafka_brokers, kafka_topic, state_dir = args
    app = Application(
        broker_address=kafka_brokers,
        consumer_group=f"quix-{subscription}",
        processing_guarantee="at-least-once",
        loglevel="WARNING",
        state_dir=state_dir,
    )
    source = source_class(project_id=project, topic_id=topic, subscription_id=subscription)
    output = app.topic(kafka_topic, key_serializer="str", value_serializer="bytes")
    app.add_source(source, topic=output)
    app.run()


if __name__ == "__main__":
    main()
