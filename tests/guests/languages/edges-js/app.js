// Edge cases of the JavaScript SDK on the flat batch ABI (tests/all/language_sdks.rs, which
// holds the expected results): what happens to a record depends on its header `op`. The
// Python twin is ../edges-python/app.py; both must give the same bytes.
import { DeadLetter, Header, Output, Skip, transform } from "./sluice.js";

const utf8 = new TextDecoder();
const text = (value) => (value === null ? "none" : String(value));

export function onMessage(msg, out) {
  const op = msg.header("op");
  const name = op === null ? null : utf8.decode(op);
  if (name === null) {
    // Unchanged: key, value and headers go back as references to the input.
    out.write(msg);
  } else if (name === "tag") {
    // The input's key, value and headers, plus one header.
    const length = msg.value === null ? "none" : String(msg.value.length);
    out.write(msg.intoOutput().withHeader("value-len", length));
  } else if (name === "rewrite") {
    // Every field new: reversed value and headers, key + 0xff, times, timestamp, topic.
    const headers = [...msg.headers].reverse();
    headers.push(new Header("times", `${text(msg.eventTimeMs)}|${text(msg.publishTimeMs)}`));
    const value = msg.value === null ? null : Uint8Array.from(msg.value).reverse();
    const key = Uint8Array.of(...(msg.key ?? []), 0xff);
    const output = new Output(value, { key, headers });
    out.writeTo("rewritten", output.withTimestampMs((msg.eventTimeMs ?? 0n) + 1n));
  } else if (name === "fan-out") {
    // An empty value, a tombstone without key, and the key as the value of a new record.
    out.write(msg.intoOutput().withValue(new Uint8Array()));
    out.write(msg.intoOutput().withValue(null).withKey(null));
    const source = msg.source;
    out.write(new Output(msg.key).withHeader("source", `${source.kind}|${source.topic}|${source.messageId}`));
  } else if (name === "skip") {
    throw new Skip("asked to skip");
  } else if (name === "dead-letter") {
    throw new DeadLetter(`asked: ${utf8.decode(msg.header("why"))}`);
  } else if (name === "throw") {
    throw new Error("thrown on purpose");
  } else {
    throw new DeadLetter("unknown op");
  }
}

transform(onMessage);
