"""JSON record values, parsed and printed exactly as the Rust SDK (serde_json) does.

So a transform gives the same bytes whichever language it is written in:

- :func:`value_of` parses a record's value; a value that is not JSON raises
  :class:`~sluice_sdk.DeadLetter` with serde_json's wording
  (``value is not JSON: expected value at line 1 column 1``).
- Objects are dicts (field order kept; a repeated field keeps its first place and its last
  value), integers that fit 64 bits are ``int``, every other number is ``float`` (parsed as
  serde_json parses it: ``-0`` and integers beyond 64 bits become floats, ``1e400`` is refused),
  NaN/Infinity are refused, as are lone UTF-16 surrogates and nesting deeper than 127.
- :func:`dumps` prints compact JSON with serde_json's escapes and float format (``1.0``,
  ``1e+16``, ``1.5e-7``) as UTF-8 bytes.

Valid input takes the C-accelerated ``json`` module; only input it might treat differently
(errors, surrogate escapes, deep nesting) goes through the exact port of serde_json's parser.
"""

from __future__ import annotations

import json as _json
import math
import re
from typing import Any

from . import DeadLetter, Message

__all__ = ["dumps", "loads", "value_of", "JsonError"]

_U64_MAX = (1 << 64) - 1
_I32_MAX = (1 << 31) - 1
_I32_MIN = -(1 << 31)
_POW10 = [float(f"1e{k}") for k in range(309)]
_MAX_DEPTH = 128


class JsonError(ValueError):
    """Text that serde_json would refuse; the message is serde_json's."""


def value_of(msg: Message) -> Any:
    """The record's value as JSON, or :class:`DeadLetter` ``value is not JSON: …``."""
    if msg.value is None:
        raise DeadLetter("value is not JSON: record has no value")
    try:
        return loads(msg.value)
    except JsonError as error:
        raise DeadLetter(f"value is not JSON: {error}") from None


class _Refused(Exception):
    """Raised inside the fast path: let the exact parser decide (and word the error)."""


def _number(text: str):
    """A number the C scanner found, converted as serde_json converts it."""
    try:
        return _Exact(text.encode("ascii")).value()
    except JsonError:
        raise _Refused from None  # out of range: the exact parser words the error


def _fast_int(text: str):
    digits = text[1:] if text[0] == "-" else text
    if len(digits) > 19:
        return _number(text)  # may be beyond 64 bits: serde_json makes it a float
    significand = int(digits)
    if text[0] != "-":
        return significand if significand <= _U64_MAX else _number(text)
    if significand == 0:
        return -0.0
    return -significand if significand <= 1 << 63 else -float(significand)


def _refuse(text: str):
    raise _Refused  # NaN, Infinity, -Infinity


_DECODER = _json.JSONDecoder(parse_int=_fast_int, parse_float=_number, parse_constant=_refuse)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(data: "bytes | str") -> Any:
    """Parses ``data`` as serde_json's ``from_slice`` would; raises :class:`JsonError`."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Exact(raw).parse()
    # The C scanner accepts lone surrogate escapes and deeper nesting than serde_json.
    if text.count("[") + text.count("{") < _MAX_DEPTH and not _SURROGATE_ESCAPE.search(text):
        try:
            return _DECODER.decode(text)
        except (ValueError, _Refused):
            pass
    return _Exact(raw).parse()


def dumps(value: Any) -> bytes:
    """Compact JSON of ``value`` as serde_json's ``to_vec`` writes it."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts).encode("utf-8")


_encode_string = _json.encoder.encode_basestring  # serde_json's escapes exactly


def _write(value: Any, parts: list) -> None:
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        parts.append(_encode_string(value))
    elif isinstance(value, int):
        parts.append(str(value))
    elif isinstance(value, float):
        parts.append(format_float(value))
    elif isinstance(value, dict):
        parts.append("{")
        first = True
        for key, item in value.items():
            if not first:
                parts.append(",")
            first = False
            parts.append(_encode_string(str(key)))
            parts.append(":")
            _write(item, parts)
        parts.append("}")
    elif isinstance(value, (list, tuple)):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _write(item, parts)
        parts.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def format_float(value: float) -> str:
    """``value`` as serde_json (zmij) prints it: shortest digits, ``1.0``, ``1e+16``,
    ``0.0001``, ``1.5e-7``; NaN and infinities as ``null``."""
    if not math.isfinite(value):
        return "null"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0.0"
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    stripped = digits.lstrip("0")
    point = len(whole) + (int(exponent) if exponent else 0) - (len(digits) - len(stripped))
    digits = stripped.rstrip("0")
    return sign + _layout(digits, point)


