"""{{name}}: a Sluice transform. Writes every record on with a ``processed-by`` header and
drops tombstones (records without a value)."""

import sluice_sdk as sluice

#: Header added to every output: which transform wrote it.
PROCESSED_BY = "processed-by"


@sluice.transform
def on_message(msg: sluice.Message, out: sluice.Writer) -> None:
    if msg.value is None:
        raise sluice.Skip("tombstone")
    out.write(msg.into_output().with_header(PROCESSED_BY, "{{name}}"))
