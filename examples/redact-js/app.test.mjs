// Native unit tests of the redact transform: `node --test` (sluice.js beside app.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { onMessage, setup } from "./app.js";
import { Config, DeadLetter, Fatal, Message, Writer, withConfig } from "./sluice.js";

const text = (bytes) => new TextDecoder().decode(bytes);

function run(cfg, msg) {
  return withConfig(cfg, () => {
    const out = new Writer();
    onMessage(msg, out);
    assert.equal(out.length, 1, "one output per record");
    return out.outputs[0];
  });
}

test("masks fields at any depth and keeps order", () => {
  const value = `{"z": 1, "email": "a@b.c", "user": {"phone": 123, "name": "Ann"},
      "contacts": [{"email": null}, {"other": {"phone": [1, 2]}}], "a": true}`;
  const output = run({ fields: "email, phone" }, new Message(value, { key: "k" }).withHeader("h", "1"));
  assert.equal(
    text(output.value),
    '{"z":1,"email":"***","user":{"phone":"***","name":"Ann"},"contacts":[{"email":"***"},{"other":{"phone":"***"}}],"a":true}',
  );
  assert.equal(text(output.key), "k");
  assert.deepEqual(output.headers.map((h) => [h.name, text(h.value)]), [["h", "1"], ["sluice-redacted", "4"]]);
  assert.equal(output.topic, null);
  assert.equal(output.timestampMs, null);
});

test("masked objects count once", () => {
  const output = run({ fields: "card,cvv", mask: "#" }, new Message('{"card": {"card": "x", "cvv": 1}}'));
  assert.equal(text(output.value), '{"card":"#"}');
  assert.equal(text(output.header("sluice-redacted")), "1");
});

test("untouched records say zero and are compacted", () => {
  const output = run({ fields: "email" }, new Message('{ "b" : 1.50 ,\n "a" : [ ] }'));
  assert.equal(text(output.value), '{"b":1.5,"a":[]}');
  assert.equal(text(output.header("sluice-redacted")), "0");
});

test("dead-letters records that are not JSON", () => {
  assert.throws(() => run({ fields: "email" }, new Message("nope")), (error) =>
    error instanceof DeadLetter && error.reason === "value is not JSON: expected ident at line 1 column 2");
  assert.throws(() => run({ fields: "email" }, new Message()), (error) =>
    error instanceof DeadLetter && error.reason === "value is not JSON: record has no value");
});

test("init requires field names", () => {
  assert.throws(() => setup(new Config([["mask", "#"]])), (error) =>
    error instanceof Fatal && error.reason === 'missing config key "fields"');
  assert.throws(() => setup(new Config([["fields", " , "]])), (error) =>
    error instanceof Fatal && error.reason.startsWith('invalid config "fields"'));
  setup(new Config([["fields", "ssn"]]));
});
