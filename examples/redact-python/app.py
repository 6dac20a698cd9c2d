"""Masks named fields of JSON records, at any depth, and says how many it masked.

The Python twin of examples/redact (Rust): same config, byte-identical outputs.

Config: ``fields`` (comma-separated field names, matched in nested objects and inside arrays)
and ``mask`` (default ``***``). Every matching field's value, whatever its JSON type, becomes
the mask string. The output keeps the key and headers, carries the compact re-serialized JSON
(field order kept) and adds header ``sluice-redacted`` with the count. Records that are not
JSON are dead-lettered.
"""

import sluice_sdk as sluice
from sluice_sdk import json

#: Header carrying how many fields were masked, as decimal text.
REDACTED_HEADER = "sluice-redacted"
DEFAULT_MASK = "***"


class Redaction:
    """The parsed ``fields`` and ``mask`` settings."""

    def __init__(self, config: sluice.Config) -> None:
        config.require("fields")
        self.fields = config.get_list("fields")
        if not self.fields:
            raise sluice.Fatal('invalid config "fields": expected comma-separated field names')
        self.names = frozenset(self.fields)
        mask = config.get("mask")
        self.mask = DEFAULT_MASK if mask is None else mask

    def apply(self, value) -> int:
        """Masks matching fields in ``value`` and below; returns how many were masked. A masked
        value is replaced whole, so fields inside it are not counted again."""
        if isinstance(value, dict):
            masked = 0
            for name, field in value.items():
                if name in self.names:
                    value[name] = self.mask
                    masked += 1
                else:
                    masked += self.apply(field)
            return masked
        if isinstance(value, list):
            return sum(self.apply(item) for item in value)
        return 0


def setup(config: sluice.Config) -> None:
    """Refuses a configuration without field names; logs the one it accepts."""
    redaction = Redaction(config)
    fields = ", ".join(sluice.quoted(field) for field in redaction.fields)
    sluice.log.info(f"masking fields [{fields}] with {sluice.quoted(redaction.mask)}")


@sluice.transform(init=setup)
def on_message(msg: sluice.Message, out: sluice.Writer) -> None:
    """Writes the record with its matching fields masked."""
    redaction = Redaction(sluice.config())
    document = json.value_of(msg)
    masked = redaction.apply(document)
    out.write(
        msg.into_output()
        .with_value(json.dumps(document))
        .with_header(REDACTED_HEADER, str(masked))
    )
