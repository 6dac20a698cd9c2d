"""Produces orders to a Pulsar topic with a real Pulsar client and its Pulsar schema (what a
Sluice pipeline then reads), and prints {"sent": N}.

usage: pulsar_send.py SERVICE_URL TOPIC KIND FIRST COUNT [DESCRIPTOR_SET MESSAGE]
KIND: avro-v1 | avro-v2 (v1 plus an optional `note`: a compatible change) |
      avro-garbage (bytes that are no Avro datum, sent under the v1 schema's version) |
      protobuf (PROTOBUF_NATIVE, the message of DESCRIPTOR_SET)
Order i: id "o-i", key "c-(i % 5)", email "ui@example.com", qty i, price i * 1.25.
"""
import json
import sys

import _pulsar
import pulsar
from pulsar.schema import AvroSchema

from orders import order_v1, order_v2, protobuf_class


def main():
    url, topic, kind, first, count = sys.argv[1:6]
    first, count = int(first), int(count)
    client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    OrderV1 = order_v1()
    if kind == "avro-v1":
        producer = client.create_producer(topic, schema=AvroSchema(OrderV1))
        for i in range(first, first + count):
            producer.send(OrderV1(id=f"o-{i}", email=f"u{i}@example.com", qty=i, price=i * 1.25),
                          partition_key=f"c-{i % 5}")
    elif kind == "avro-v2":
        v2 = order_v2()
        producer = client.create_producer(topic, schema=AvroSchema(v2))
        for i in range(first, first + count):
            producer.send(v2(id=f"o-{i}", email=f"u{i}@example.com", qty=i, price=i * 1.25,
                             note=f"n{i}"), partition_key=f"c-{i % 5}")
    elif kind == "avro-garbage":
        producer = client.create_producer(topic, schema=AvroSchema(OrderV1))
        for i in range(first, first + count):
            # Past the client's schema encoding: the message still carries the producer's
            # schema version, but its bytes are no datum of it (a string length of -1).
            message = _pulsar.MessageBuilder().content(b"\x01garbage").partition_key(f"c-{i % 5}").build()
            producer._producer.send(message)
    elif kind == "protobuf":
        from pulsar.schema import ProtobufNativeSchema
        cls = protobuf_class(*sys.argv[6:8])
        producer = client.create_producer(topic, schema=ProtobufNativeSchema(cls))
        for i in range(first, first + count):
            m = cls()
            m.order_id = f"o-{i}"
            m.total_cents = i * 100
            line = m.lines.add()
            line.sku = f"sku-{i}"
            line.qty = i % 7
            producer.send(m, partition_key=f"c-{i % 5}")
    else:
        raise SystemExit(f"unknown kind {kind}")
    producer.flush()
    producer.close()
    client.close()
    print(json.dumps({"sent": count}), flush=True)


if __name__ == "__main__":
    main()
