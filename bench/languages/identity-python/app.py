"""The identity transform in Python: every record written on unchanged. The benchmark's
Python guest (bench/languages.sh), the twin of examples/passthrough."""

import sluice_sdk as sluice


@sluice.transform
def on_message(msg: sluice.Message, out: sluice.Writer) -> None:
    out.write(msg)
