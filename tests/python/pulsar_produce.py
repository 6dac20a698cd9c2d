"""Produces records to a Pulsar topic with a real Pulsar client and Pulsar schema, reads them
back, and prints one JSON line per message: its schema version (hex) and payload (base64).

usage: pulsar_produce.py SERVICE_URL TOPIC KIND [DESCRIPTOR_SET MESSAGE]
KIND: avro | avro-evolve | json | string | protobuf
"""
import base64
import json
import sys

import pulsar
from pulsar.schema import AvroSchema, JsonSchema, StringSchema

from orders import order_v1, order_v2, protobuf_class


def main():
    url, topic, kind = sys.argv[1:4]
    client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    consumer = client.subscribe(topic, "codec-test", initial_position=pulsar.InitialPosition.Earliest)
    sent = 0
    if kind in ("avro", "avro-evolve", "json"):
        v1 = order_v1()
        make = AvroSchema if kind != "json" else JsonSchema
        producer = client.create_producer(topic, schema=make(v1))
        for i in range(2):
            producer.send(v1(id=f"o-{i}", email=f"u{i}@example.com", qty=i, price=1.5 * i))
            sent += 1
        producer.close()
        if kind == "avro-evolve":
            v2 = order_v2()
            producer = client.create_producer(topic, schema=AvroSchema(v2))
            producer.send(v2(id="o-2", email="u2@example.com", qty=2, price=3.0, note="late"))
            sent += 1
            producer.close()
    elif kind == "string":
        producer = client.create_producer(topic, schema=StringSchema())
        producer.send("héllo")
        sent += 1
        producer.close()
    elif kind == "protobuf":
        from pulsar.schema import ProtobufNativeSchema
        cls = protobuf_class(*sys.argv[4:6])
        producer = client.create_producer(topic, schema=ProtobufNativeSchema(cls))
        m = cls()
        m.order_id = "o-1"
        m.total_cents = 1234
        line = m.lines.add()
        line.sku = "A"
        line.qty = 2
        producer.send(m)
        sent += 1
        producer.close()
    else:
        raise SystemExit(f"unknown kind {kind}")
    for _ in range(sent):
        msg = consumer.receive(timeout_millis=30000)
        consumer.acknowledge(msg)
        # The metadata's schema_version bytes (pybind hands them over as a str of code points
        # < 256) and the client's integer reading of them.
        raw = msg.schema_version()
        raw = raw.encode("latin-1") if isinstance(raw, str) else (raw or b"")
        print(json.dumps({
            "schema_version": raw.hex(),
            "int_schema_version": msg._message.int_schema_version(),
            "payload": base64.b64encode(msg.data()).decode(),
        }), flush=True)
    consumer.close()
    client.close()


if __name__ == "__main__":
    main()
