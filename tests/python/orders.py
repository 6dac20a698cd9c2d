"""The orders the schema tests' Pulsar producers send (pulsar_produce.py, pulsar_send.py): the
Avro record in two compatible versions and the Protobuf message class of a descriptor set."""
from pulsar.schema import Double, Integer, Record, String


def order_v1():
    class Order(Record):
        _avro_namespace = "shop"
        id = String(required=True)
        email = String()
        qty = Integer()
        price = Double()
    return Order


def order_v2():
    # Same record name, one more optional field: a compatible change.
    class Order(Record):
        _avro_namespace = "shop"
        id = String(required=True)
        email = String()
        qty = Integer()
        price = Double()
        note = String(default=None, required_default=True)
    return Order


def protobuf_class(descriptor_set, name):
    """The message class `name` of the FileDescriptorSet file `descriptor_set`."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    with open(descriptor_set, "rb") as f:
        files = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
