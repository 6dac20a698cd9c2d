"""The flat batch layout of ``sluice:transform@0.2.0`` (docs/flat-batch-abi.md), read and
written in Python: the host sends a batch as one ``bytes`` and takes the results back as one.

Not a public API. The input batch is read in place with ``struct.unpack_from`` (no copy of the
buffer); a message's key and value are ``bytes`` sliced from it (``bytes`` is what authors get
and compare), its headers and source are made only when the author reads them. An output that
keeps its input's key, value or headers (the same objects: ``bytes`` cannot change) sends a
one-byte reference instead of the bytes.
"""

from __future__ import annotations

import struct

from . import Header, Message, Output, SourceInfo

LAYOUT_VERSION = 1

_BATCH_HEADER = struct.Struct("<HHII")  # version, reserved, record_count, source_count
_RESULTS_HEADER = struct.Struct("<HHI")  # version, reserved, result_count
_U32 = struct.Struct("<I")
_U32_PAIR = struct.Struct("<II")  # a record's source index and its message id's length
_I64 = struct.Struct("<q")

# Bits of a record's `present` byte.
_KEY, _VALUE, _EVENT_TIME, _PUBLISH_TIME = 1, 2, 4, 8

_SOURCE_KINDS = {0: "pulsar", 1: "gcp-pubsub", 2: "other"}

# Result tags, field modes and header modes.
_OUTPUTS, _SKIP, _DEAD_LETTER, _FATAL = 0, 1, 2, 3
_ERROR_TAGS = {"skip": _SKIP, "dead-letter": _DEAD_LETTER, "fatal": _FATAL}
_ABSENT, _INLINE, _FROM_INPUT = b"\x00", b"\x01", b"\x02"
_HEADERS_INLINE, _HEADERS_INPUT_THEN_INLINE = b"\x00", b"\x01"
_NO_TIMESTAMP_NO_TOPIC = b"\x00\x00"

# The output nearly every identity-like transform writes: key and value forwarded, no
# timestamp, no topic, the input's headers and none added. Written as one piece.
_FORWARD_ALL = _FROM_INPUT + _FROM_INPUT + _NO_TIMESTAMP_NO_TOPIC + _HEADERS_INPUT_THEN_INLINE
_FORWARD_ALL += _U32.pack(0)
_ONE_OUTPUT = bytes([_OUTPUTS]) + _U32.pack(1)


class MalformedBatch(Exception):
    """The host sent a batch that breaks the layout: a host bug; raising traps the batch."""


def _headers(batch: bytes, at: int, count: int) -> list:
    """The ``count`` headers encoded at ``batch[at:]``, as :class:`Header` s."""
    headers = []
    unpack = _U32.unpack_from
    for _ in range(count):
        (length,) = unpack(batch, at)
        at += 4
        name = batch[at : at + length].decode()
        at += length
        (length,) = unpack(batch, at)
        at += 4
        header = Header.__new__(Header)
        header.name = name
        header.value = batch[at : at + length]
        at += length
        headers.append(header)
    return headers


def _find_header(batch: bytes, at: int, count: int, name: str):
    """The value of the first of the ``count`` headers at ``batch[at:]`` called ``name``,
    read in place (no :class:`Header` made)."""
    wanted = name.encode()
    size = len(wanted)
    unpack = _U32.unpack_from
    for _ in range(count):
        (length,) = unpack(batch, at)
        at += 4
        found = length == size and batch.startswith(wanted, at)
        at += length
        (length,) = unpack(batch, at)
        at += 4
        if found:
            return batch[at : at + length]
        at += length
    return None


# Message's `headers` slot: reading it through its descriptor tells whether the headers were
# ever made, without the lazy `__getattr__` below making them.
_MESSAGE_HEADERS = Message.__dict__["headers"]


class _Batch:
    """The batch's bytes and its source table, shared by its messages."""

    __slots__ = ("data", "sources")

    def __init__(self, data: bytes, sources: list) -> None:
        self.data = data
        self.sources = sources


