"""A running count per record key in keyed state (docs/state.md), the Python twin of
tests/guests/keyed-count: every output keeps its record's key and value and carries header
``count`` = how many records of the key came so far, this one included."""

import sluice_sdk as sluice


@sluice.transform
def on_message(msg: sluice.Message, out: sluice.Writer) -> None:
    state = msg.state
    count = (state.get_int("count") or 0) + 1
    state.set_int("count", count)
    out.write(msg.into_output().with_header("count", str(count)))
