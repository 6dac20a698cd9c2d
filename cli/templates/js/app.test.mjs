// Unit tests of the transform, run natively: `./test.sh` (`node --test`).
import assert from "node:assert/strict";
import { test } from "node:test";

import { onMessage } from "./app.js";
import { Message, Skip, Writer } from "./sluice.js";

const text = (bytes) => new TextDecoder().decode(bytes);

test("tags records and skips tombstones", () => {
  const out = new Writer();
  onMessage(new Message("hello", { key: "k" }), out);
  const [output] = out.outputs;
  assert.equal(text(output.value), "hello");
  assert.equal(text(output.key), "k");
  assert.equal(text(output.header("processed-by")), "{{name}}");
  assert.throws(() => onMessage(new Message(), new Writer()), Skip);
});