def _layout(data: bytes, at: int) -> tuple:
    """The record at ``data[at:]`` read again: its source index, where its message id starts
    and ends, where its headers start and how many there are."""
    source, length = _U32_PAIR.unpack_from(data, at)
    id_at = at + 8
    at = id_at + length
    present = data[at]
    at += 1 + (8 if present & _EVENT_TIME else 0) + (8 if present & _PUBLISH_TIME else 0)
    if present & _KEY:
        at += 4 + _U32.unpack_from(data, at)[0]
    if present & _VALUE:
        at += 4 + _U32.unpack_from(data, at)[0]
    return source, id_at, id_at + length, at + 4, _U32.unpack_from(data, at)[0]


def _input_headers(message: "_BatchMessage") -> tuple:
    """The batch's bytes, where ``message``'s headers start and how many there are."""
    data = message._batch.data
    _, _, _, headers_at, count = _layout(data, message._at)
    return data, headers_at, count


class _BatchMessage(Message):
    """A message read from the batch: its batch and the offset of its record there. Key, value
    and times are set when read; ``headers`` and ``source`` are made on first access
    (``__getattr__`` runs only while their slots are empty), then are plain attributes, as
    on any :class:`Message`."""

    __slots__ = ("_batch", "_at")

    def __getattr__(self, name: str):
        if name == "headers":
            headers = _headers(*_input_headers(self))
            self.headers = headers
            return headers
        if name == "source":
            batch = self._batch
            source, id_at, id_end, _, _ = _layout(batch.data, self._at)
            kind, topic = batch.sources[source]
            info = SourceInfo(kind, topic, batch.data[id_at:id_end].decode())
            self.source = info
            return info
        raise AttributeError(f"'Message' object has no attribute {name!r}")

    def header(self, name: str):
        try:
            _MESSAGE_HEADERS.__get__(self, _BatchMessage)
        except AttributeError:
            return _find_header(*_input_headers(self), name)
        return Message.header(self, name)

    def into_output(self) -> Output:
        try:
            headers = _MESSAGE_HEADERS.__get__(self, _BatchMessage)
        except AttributeError:
            # Never read: still the input's, so the output can refer to them.
            output = _ForwardedOutput.__new__(_ForwardedOutput)
            output.key = self.key
            output.value = self.value
            output.timestamp_ms = None
            output.topic = None
            output._input = self
            output._added = _NONE_ADDED
            return output
        return Output(key=self.key, value=self.value, headers=headers)


# `_added` of a forwarded output to which nothing was added (shared: no list per output).
_NONE_ADDED = ()


class _ForwardedOutput(Output):
    """An output made by ``into_output`` from a batch message whose headers nobody read: it
    carries the input's headers by reference plus those added with ``with_header``, until
    someone reads or replaces ``headers`` (then they are a plain list, sent in full)."""

    __slots__ = ("_input", "_added", "_headers")

    @property
    def headers(self) -> list:
        added = self._added
        if added is None:
            return self._headers
        headers = _headers(*_input_headers(self._input)) + list(added)
        self._headers, self._added = headers, None
        return headers

    @headers.setter
    def headers(self, headers: list) -> None:
        self._headers, self._added = headers, None

    def with_header(self, name: str, value: "bytes | str") -> "Output":
        added = self._added
        if added is None:
            self._headers.append(Header(name, value))
        elif added is _NONE_ADDED:
            self._added = [Header(name, value)]
        else:
            added.append(Header(name, value))
        return self

    def header(self, name: str):
        if self._added is None:
            return Output.header(self, name)
        found = _find_header(*_input_headers(self._input), name)
        if found is not None:
            return found
        for header in self._added:
            if header.name == name:
                return header.value
        return None


