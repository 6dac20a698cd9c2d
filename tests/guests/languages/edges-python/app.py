"""Edge cases of the Python SDK on the flat batch ABI (tests/all/language_sdks.rs, which holds
the expected results): what happens to a record depends on its header ``op``. The JavaScript
twin is ../edges-js/app.js; both must give the same bytes."""

import sluice_sdk as sluice


def _text(value) -> str:
    return "none" if value is None else str(value)


@sluice.transform
def on_message(msg: sluice.Message, out: sluice.Writer) -> None:
    op = msg.header("op")
    if op is None:
        # Unchanged: key, value and headers go back as references to the input.
        out.write(msg)
    elif op == b"tag":
        # The input's key, value and headers, plus one header.
        length = "none" if msg.value is None else str(len(msg.value))
        out.write(msg.into_output().with_header("value-len", length))
    elif op == b"rewrite":
        # Every field new: reversed value and headers, key + 0xff, times, timestamp, topic.
        headers = list(reversed(msg.headers))
        headers.append(sluice.Header("times", f"{_text(msg.event_time_ms)}|{_text(msg.publish_time_ms)}"))
        value = None if msg.value is None else msg.value[::-1]
        output = sluice.Output(value, key=(msg.key or b"") + b"\xff", headers=headers)
        out.write_to("rewritten", output.with_timestamp_ms((msg.event_time_ms or 0) + 1))
    elif op == b"fan-out":
        # An empty value, a tombstone without key, and the key as the value of a new record.
        out.write(msg.into_output().with_value(b""))
        out.write(msg.into_output().with_value(None).with_key(None))
        source = msg.source
        out.write(
            sluice.Output(msg.key).with_header(
                "source", f"{source.kind}|{source.topic}|{source.message_id}"
            )
        )
    elif op == b"skip":
        raise sluice.Skip("asked to skip")
    elif op == b"dead-letter":
        raise sluice.DeadLetter("asked: " + msg.header("why").decode())
    elif op == b"throw":
        raise ValueError("thrown on purpose")
    else:
        raise sluice.DeadLetter("unknown op")
