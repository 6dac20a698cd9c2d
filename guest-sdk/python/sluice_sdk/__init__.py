"""Write Sluice transforms in Python: one function per record.

A transform is a WebAssembly component implementing the world
``sluice:transform/transformer@0.2.0`` (``wit/world.wit``), built with ``componentize-py``.
This module hides the batch ABI (one flat byte buffer each way, docs/flat-batch-abi.md), as the
Rust SDK does: you write a function that receives each
input record as a :class:`Message` and writes zero or more :class:`Output` s into a
:class:`Writer`, and decorate it with :func:`transform`::

    import sluice_sdk as sluice

    @sluice.transform
    def on_message(msg: sluice.Message, out: sluice.Writer) -> None:
        if msg.value is None:
            raise sluice.Skip("tombstone")
        out.write(msg.into_output().with_header("validated-by", "tagger"))

Raising decides what happens to the record (whatever was written is discarded):

- :class:`Skip` drops it (counted, acknowledged at the source);
- :class:`DeadLetter` sends the original to the dead-letter topic with the reason;
- :class:`Fatal` stops the pipeline (the record is redelivered later);
- any other exception dead-letters it with ``str(exception)``.

The pipeline's ``config = { ... }`` table arrives once, before any record: :func:`config`
returns it from anywhere, and ``@transform(init=setup)`` runs ``setup(config)`` first, where
an exception refuses the configuration. The decorated function stays an ordinary function,
so tests call it directly (see :mod:`sluice_sdk.testing`). :mod:`sluice_sdk.json` parses and
prints JSON exactly as the Rust SDK (serde_json) does.
"""

from __future__ import annotations

import sys
from typing import Callable, Iterable, Iterator, Optional

__all__ = [
    "Config",
    "DeadLetter",
    "Fatal",
    "Header",
    "Message",
    "Output",
    "Skip",
    "SourceInfo",
    "State",
    "TransformError",
    "Writer",
    "config",
    "log",
    "quoted",
    "transform",
]

# Characters Rust's `str::trim` removes (Unicode White_Space), so config lists split the same
# way in every language.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _bytes(value: "bytes | bytearray | str") -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


class Header:
    """One record header: a name and raw bytes (text is UTF-8)."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: "bytes | str") -> None:
        self.name = name
        self.value = _bytes(value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Header) and (self.name, self.value) == (other.name, other.value)

    def __repr__(self) -> str:
        return f"Header({self.name!r}, {self.value!r})"


class SourceInfo:
    """Where a record came from: ``kind`` is ``"pulsar"``, ``"gcp-pubsub"`` or ``"other"``."""

    __slots__ = ("kind", "topic", "message_id")

    def __init__(self, kind: str = "other", topic: str = "", message_id: str = "") -> None:
        self.kind = kind
        self.topic = topic
        self.message_id = message_id


def _first_header(headers: list, name: str) -> Optional[bytes]:
    for header in headers:
        if header.name == name:
            return header.value
    return None


class Message:
    """An input record. ``key``/``value`` are bytes or None; times are ms since the epoch."""

    __slots__ = ("key", "value", "headers", "event_time_ms", "publish_time_ms", "source", "_index")

    def __init__(
        self,
        value: "bytes | str | None" = None,
        *,
        key: "bytes | str | None" = None,
        headers: Iterable[Header] = (),
        event_time_ms: Optional[int] = None,
        publish_time_ms: Optional[int] = None,
        source: Optional[SourceInfo] = None,
    ) -> None:
        self.value = None if value is None else _bytes(value)
        self.key = None if key is None else _bytes(key)
        self.headers = list(headers)
        self.event_time_ms = event_time_ms
        self.publish_time_ms = publish_time_ms
        self.source = source or SourceInfo()

    @property
    def state(self) -> "State":
        """The keyed state of this record's key (docs/state.md)."""
        return State(self)

    def with_header(self, name: str, value: "bytes | str") -> "Message":
        """This message with one more header (for tests)."""
        self.headers.append(Header(name, value))
        return self

    def header(self, name: str) -> Optional[bytes]:
        """The value of the first header called ``name``."""
        return _first_header(self.headers, name)

    def into_output(self) -> "Output":
        """An output with this message's key, value and headers; no timestamp (the host picks
        one) and no topic (the pipeline's sink topic)."""
        return Output(key=self.key, value=self.value, headers=self.headers)


