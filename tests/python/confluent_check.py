"""Decodes Confluent-framed values with confluent-kafka's own deserializers, pointed at the
registry's Confluent API, and prints each decoded value as one JSON line.

usage: confluent_check.py REGISTRY_URL < records.jsonl
input lines: {"format": "avro"|"protobuf"|"json", "topic": T, "value": base64,
              "descriptor_set": path (protobuf), "message": full name (protobuf)}
"""
import base64
import json
import sys

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def protobuf_class(descriptor_set, message):
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    files = descriptor_pb2.FileDescriptorSet.FromString(open(descriptor_set, "rb").read())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(message))


def main():
    client = SchemaRegistryClient({"url": sys.argv[1]})
    avro = AvroDeserializer(client)
    json_deserializer = JSONDeserializer(None, schema_registry_client=client)
    for line in sys.stdin:
        record = json.loads(line)
        data = base64.b64decode(record["value"])
        ctx = SerializationContext(record["topic"], MessageField.VALUE)
        if record["format"] == "avro":
            value = avro(data, ctx)
        elif record["format"] == "json":
            value = json_deserializer(data, ctx)
        else:
            from google.protobuf import json_format
            cls = protobuf_class(record["descriptor_set"], record["message"])
            deserializer = ProtobufDeserializer(cls, {"use.deprecated.format": False})
            message = deserializer(data, ctx)
            value = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
        print(json.dumps(value, default=str, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
