"""Keys JSON events by a field and gives them the event time another field holds, so the
host's windows count them per key per minute (sluice.toml; docs/windows.md).

The Python twin of examples/windowed-count (Rust): same config, same outputs.

Config: ``key_field`` (dotted path, default ``user``) and ``time_field`` (dotted path to epoch
milliseconds, default ``ts``). A record that is not JSON, lacks either field, or whose time is
not an integer is dead-lettered.
"""

import sluice_sdk as sluice
from sluice_sdk import json


def _path(config: sluice.Config, key: str, default: str) -> list:
    path = config.get(key) or default
    segments = path.split(".")
    if not all(segments):
        raise sluice.Fatal(f"invalid config {sluice.quoted(key)}: empty segment in {path!r}")
    return segments


def _find(document, segments: list):
    for segment in segments:
        if not isinstance(document, dict) or segment not in document:
            raise sluice.DeadLetter(f"no field {sluice.quoted('.'.join(segments))}")
        document = document[segment]
    return document


def setup(config: sluice.Config) -> None:
    """Refuses a malformed field path."""
    _path(config, "key_field", "user")
    _path(config, "time_field", "ts")


@sluice.transform(init=setup)
def on_message(msg: sluice.Message, out: sluice.Writer) -> None:
    """Writes the record with its key and event time taken from its JSON value."""
    config = sluice.config()
    document = json.value_of(msg)
    key = _find(document, _path(config, "key_field", "user"))
    time = _find(document, _path(config, "time_field", "ts"))
    if isinstance(time, bool) or not isinstance(time, int):
        raise sluice.DeadLetter(f"{sluice.quoted(config.get('time_field') or 'ts')} is not epoch ms")
    key_text = key if isinstance(key, str) else json.dumps(key)
    out.write(msg.into_output().with_key(key_text).with_timestamp_ms(time))