class Output:
    """A record to write. The ``with_*`` methods change it and return it, for chaining."""

    __slots__ = ("key", "value", "headers", "timestamp_ms", "topic")

    def __init__(
        self,
        value: "bytes | str | None" = None,
        *,
        key: "bytes | str | None" = None,
        headers: Iterable[Header] = (),
        timestamp_ms: Optional[int] = None,
        topic: Optional[str] = None,
    ) -> None:
        self.value = None if value is None else _bytes(value)
        self.key = None if key is None else _bytes(key)
        self.headers = list(headers)
        self.timestamp_ms = timestamp_ms
        self.topic = topic

    def with_key(self, key: "bytes | str | None") -> "Output":
        self.key = None if key is None else _bytes(key)
        return self

    def with_value(self, value: "bytes | str | None") -> "Output":
        self.value = None if value is None else _bytes(value)
        return self

    def with_header(self, name: str, value: "bytes | str") -> "Output":
        """One more header, after the existing ones."""
        self.headers.append(Header(name, value))
        return self

    def with_timestamp_ms(self, timestamp_ms: Optional[int]) -> "Output":
        self.timestamp_ms = timestamp_ms
        return self

    def to_topic(self, topic: Optional[str]) -> "Output":
        """Routes the output to ``topic`` instead of the pipeline's sink topic."""
        self.topic = topic
        return self

    def header(self, name: str) -> Optional[bytes]:
        """The value of the first header called ``name``."""
        return _first_header(self.headers, name)


class Writer:
    """Collects the outputs of one input record."""

    __slots__ = ("outputs",)

    def __init__(self) -> None:
        self.outputs: list[Output] = []

    def write(self, output: "Output | Message") -> None:
        """Writes one output (a :class:`Message` is written unchanged)."""
        self.outputs.append(output.into_output() if isinstance(output, Message) else output)

    def write_to(self, topic: str, output: "Output | Message") -> None:
        """Writes one output routed to ``topic``."""
        self.write(output)
        self.outputs[-1].topic = topic

    def __len__(self) -> int:
        return len(self.outputs)


class TransformError(Exception):
    """Base of :class:`Skip`, :class:`DeadLetter` and :class:`Fatal`; ``reason`` is the text."""

    kind = "dead-letter"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Skip(TransformError):
    """Drop the record on purpose; the host counts it and acknowledges the source."""

    kind = "skip"


class DeadLetter(TransformError):
    """Send the original record to the dead-letter topic with this reason."""

    kind = "dead-letter"


class Fatal(TransformError):
    """Stop the pipeline; the record is not acknowledged and will be redelivered."""

    kind = "fatal"


class Config:
    """The ``config`` table of the pipeline's transform entry, in the order received."""

    __slots__ = ("entries",)

    def __init__(self, pairs: Iterable[tuple] = ()) -> None:
        self.entries = [(str(k), str(v)) for k, v in pairs]

    def get(self, key: str) -> Optional[str]:
        """The value of ``key`` (the last one if repeated), or None."""
        for name, value in reversed(self.entries):
            if name == key:
                return value
        return None

    def require(self, key: str) -> str:
        """The value of ``key``; raises :class:`Fatal` ``missing config key "<key>"``."""
        value = self.get(key)
        if value is None:
            raise Fatal(f"missing config key {quoted(key)}")
        return value

    def get_list(self, key: str) -> list[str]:
        """The value split at commas, items trimmed, empty ones dropped: ``"a, b,,c "`` gives
        ``["a", "b", "c"]``; empty when unset."""
        value = self.get(key)
        if value is None:
            return []
        items = (item.strip(_WHITESPACE) for item in value.split(","))
        return [item for item in items if item]

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def quoted(text: str) -> str:
    """``text`` in double quotes with ``"`` and ``\\`` escaped, as Rust's ``{:?}`` does for
    plain text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_active_config = Config()


def config() -> Config:
    """The configuration given to ``init`` (empty before it, and in native tests unless
    :func:`sluice_sdk.testing.with_config` set one)."""
    return _active_config


def _set_config(new: Config) -> Config:
    global _active_config
    previous, _active_config = _active_config, new
    return previous


# --- logging -------------------------------------------------------------------------------

try:  # Inside a component: the host's `log` import. Natively (tests): stderr.
    from wit_world.imports import host as _host
    from wit_world.imports import types as _types

    _LEVELS = {
        "trace": _types.LogLevel.TRACE,
        "debug": _types.LogLevel.DEBUG,
        "info": _types.LogLevel.INFO,
        "warn": _types.LogLevel.WARN,
        "error": _types.LogLevel.ERROR,
    }

    def _log(level: str, message: str) -> None:
        _host.log(_LEVELS[level], message)

except ImportError:
    _types = None

    def _log(level: str, message: str) -> None:
        print(f"[{level}] {message}", file=sys.stderr)


class _Log:
    """``sluice_sdk.log.info("...")`` and friends: lines in the host's log, rate-limited."""

    @staticmethod
    def trace(message: str) -> None:
        _log("trace", message)

    @staticmethod
    def debug(message: str) -> None:
        _log("debug", message)

    @staticmethod
    def info(message: str) -> None:
        _log("info", message)

    @staticmethod
    def warn(message: str) -> None:
        _log("warn", message)

    @staticmethod
    def error(message: str) -> None:
        _log("error", message)


log = _Log()


# --- keyed state ---------------------------------------------------------------------------