def decode_batch(batch: bytes) -> list:
    """The batch's records as :class:`Message` s, in order."""
    if len(batch) < _BATCH_HEADER.size:
        raise MalformedBatch(f"batch of {len(batch)} bytes has no header")
    version, _, record_count, source_count = _BATCH_HEADER.unpack_from(batch, 0)
    if version != LAYOUT_VERSION:
        raise MalformedBatch(f"batch layout version {version}, this SDK reads {LAYOUT_VERSION}")
    at = _BATCH_HEADER.size
    u32 = _U32.unpack_from
    sources = []
    for _ in range(source_count):
        kind = batch[at]
        (length,) = u32(batch, at + 1)
        at += 5
        sources.append((_SOURCE_KINDS.get(kind, "other"), batch[at : at + length].decode()))
        at += length
    shared = _Batch(batch, sources)
    i64 = _I64.unpack_from
    new = _BatchMessage.__new__
    messages = []
    append = messages.append
    for _ in range(record_count):
        message = new(_BatchMessage)
        message._batch = shared
        message._at = at
        at += 8 + u32(batch, at + 4)[0]
        present = batch[at]
        at += 1
        if present & _EVENT_TIME:
            message.event_time_ms = i64(batch, at)[0]
            at += 8
        else:
            message.event_time_ms = None
        if present & _PUBLISH_TIME:
            message.publish_time_ms = i64(batch, at)[0]
            at += 8
        else:
            message.publish_time_ms = None
        if present & _KEY:
            (length,) = u32(batch, at)
            at += 4
            message.key = batch[at : at + length]
            at += length
        else:
            message.key = None
        if present & _VALUE:
            (length,) = u32(batch, at)
            at += 4
            message.value = batch[at : at + length]
            at += length
        else:
            message.value = None
        (count,) = u32(batch, at)
        at += 4
        # Skip the headers: each is a name and a value, both length-prefixed.
        for _ in range(count):
            at += 4 + u32(batch, at)[0]
            at += 4 + u32(batch, at)[0]
        append(message)
    if at != len(batch):
        raise MalformedBatch(f"{len(batch) - at} bytes after the last record")
    return messages


class ResultWriter:
    """The result batch, written one record's result at a time."""

    __slots__ = ("buffer",)

    def __init__(self, result_count: int) -> None:
        self.buffer = bytearray(_RESULTS_HEADER.pack(LAYOUT_VERSION, 0, result_count))

    def outputs(self, message: Message, key, value, outputs: list) -> None:
        """The outputs of ``message``, whose input key and value were ``key`` and ``value``
        (the objects the batch gave it, whatever the author did to the message since)."""
        buffer = self.buffer
        if len(outputs) == 1:
            output = outputs[0]
            if (
                type(output) is _ForwardedOutput
                and output._input is message
                and output.key is key
                and output.value is value
                and output._added is _NONE_ADDED
                and output.timestamp_ms is None
                and output.topic is None
            ):
                buffer += _ONE_OUTPUT
                buffer += _FORWARD_ALL
                return
            buffer += _ONE_OUTPUT
        else:
            buffer.append(_OUTPUTS)
            buffer += _U32.pack(len(outputs))
        for output in outputs:
            self._output(output, message, key, value)

    def _output(self, output: Output, message: Message, key, value) -> None:
        buffer = self.buffer
        _field(buffer, output.key, key)
        _field(buffer, output.value, value)
        timestamp_ms, topic = output.timestamp_ms, output.topic
        if timestamp_ms is None:
            buffer.append(0)
        else:
            buffer.append(1)
            buffer += _I64.pack(timestamp_ms)
        if topic is None:
            buffer.append(0)
        else:
            buffer.append(1)
            _text(buffer, topic)
        if (
            type(output) is _ForwardedOutput
            and output._input is message
            and output._added is not None
        ):
            buffer += _HEADERS_INPUT_THEN_INLINE
            headers = output._added
        else:
            buffer += _HEADERS_INLINE
            headers = output.headers
        buffer += _U32.pack(len(headers))
        for header in headers:
            _text(buffer, header.name)
            _bytes(buffer, header.value)

    def error(self, kind: str, reason: str) -> None:
        """An error result: ``kind`` is ``skip``, ``dead-letter`` or ``fatal``."""
        self.buffer.append(_ERROR_TAGS.get(kind, _DEAD_LETTER))
        _text(self.buffer, reason)

    def finish(self) -> bytes:
        return bytes(self.buffer)


def _field(buffer: bytearray, field, input_field) -> None:
    if field is None:
        buffer += _ABSENT
    elif field is input_field:
        # The very object the batch gave: `bytes` never change, so the input's bytes it is.
        buffer += _FROM_INPUT
    else:
        buffer += _INLINE
        _bytes(buffer, field)


def _bytes(buffer: bytearray, data) -> None:
    buffer += _U32.pack(len(data))
    buffer += data


def _text(buffer: bytearray, text: str) -> None:
    _bytes(buffer, text.encode())