def _layout(digits: str, point: int) -> str:
    """serde_json's (zmij's) layout of ``0.digits × 10^point``."""
    length = len(digits)
    if 0 <= point - length and point <= 16:
        return digits + "0" * (point - length) + ".0"
    if 0 < point <= 16:
        return digits[:point] + "." + digits[point:]
    if -5 < point <= 0:
        return "0." + "0" * -point + digits
    if length == 1:
        return f"{digits}e{point - 1:+d}"
    return f"{digits[0]}.{digits[1:]}e{point - 1:+d}"


# --- an exact port of serde_json's parser (1.0.154, SliceRead, Value) --------------------

_WS = b" \n\t\r"
_DIGITS = b"0123456789"
_ESCAPES = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\x08",
    ord("f"): b"\x0c",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}


def _overflows(significand: int, digit: int, limit: int) -> bool:
    return significand >= limit // 10 and (significand > limit // 10 or digit > limit % 10)


class _Exact:
    def __init__(self, data: bytes) -> None:
        self.s = data
        self.i = 0
        self.depth = _MAX_DEPTH

    # Positions: `error` after the byte just read, `peek_error` after the byte peeked.
    def _at(self, index: int, code: str) -> JsonError:
        start = self.s.rfind(b"\n", 0, index) + 1
        line = 1 + self.s.count(b"\n", 0, start)
        return JsonError(f"{code} at line {line} column {index - start}")

    def error(self, code: str) -> JsonError:
        return self._at(self.i, code)

    def peek_error(self, code: str) -> JsonError:
        return self._at(min(len(self.s), self.i + 1), code)

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else None

    def peek_or_null(self) -> int:
        return self.s[self.i] if self.i < len(self.s) else 0

    def next(self):
        if self.i < len(self.s):
            self.i += 1
            return self.s[self.i - 1]
        return None

    def whitespace(self):
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i] in _WS:
            self.i += 1
        return s[self.i] if self.i < n else None

    def parse(self) -> Any:
        value = self.value()
        if self.whitespace() is not None:
            raise self.peek_error("trailing characters")
        return value

    def value(self) -> Any:
        c = self.whitespace()
        if c is None:
            raise self.peek_error("EOF while parsing a value")
        if c == 0x6E:  # n
            self.i += 1
            self.ident(b"ull")
            return None
        if c == 0x74:  # t
            self.i += 1
            self.ident(b"rue")
            return True
        if c == 0x66:  # f
            self.i += 1
            self.ident(b"alse")
            return False
        if c == 0x2D:  # -
            self.i += 1
            return self.integer(False)
        if c in _DIGITS:
            return self.integer(True)
        if c == 0x22:  # "
            self.i += 1
            return self.string()
        if c == 0x5B or c == 0x7B:  # [ {
            self.depth -= 1
            if self.depth == 0:
                raise self.peek_error("recursion limit exceeded")
            self.i += 1
            result = self.seq() if c == 0x5B else self.map()
            self.depth += 1
            self.i += 1  # the closing bracket seen by seq() / map()
            return result
        raise self.peek_error("expected value")

    def ident(self, rest: bytes) -> None:
        for expected in rest:
            c = self.next()
            if c is None:
                raise self.error("EOF while parsing a value")
            if c != expected:
                raise self.error("expected ident")

    def seq(self) -> list:
        items = []
        first = True
        while True:
            c = self.whitespace()
            if c is None:
                raise self.peek_error("EOF while parsing a list")
            if c == 0x5D:  # ]
                return items
            if first:
                first = False
            elif c == 0x2C:  # ,
                self.i += 1
                c = self.whitespace()
                if c == 0x5D:
                    raise self.peek_error("trailing comma")
                if c is None:
                    raise self.peek_error("EOF while parsing a value")
            else:
                raise self.peek_error("expected `,` or `]`")
            items.append(self.value())

    def map(self) -> dict:
        fields: dict = {}
        first = True
        while True:
            c = self.whitespace()
            if c is None:
                raise self.peek_error("EOF while parsing an object")
            if c == 0x7D:  # }
                return fields
            if first:
                first = False
                if c != 0x22:
                    raise self.peek_error("key must be a string")
            elif c == 0x2C:
                self.i += 1
                c = self.whitespace()
                if c == 0x7D:
                    raise self.peek_error("trailing comma")
                if c is None:
                    raise self.peek_error("EOF while parsing a value")
                if c != 0x22:
                    raise self.peek_error("key must be a string")
            else:
                raise self.peek_error("expected `,` or `}`")
            self.i += 1
            key = self.string()
            c = self.whitespace()
            if c is None:
                raise self.peek_error("EOF while parsing an object")
            if c != 0x3A:  # :
                raise self.peek_error("expected `:`")
            self.i += 1
            fields[key] = self.value()

    # -- numbers --

    def integer(self, positive: bool):
        c = self.next()
        if c is None:
            raise self.error("EOF while parsing a value")
        if c == 0x30:  # 0
            if self.peek_or_null() in _DIGITS:
                raise self.peek_error("invalid number")
            return self.number(positive, 0)
        if c in _DIGITS and c != 0x30:
            significand = c - 0x30
            while True:
                c = self.peek_or_null()
                if c not in _DIGITS or c == 0:
                    return self.number(positive, significand)
                digit = c - 0x30
                if _overflows(significand, digit, _U64_MAX):
                    return self.long_integer(positive, significand)
                self.i += 1
                significand = significand * 10 + digit
        raise self.error("invalid number")

    def number(self, positive: bool, significand: int):
        c = self.peek_or_null()
        if c == 0x2E:  # .
            return self.decimal(positive, significand, 0)
        if c in (0x65, 0x45):  # e E
            return self.exponent(positive, significand, 0)
        if positive:
            return significand
        if significand == 0:
            return -0.0
        return -significand if significand <= 1 << 63 else -float(significand)

    def decimal(self, positive: bool, significand: int, exponent_before: int) -> float:
        self.i += 1
        exponent_after = 0
        while True:
            c = self.peek_or_null()
            if c not in _DIGITS or c == 0:
                break
            digit = c - 0x30
            if _overflows(significand, digit, _U64_MAX):
                return self.decimal_overflow(positive, significand, exponent_before + exponent_after)
            self.i += 1
            significand = significand * 10 + digit
            exponent_after -= 1
        if exponent_after == 0:
            if self.peek() is not None:
                raise self.peek_error("invalid number")
            raise self.peek_error("EOF while parsing a value")
        exponent = exponent_before + exponent_after
        if self.peek_or_null() in (0x65, 0x45):
            return self.exponent(positive, significand, exponent)
        return self.f64_from_parts(positive, significand, exponent)

    def exponent(self, positive: bool, significand: int, starting: int) -> float:
        self.i += 1
        positive_exp = True
        c = self.peek_or_null()
        if c == 0x2B:  # +
            self.i += 1
        elif c == 0x2D:  # -
            self.i += 1
            positive_exp = False
        c = self.next()
        if c is None:
            raise self.error("EOF while parsing a value")
        if c not in _DIGITS:
            raise self.error("invalid number")
        exp = c - 0x30
        while True:
            c = self.peek_or_null()
            if c not in _DIGITS or c == 0:
                break
            self.i += 1
            digit = c - 0x30
            if _overflows(exp, digit, _I32_MAX):
                return self.exponent_overflow(positive, significand == 0, positive_exp)
            exp = exp * 10 + digit
        final = starting + exp if positive_exp else starting - exp
        final = max(_I32_MIN, min(_I32_MAX, final))
        return self.f64_from_parts(positive, significand, final)

    def exponent_overflow(self, positive: bool, zero_significand: bool, positive_exp: bool):
        if not zero_significand and positive_exp:
            raise self.error("number out of range")
        while self.peek_or_null() in _DIGITS and self.peek_or_null() != 0:
            self.i += 1
        return 0.0 if positive else -0.0

    def long_integer(self, positive: bool, significand: int) -> float:
        exponent = 0
        while True:
            c = self.peek_or_null()
            if c in _DIGITS and c != 0:
                self.i += 1
                exponent += 1
            elif c == 0x2E:
                return self.decimal(positive, significand, exponent)
            elif c in (0x65, 0x45):
                return self.exponent(positive, significand, exponent)
            else:
                return self.f64_from_parts(positive, significand, exponent)

    def decimal_overflow(self, positive: bool, significand: int, exponent: int) -> float:
        while self.peek_or_null() in _DIGITS and self.peek_or_null() != 0:
            self.i += 1
        if self.peek_or_null() in (0x65, 0x45):
            return self.exponent(positive, significand, exponent)
        return self.f64_from_parts(positive, significand, exponent)

    def f64_from_parts(self, positive: bool, significand: int, exponent: int) -> float:
        f = float(significand)
        while True:
            magnitude = abs(exponent)
            if magnitude <= 308:
                if exponent >= 0:
                    f *= _POW10[magnitude]
                    if math.isinf(f):
                        raise self.error("number out of range")
                else:
                    f /= _POW10[magnitude]
                break
            if f == 0.0:
                break
            if exponent >= 0:
                raise self.error("number out of range")
            f /= 1e308
            exponent += 308
        return f if positive else -f

    # -- strings --

    def string(self) -> str:
        s, n = self.s, len(self.s)
        start = self.i
        scratch = None
        while True:
            i = self.i
            while i < n and s[i] != 0x22 and s[i] != 0x5C and s[i] >= 0x20:
                i += 1
            self.i = i
            if i == n:
                raise self.error("EOF while parsing a string")
            c = s[i]
            if c == 0x22:
                if scratch is None:
                    content = s[start:i]
                else:
                    scratch += s[start:i]
                    content = bytes(scratch)
                self.i += 1
                return self.as_str(content)
            if c == 0x5C:
                if scratch is None:
                    scratch = bytearray()
                scratch += s[start:i]
                self.i += 1
                self.escape(scratch)
                start = self.i
            else:
                self.i += 1
                raise self.error("control character (\\u0000-\\u001F) found while parsing a string")

    def as_str(self, content: bytes) -> str:
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError as error:
            start = self.s.rfind(b"\n", 0, self.i) + 1
            line = 1 + self.s.count(b"\n", 0, start)
            column = max(0, self.i - start - (len(content) - error.start))
            raise JsonError(f"invalid unicode code point at line {line} column {column}") from None

    def escape(self, scratch: bytearray) -> None:
        c = self.next()
        if c is None:
            raise self.error("EOF while parsing a string")
        simple = _ESCAPES.get(c)
        if simple is not None:
            scratch += simple
        elif c == 0x75:  # u
            self.unicode_escape(scratch)
        else:
            raise self.error("invalid escape")

    def hex4(self) -> int:
        if len(self.s) - self.i < 4:
            self.i = len(self.s)
            raise self.error("EOF while parsing a string")
        digits = self.s[self.i : self.i + 4]
        self.i += 4
        try:
            if not all(d in b"0123456789abcdefABCDEF" for d in digits):
                raise ValueError
            return int(digits, 16)
        except ValueError:
            raise self.error("invalid escape") from None

    def peek_or_eof(self) -> int:
        c = self.peek()
        if c is None:
            raise self.error("EOF while parsing a string")
        return c

    def unicode_escape(self, scratch: bytearray) -> None:
        n = self.hex4()
        if 0xDC00 <= n <= 0xDFFF:
            raise self.error("lone leading surrogate in hex escape")
        if n < 0xD800 or n > 0xDBFF:
            scratch += chr(n).encode("utf-8")
            return
        for expected in (0x5C, 0x75):  # \ u
            if self.peek_or_eof() != expected:
                self.i += 1
                raise self.error("unexpected end of hex escape")
            self.i += 1
        n2 = self.hex4()
        if n2 < 0xDC00 or n2 > 0xDFFF:
            raise self.error("lone leading surrogate in hex escape")
        scratch += chr((((n - 0xD800) << 10) | (n2 - 0xDC00)) + 0x10000).encode("utf-8")
