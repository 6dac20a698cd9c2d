"""Helpers for native unit tests of a transform (plain ``python``, no component)."""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

from . import Config, _native_state, _set_config


@contextlib.contextmanager
def with_config(pairs: "Iterable[tuple] | dict") -> Iterator[Config]:
    """Makes ``pairs`` the active :func:`sluice_sdk.config` inside the ``with`` block."""
    config = Config(pairs.items() if isinstance(pairs, dict) else pairs)
    previous = _set_config(config)
    try:
        yield config
    finally:
        _set_config(previous)


def clear_state() -> None:
    """Empties the keyed state native runs keep (:attr:`sluice_sdk.Message.state`)."""
    _native_state.clear()