try:  # Inside a component: the host's `state` import. Natively (tests): a dict.
    from wit_world.imports import state as _state_import
except ImportError:  # pragma: no cover - depends on where it runs
    _state_import = None

# (record key, name) -> value, for native tests; ``sluice_sdk.testing.clear_state()`` empties it.
_native_state: dict = {}


class State:
    """The keyed state of one record's key (docs/state.md): ``name -> bytes`` entries the host
    keeps durable and restores after a restart. From :attr:`Message.state`."""

    __slots__ = ("_message",)

    def __init__(self, message: "Message") -> None:
        self._message = message

    def _index(self) -> Optional[int]:
        return getattr(self._message, "_index", None)

    def _native_id(self, name: "bytes | str") -> Optional[tuple]:
        key = self._message.key
        return None if key is None else (bytes(key), _bytes(name))

    def get(self, name: "bytes | str") -> Optional[bytes]:
        """The value stored under ``name`` for this record's key, or None."""
        index = self._index()
        if _state_import is not None and index is not None:
            value = _state_import.get(index, _bytes(name))
            return None if value is None else bytes(value)
        entry = self._native_id(name)
        return None if entry is None else _native_state.get(entry)

    def set(self, name: "bytes | str", value: "bytes | str") -> None:
        """Stores ``value`` under ``name`` for this record's key. Raises :class:`DeadLetter`
        when the host refuses it (a state quota: the record is dead-lettered anyway)."""
        index = self._index()
        if _state_import is not None and index is not None:
            try:
                _state_import.set(index, _bytes(name), _bytes(value))
            except Exception as error:  # noqa: BLE001 - the host's refusal (an Err)
                raise DeadLetter(str(getattr(error, "value", error)))
            return
        entry = self._native_id(name)
        if entry is None:
            raise DeadLetter("the record has no key: keyed state needs one")
        _native_state[entry] = _bytes(value)

    def delete(self, name: "bytes | str") -> None:
        """Removes what is stored under ``name`` for this record's key."""
        index = self._index()
        if _state_import is not None and index is not None:
            _state_import.delete(index, _bytes(name))
            return
        entry = self._native_id(name)
        if entry is not None:
            _native_state.pop(entry, None)

    def get_int(self, name: "bytes | str") -> Optional[int]:
        """A number stored with :meth:`set_int` (8 bytes, little-endian, as the Rust SDK's
        ``set_u64``)."""
        value = self.get(name)
        return None if value is None or len(value) != 8 else int.from_bytes(value, "little")

    def set_int(self, name: "bytes | str", value: int) -> None:
        """Stores a non-negative number below 2**64 under ``name``."""
        self.set(name, int(value).to_bytes(8, "little"))


# --- the component's exports ---------------------------------------------------------------

_handler: Optional[Callable[[Message, Writer], None]] = None
_setup: Optional[Callable[[Config], None]] = None


def transform(function=None, *, init: Optional[Callable[[Config], None]] = None):
    """Makes ``function(msg, out)`` the transform of this component, with the optional
    ``init(config)`` hook. Use as ``@transform`` or ``@transform(init=setup)``.

    It also puts the class componentize-py looks for (``WitWorld``, the world's exports) into
    the decorated function's module, so the module is the component's app."""

    def register(handler):
        global _handler, _setup
        _handler, _setup = handler, init
        module = sys.modules.get(handler.__module__)
        if module is not None:
            module.WitWorld = WitWorld
        return handler

    return register if function is None else register(function)


def _error_reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


class WitWorld:
    """The exports of the world ``transformer`` (``init`` and ``transform-batch``), calling
    the function registered with :func:`transform` once per record."""

    def init(self, config_pairs):
        from componentize_py_types import Err

        config = Config(config_pairs)
        _set_config(config)
        if _setup is not None:
            try:
                _setup(config)
            except Exception as error:  # noqa: BLE001 - any failure refuses the config
                raise Err(_error_reason(error))

    def transform_batch(self, batch: bytes) -> bytes:
        """Reads the flat input batch, runs the function once per record and returns the flat
        result batch: one result per record, in order (docs/flat-batch-abi.md)."""
        if _handler is None:
            raise RuntimeError("no function registered with @sluice_sdk.transform")
        handler = _handler
        messages = _flat.decode_batch(batch)
        results = _flat.ResultWriter(len(messages))
        for index, message in enumerate(messages):
            message._index = index
            # The objects the batch gave: an output holding them refers to the input.
            key, value = message.key, message.value
            writer = Writer()
            try:
                handler(message, writer)
            except TransformError as error:
                results.error(error.kind, str(error.reason))
                continue
            except Exception as error:  # noqa: BLE001 - dead-letters, as the Rust SDK does
                results.error("dead-letter", _error_reason(error))
                continue
            results.outputs(message, key, value, writer.outputs)
        return results.finish()


# Last: the layout module builds on the classes above.
from . import _flat  # noqa: E402
