// Write Sluice transforms in JavaScript: one function per record.
//
// A transform is a WebAssembly component implementing the world
// `sluice:transform/transformer@0.2.0` (wit/world.wit), built with componentize-js (through
// `jco componentize`). This module hides the batch ABI (one flat byte buffer each way,
// docs/flat-batch-abi.md), as the Rust SDK does: you write a
// function that receives each input record as a `Message` and writes zero or more `Output`s
// into a `Writer`, and register it with `transform`:
//
//     import { Skip, transform } from "./sluice.js";
//
//     export function onMessage(msg, out) {
//       if (msg.value === null) throw new Skip("tombstone");
//       out.write(msg.intoOutput().withHeader("validated-by", "tagger"));
//     }
//     transform(onMessage);
//
// Throwing decides what happens to the record (whatever was written is discarded): `Skip`
// drops it (counted, acknowledged at the source), `DeadLetter` sends the original to the
// dead-letter topic with the reason, `Fatal` stops the pipeline (the record is redelivered
// later); anything else thrown dead-letters it with its message.
//
// The pipeline's `config = { ... }` table arrives once, before any record: `config()` returns
// it, and `transform(onMessage, { init: setup })` runs `setup(config)` first, where a throw
// refuses the configuration. `json` parses and prints JSON exactly as the Rust SDK
// (serde_json) does, so a transform gives the same bytes in every language.
//
// Keys, values and header values are `Uint8Array`s (or null); the `with*` helpers also take
// strings (UTF-8). The build (guest-sdk/js/bundle.mjs) joins this file and the transform into
// one module that imports the host's `log`; under plain Node (unit tests) logs go to stderr.

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

function toBytes(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  // Bytes lifted from the host may be another view type or a plain array.
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer || Array.isArray(value)) return new Uint8Array(value);
  throw new TypeError(`expected a string or bytes, got ${Object.prototype.toString.call(value)}`);
}

function firstHeader(headers, name) {
  const found = headers.find((header) => header.name === name);
  return found === undefined ? null : found.value;
}

/** One record header: a name and raw bytes (text is UTF-8). */
export class Header {
  constructor(name, value) {
    this.name = name;
    this.value = toBytes(value);
  }
}

/** An input record: `key`/`value` (Uint8Array or null), `headers`, times in ms, `source`. */
export class Message {
  constructor(value = null, { key = null, headers = [], eventTimeMs = null, publishTimeMs = null,
    source = { kind: "other", topic: "", messageId: "" } } = {}) {
    this.key = toBytes(key);
    this.value = toBytes(value);
    this.headers = headers;
    this.eventTimeMs = eventTimeMs;
    this.publishTimeMs = publishTimeMs;
    this.source = source;
  }

  /** This message with one more header (for tests). */
  withHeader(name, value) {
    this.headers.push(new Header(name, value));
    return this;
  }

  /** The value of the first header called `name`, or null. */
  header(name) {
    return firstHeader(this.headers, name);
  }

  /** An output with this message's key, value and headers; no timestamp, no topic. */
  intoOutput() {
    return new Output(this.value, { key: this.key, headers: this.headers });
  }

  /** The keyed state of this record's key (docs/state.md). */
  get state() {
    return new State(this);
  }
}

// Keyed state: in a component, the host's `state` import (set by the bundle), naming the
// record by its index in the batch; under plain Node (unit tests), a map of this process.
const nativeState = new Map();

function nativeId(message, name) {
  if (message.key === null) return null;
  return `${Array.from(message.key).join(",")}|${Array.from(toBytes(name)).join(",")}`;
}

/** The keyed state of one record's key: `name -> bytes` entries the host keeps durable. */
export class State {
  constructor(message) {
    this.message = message;
  }

  #host() {
    const host = globalThis.__sluiceHostState;
    return host && Number.isInteger(this.message.index) ? host : null;
  }

  /** The value stored under `name` for this record's key (Uint8Array), or null. */
  get(name) {
    const host = this.#host();
    if (host) return toBytesOrNull(host.get(this.message.index, toBytes(name)));
    const id = nativeId(this.message, name);
    return id === null ? null : (nativeState.get(id) ?? null);
  }

  /** Stores `value` under `name`; throws `DeadLetter` when the host refuses it (a quota). */
  set(name, value) {
    const host = this.#host();
    if (host) {
      try {
        host.set(this.message.index, toBytes(name), toBytes(value));
      } catch (error) {
        throw new DeadLetter(String(error?.payload ?? error?.message ?? error));
      }
      return;
    }
    const id = nativeId(this.message, name);
    if (id === null) throw new DeadLetter("the record has no key: keyed state needs one");
    nativeState.set(id, toBytes(value));
  }

  /** Removes what is stored under `name` for this record's key. */
  delete(name) {
    const host = this.#host();
    if (host) host.delete(this.message.index, toBytes(name));
    else {
      const id = nativeId(this.message, name);
      if (id !== null) nativeState.delete(id);
    }
  }

  /** A number stored with `setInt` (8 bytes little-endian, as the Rust SDK's `set_u64`). */
  getInt(name) {
    const bytes = this.get(name);
    if (bytes === null || bytes.length !== 8) return null;
    return Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  }

  /** Stores a non-negative integer under `name`. */
  setInt(name, value) {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(value), true);
    this.set(name, bytes);
  }
}

/** Empties the keyed state plain-Node runs keep (for tests). */
export function clearState() {
  nativeState.clear();
}

function toBytesOrNull(value) {
  return value === null || value === undefined ? null : toBytes(value);
}

/** A record to write. The `with*` methods change it and return it, for chaining. */
export class Output {
  constructor(value = null, { key = null, headers = [], timestampMs = null, topic = null } = {}) {
    this.key = toBytes(key);
    this.value = toBytes(value);
    this.headers = headers;
    this.timestampMs = timestampMs;
    this.topic = topic;
  }

  withKey(key) {
    this.key = toBytes(key);
    return this;
  }

  withValue(value) {
    this.value = toBytes(value);
    return this;
  }

  /** One more header, after the existing ones. */
  withHeader(name, value) {
    this.headers.push(new Header(name, value));
    return this;
  }

  /** The Kafka timestamp in ms since the epoch (a number or BigInt), or null for the host's. */
  withTimestampMs(timestampMs) {
    this.timestampMs = timestampMs;
    return this;
  }

  /** Routes the output to `topic` instead of the pipeline's sink topic. */
  toTopic(topic) {
    this.topic = topic;
    return this;
  }

  header(name) {
    return firstHeader(this.headers, name);
  }
}

/** Collects the outputs of one input record. */
export class Writer {
  constructor() {
    this.outputs = [];
  }

  /** Writes one output (a Message is written unchanged). */
  write(output) {
    this.outputs.push(output instanceof Message ? output.intoOutput() : output);
  }

  /** Writes one output routed to `topic`. */
  writeTo(topic, output) {
    this.write(output);
    this.outputs[this.outputs.length - 1].topic = topic;
  }

  get length() {
    return this.outputs.length;
  }
}

/** Base of Skip, DeadLetter and Fatal; `reason` is the text the host records. */
export class TransformError extends Error {
  constructor(reason, kind = "dead-letter") {
    super(reason);
    this.reason = reason;
    this.kind = kind;
  }
}

/** Drop the record on purpose; the host counts it and acknowledges the source. */
export class Skip extends TransformError {
  constructor(reason) {
    super(reason, "skip");
  }
}

/** Send the original record to the dead-letter topic with this reason. */
export class DeadLetter extends TransformError {
  constructor(reason) {
    super(reason, "dead-letter");
  }
}

/** Stop the pipeline; the record is not acknowledged and will be redelivered. */
export class Fatal extends TransformError {
  constructor(reason) {
    super(reason, "fatal");
  }
}

// What Rust's `str::trim` removes (Unicode White_Space), so lists split alike in every SDK.
const RUST_WHITESPACE =
  /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

/** The `config` table of the pipeline's transform entry, in the order received. */
export class Config {
  constructor(pairs = []) {
    this.entries = Array.from(pairs, ([key, value]) => [String(key), String(value)]);
  }

  /** The value of `key` (the last one if repeated), or null. */
  get(key) {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      if (this.entries[i][0] === key) return this.entries[i][1];
    }
    return null;
  }

  /** The value of `key`; throws Fatal `missing config key "<key>"`. */
  require(key) {
    const value = this.get(key);
    if (value === null) throw new Fatal(`missing config key ${quoted(key)}`);
    return value;
  }

  /** The value split at commas, items trimmed, empty ones dropped; [] when unset. */
  getList(key) {
    const value = this.get(key);
    if (value === null) return [];
    return value.split(",").map((item) => item.replace(RUST_WHITESPACE, "")).filter((item) => item);
  }
}

/** `text` in double quotes with `"` and `\` escaped, as Rust's `{:?}` prints plain text. */
export function quoted(text) {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

let activeConfig = new Config();

/** The configuration given to `init` (empty before it, and in tests unless withConfig set one). */
export function config() {
  return activeConfig;
}

/** Runs `body()` with `pairs` (an array of [key, value] or an object) as the active config. */
export function withConfig(pairs, body) {
  const previous = activeConfig;
  activeConfig = new Config(Array.isArray(pairs) ? pairs : Object.entries(pairs));
  try {
    return body();
  } finally {
    activeConfig = previous;
  }
}

const LEVELS = ["trace", "debug", "info", "warn", "error"];

function writeLog(level, message) {
  const host = globalThis.__sluiceHostLog;
  if (host) host(level, String(message));
  else console.error(`[${level}] ${message}`);
}

/** `log.info("...")` and friends: lines in the host's log (rate-limited), attributed to this transform. */
export const log = Object.fromEntries(LEVELS.map((level) => [level, (message) => writeLog(level, message)]));

// --- the component's exports ------------------------------------------------------------------

let handler = null;
let setupHook = null;

/** Makes `onMessage(msg, out)` the transform of this component, with an optional `init(config)`. */
export function transform(onMessage, { init: setup = null } = {}) {
  handler = onMessage;
  setupHook = setup;
  return onMessage;
}

function reasonOf(error) {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

/** World export `init`: stores the config, runs the hook; a throw refuses the config. */
export function init(pairs) {
  activeConfig = new Config(pairs);
  if (setupHook) {
    try {
      setupHook(activeConfig);
    } catch (error) {
      // componentize-js maps a thrown value to the `err` case of the result.
      throw reasonOf(error);
    }
  }
}

/** World export `transform-batch` (0.2.0): reads the flat input batch, calls the registered
 * function once per record, in order, and returns the flat result batch with one result per
 * record (docs/flat-batch-abi.md). */
export function transformBatch(batch) {
  if (!handler) throw new Error("no function registered with transform()");
  const messages = flatLayout.decodeBatch(batch);
  const results = new flatLayout.ResultWriter(messages.length, batch.length);
  for (const [index, message] of messages.entries()) {
    message.index = index;
    // The arrays the batch gave: an output holding them refers to the input.
    const key = message.key;
    const value = message.value;
    const out = new Writer();
    try {
      handler(message, out);
    } catch (error) {
      results.error(error instanceof TransformError ? error.kind : "dead-letter", reasonOf(error));
      continue;
    }
    results.outputs(message, key, value, out.outputs);
  }
  return results.finish();
}

// --- the flat batch layout of sluice:transform@0.2.0 (docs/flat-batch-abi.md) -------------------
//
// The batch arrives as one Uint8Array and is read in place with a DataView: a message's key,
// value and header values are `subarray` views of it (no copy), its headers and source are made
// only when read. An output that keeps its input's key, value or headers (the same arrays, or
// headers never read) sends a one-byte reference back instead of the bytes. So do not change
// a received array in place (an unchanged reference sends the input's original bytes): write
// a changed copy with `withValue`/`withKey`.

// One top-level name: the bundle shares its scope with the transform's own names.
const flatLayout = (() => {
  const LAYOUT_VERSION = 1;
  const PRESENT_KEY = 1;
  const PRESENT_VALUE = 2;
  const PRESENT_EVENT_TIME = 4;
  const PRESENT_PUBLISH_TIME = 8;
  const SOURCE_KINDS = ["pulsar", "gcp-pubsub", "other"];
  const ERROR_TAGS = { skip: 1, "dead-letter": 2, fatal: 3 };
  const FIELD_ABSENT = 0;
  const FIELD_INLINE = 1;
  const FIELD_FROM_INPUT = 2;
  const HEADERS_INLINE = 0;
  const HEADERS_INPUT_THEN_INLINE = 1;
  // One output: key and value forwarded, no timestamp, no topic, the input's headers, none added.
  const ONE_FORWARDED_OUTPUT = Uint8Array.of(0, 1, 0, 0, 0, 2, 2, 0, 0, 1, 0, 0, 0, 0);
  const utf8 = new TextDecoder();
  // Where a batch message keeps its place in the batch (symbols: not among its enumerable fields).
  const BATCH = Symbol("batch");
  const RECORD_AT = Symbol("record offset");
  const FROM = Symbol("input message");
  const ADDED = Symbol("added headers");

  /** A batch that breaks the layout: a host bug; throwing traps the batch. */
  class MalformedBatch extends Error {}

  /** The batch, its DataView and its source table, shared by its messages. */
  function batchOf(bytes) {
    return { bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), sources: [] };
  }

  /** The headers of the record whose headers start at `at`, as Headers. */
  function decodeHeaders(batch, at, count) {
    const { bytes, view } = batch;
    const headers = new Array(count);
    for (let i = 0; i < count; i++) {
      const nameLength = view.getUint32(at, true);
      at += 4;
      const name = utf8.decode(bytes.subarray(at, at + nameLength));
      at += nameLength;
      const valueLength = view.getUint32(at, true);
      at += 4;
      const header = Object.create(Header.prototype);
      header.name = name;
      header.value = bytes.subarray(at, at + valueLength);
      at += valueLength;
      headers[i] = header;
    }
    return headers;
  }

  /** The value of the first header called `name`, read in place (no Header made), or null. */
  function findHeader(batch, at, count, name) {
    const { bytes, view } = batch;
    const wanted = encoder.encode(name);
    for (let i = 0; i < count; i++) {
      const nameLength = view.getUint32(at, true);
      at += 4;
      let found = nameLength === wanted.length;
      for (let k = 0; found && k < nameLength; k++) found = bytes[at + k] === wanted[k];
      at += nameLength;
      const valueLength = view.getUint32(at, true);
      at += 4;
      if (found) return bytes.subarray(at, at + valueLength);
      at += valueLength;
    }
    return null;
  }

  /** The record at `at` of `batch`, read again: where its id and its headers are. */
  function recordLayout(batch, at) {
    const view = batch.view;
    const source = view.getUint32(at, true);
    const idLength = view.getUint32(at + 4, true);
    const idAt = at + 8;
    at = idAt + idLength;
    const present = batch.bytes[at];
    at += 1;
    if (present & PRESENT_EVENT_TIME) at += 8;
    if (present & PRESENT_PUBLISH_TIME) at += 8;
    if (present & PRESENT_KEY) at += 4 + view.getUint32(at, true);
    if (present & PRESENT_VALUE) at += 4 + view.getUint32(at, true);
    return { source, idAt, idEnd: idAt + idLength, headerCount: view.getUint32(at, true), headersAt: at + 4 };
  }

  const ownField = (value) => ({ value, writable: true, enumerable: true, configurable: true });

  /** A message read from the batch: `headers` and `source` are made on first read. */
  function BatchMessage(batch, recordAt, key, value, eventTimeMs, publishTimeMs) {
    this.key = key;
    this.value = value;
    this.eventTimeMs = eventTimeMs;
    this.publishTimeMs = publishTimeMs;
    this[BATCH] = batch;
    this[RECORD_AT] = recordAt;
  }

  BatchMessage.prototype = Object.create(Message.prototype, {
    constructor: { value: BatchMessage, writable: true, configurable: true },
    headers: {
      get() {
        const layout = recordLayout(this[BATCH], this[RECORD_AT]);
        const headers = decodeHeaders(this[BATCH], layout.headersAt, layout.headerCount);
        Object.defineProperty(this, "headers", ownField(headers));
        return headers;
      },
      set(headers) {
        Object.defineProperty(this, "headers", ownField(headers));
      },
      configurable: true,
    },
    source: {
      get() {
        const batch = this[BATCH];
        const layout = recordLayout(batch, this[RECORD_AT]);
        const [kind, topic] = batch.sources[layout.source];
        const source = { kind, topic, messageId: utf8.decode(batch.bytes.subarray(layout.idAt, layout.idEnd)) };
        Object.defineProperty(this, "source", ownField(source));
        return source;
      },
      set(source) {
        Object.defineProperty(this, "source", ownField(source));
      },
      configurable: true,
    },
    header: {
      value(name) {
        if (Object.hasOwn(this, "headers")) return firstHeader(this.headers, name);
        const layout = recordLayout(this[BATCH], this[RECORD_AT]);
        return findHeader(this[BATCH], layout.headersAt, layout.headerCount, name);
      },
      writable: true,
      configurable: true,
    },
    intoOutput: {
      value() {
        // Headers never read are still the input's: the output refers to them.
        if (!Object.hasOwn(this, "headers")) return new ForwardedOutput(this);
        return new Output(this.value, { key: this.key, headers: this.headers });
      },
      writable: true,
      configurable: true,
    },
  });

  /** An output made by `intoOutput` from a batch message whose headers nobody read: the input's
   * headers by reference plus those added with `withHeader`, until `headers` is read or set. */
  function ForwardedOutput(message) {
    this.key = message.key;
    this.value = message.value;
    this.timestampMs = null;
    this.topic = null;
    this[FROM] = message;
    this[ADDED] = [];
  }

  function inputHeadersOf(output) {
    const message = output[FROM];
    const layout = recordLayout(message[BATCH], message[RECORD_AT]);
    return [message[BATCH], layout.headersAt, layout.headerCount];
  }

  ForwardedOutput.prototype = Object.create(Output.prototype, {
    constructor: { value: ForwardedOutput, writable: true, configurable: true },
    headers: {
      get() {
        const headers = decodeHeaders(...inputHeadersOf(this)).concat(this[ADDED]);
        this[ADDED] = null;
        Object.defineProperty(this, "headers", ownField(headers));
        return headers;
      },
      set(headers) {
        this[ADDED] = null;
        Object.defineProperty(this, "headers", ownField(headers));
      },
      configurable: true,
    },
    withHeader: {
      value(name, value) {
        (this[ADDED] ?? this.headers).push(new Header(name, value));
        return this;
      },
      writable: true,
      configurable: true,
    },
    header: {
      value(name) {
        if (this[ADDED] === null) return firstHeader(this.headers, name);
        return findHeader(...inputHeadersOf(this), name) ?? firstHeader(this[ADDED], name);
      },
      writable: true,
      configurable: true,
    },
  });

  /** The batch's records as messages, in order. */
  function decodeBatch(bytes) {
    if (!(bytes instanceof Uint8Array)) bytes = toBytes(bytes);
    if (bytes.length < 12) throw new MalformedBatch(`batch of ${bytes.length} bytes has no header`);
    const batch = batchOf(bytes);
    const view = batch.view;
    const version = view.getUint16(0, true);
    if (version !== LAYOUT_VERSION) {
      throw new MalformedBatch(`batch layout version ${version}, this SDK reads ${LAYOUT_VERSION}`);
    }
    const recordCount = view.getUint32(4, true);
    const sourceCount = view.getUint32(8, true);
    let at = 12;
    for (let i = 0; i < sourceCount; i++) {
      const kind = SOURCE_KINDS[bytes[at]] ?? "other";
      const length = view.getUint32(at + 1, true);
      at += 5;
      batch.sources.push([kind, utf8.decode(bytes.subarray(at, at + length))]);
      at += length;
    }
    const messages = new Array(recordCount);
    for (let i = 0; i < recordCount; i++) {
      const recordAt = at;
      at += 8 + view.getUint32(at + 4, true);
      const present = bytes[at];
      at += 1;
      let eventTimeMs = null;
      let publishTimeMs = null;
      let key = null;
      let value = null;
      if (present & PRESENT_EVENT_TIME) {
        eventTimeMs = view.getBigInt64(at, true);
        at += 8;
      }
      if (present & PRESENT_PUBLISH_TIME) {
        publishTimeMs = view.getBigInt64(at, true);
        at += 8;
      }
      if (present & PRESENT_KEY) {
        const length = view.getUint32(at, true);
        key = bytes.subarray(at + 4, at + 4 + length);
        at += 4 + length;
      }
      if (present & PRESENT_VALUE) {
        const length = view.getUint32(at, true);
        value = bytes.subarray(at + 4, at + 4 + length);
        at += 4 + length;
      }
      const headerCount = view.getUint32(at, true);
      at += 4;
      for (let h = 0; h < headerCount; h++) {
        at += 4 + view.getUint32(at, true);
        at += 4 + view.getUint32(at, true);
      }
      messages[i] = new BatchMessage(batch, recordAt, key, value, eventTimeMs, publishTimeMs);
    }
    if (at !== bytes.length) throw new MalformedBatch(`${bytes.length - at} bytes after the last record`);
    return messages;
  }

  /** The result batch, written one record's result at a time into a buffer that grows. */
  class ResultWriter {
    constructor(resultCount, inputLength) {
      // Outputs are usually about the size of the inputs, or references to them.
      this.bytes = new Uint8Array(64 + (inputLength >>> 1));
      this.view = new DataView(this.bytes.buffer);
      this.at = 0;
      this.u16(LAYOUT_VERSION);
      this.u16(0);
      this.u32(resultCount);
    }

    reserve(length) {
      if (this.at + length <= this.bytes.length) return;
      const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.at + length));
      grown.set(this.bytes.subarray(0, this.at));
      this.bytes = grown;
      this.view = new DataView(grown.buffer);
    }

    u8(byte) {
      this.reserve(1);
      this.bytes[this.at++] = byte;
    }

    u16(number) {
      this.reserve(2);
      this.view.setUint16(this.at, number, true);
      this.at += 2;
    }

    u32(number) {
      this.reserve(4);
      this.view.setUint32(this.at, number, true);
      this.at += 4;
    }

    data(bytes) {
      this.u32(bytes.length);
      this.reserve(bytes.length);
      this.bytes.set(bytes, this.at);
      this.at += bytes.length;
    }

    text(string) {
      // At most three bytes per UTF-16 unit.
      this.reserve(4 + string.length * 3);
      const { written } = encoder.encodeInto(string, this.bytes.subarray(this.at + 4));
      this.view.setUint32(this.at, written, true);
      this.at += 4 + written;
    }

    field(field, inputField) {
      if (field === null || field === undefined) {
        this.u8(FIELD_ABSENT);
      } else if (field === inputField) {
        this.u8(FIELD_FROM_INPUT);
      } else {
        this.u8(FIELD_INLINE);
        this.data(toBytes(field));
      }
    }

    /** The outputs of `message`, whose input key and value were `key` and `value` (the arrays
     * the batch gave it, whatever the author did to the message since). */
    outputs(message, key, value, outputs) {
      if (outputs.length === 1) {
        const output = outputs[0];
        if (output instanceof ForwardedOutput && output[FROM] === message && output.key === key
          && output.value === value && output[ADDED]?.length === 0
          && (output.timestampMs ?? null) === null && (output.topic ?? null) === null) {
          this.reserve(ONE_FORWARDED_OUTPUT.length);
          this.bytes.set(ONE_FORWARDED_OUTPUT, this.at);
          this.at += ONE_FORWARDED_OUTPUT.length;
          return;
        }
      }
      this.u8(0);
      this.u32(outputs.length);
      for (const output of outputs) this.output(output, message, key, value);
    }

    output(output, message, key, value) {
      this.field(output.key, key);
      this.field(output.value, value);
      const timestampMs = output.timestampMs;
      if (timestampMs === null || timestampMs === undefined) {
        this.u8(0);
      } else {
        this.u8(1);
        this.reserve(8);
        this.view.setBigInt64(this.at, BigInt(timestampMs), true);
        this.at += 8;
      }
      const topic = output.topic;
      if (topic === null || topic === undefined) {
        this.u8(0);
      } else {
        this.u8(1);
        this.text(topic);
      }
      let headers;
      if (output instanceof ForwardedOutput && output[FROM] === message && output[ADDED] !== null) {
        this.u8(HEADERS_INPUT_THEN_INLINE);
        headers = output[ADDED];
      } else {
        this.u8(HEADERS_INLINE);
        headers = output.headers;
      }
      this.u32(headers.length);
      for (const header of headers) {
        this.text(header.name);
        this.data(toBytes(header.value));
      }
    }

    /** An error result: `kind` is `skip`, `dead-letter` or `fatal`. */
    error(kind, reason) {
      this.u8(ERROR_TAGS[kind] ?? ERROR_TAGS["dead-letter"]);
      this.text(reason);
    }

    finish() {
      return this.bytes.subarray(0, this.at);
    }
  }

  return { decodeBatch, ResultWriter };
})();

// --- JSON, exactly as serde_json (1.0.154, the Rust SDK's) parses and prints it -----------------
//
// Objects are Maps (field order kept; a repeated field keeps its first place and its last
// value), integers that fit 64 bits are BigInts, every other number is a Number (parsed as
// serde_json parses it: `-0` and integers beyond 64 bits become floats, `1e400` is refused).
// `stringify` also takes plain objects; it prints a Number as serde_json prints an f64 (`3`
// becomes `3.0`: write `3n` for the integer).

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN_MAGNITUDE = 1n << 63n;
const I32_MAX = 2147483647;
const I32_MIN = -2147483648;
const MAX_DEPTH = 128;
const POW10 = Array.from({ length: 309 }, (_, k) => Number(`1e${k}`));
const SIMPLE_ESCAPES = { 0x22: 0x22, 0x5c: 0x5c, 0x2f: 0x2f, 0x62: 0x08, 0x66: 0x0c, 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09 };

/** Text that serde_json would refuse; the message is serde_json's. */
export class JsonError extends Error {}

const isDigit = (c) => c >= 0x30 && c <= 0x39;

/** `significand * 10 + digit` with serde_json's overflow test; null when it overflows u64. */
function pushDigit(significand, digit) {
  if (typeof significand === "number") {
    if (significand < 1e14) return significand * 10 + digit; // stays below 2^53: exact
    significand = BigInt(significand);
  }
  const next = significand * 10n + BigInt(digit);
  return next > U64_MAX ? null : next;
}

class Parser {
  constructor(bytes) {
    this.s = bytes;
    this.i = 0;
    this.depth = MAX_DEPTH;
  }

  at(index, code) {
    const s = this.s;
    let start = index;
    while (start > 0 && s[start - 1] !== 0x0a) start--;
    let line = 1;
    for (let j = 0; j < start; j++) if (s[j] === 0x0a) line++;
    return new JsonError(`${code} at line ${line} column ${index - start}`);
  }

  error(code) {
    return this.at(this.i, code);
  }

  peekError(code) {
    return this.at(Math.min(this.s.length, this.i + 1), code);
  }

  peekOrNull() {
    return this.i < this.s.length ? this.s[this.i] : 0;
  }

  next() {
    return this.i < this.s.length ? this.s[this.i++] : -1;
  }

  whitespace() {
    const s = this.s;
    while (this.i < s.length) {
      const c = s[this.i];
      if (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) return c;
      this.i++;
    }
    return -1;
  }

  parse() {
    const value = this.value();
    if (this.whitespace() !== -1) throw this.peekError("trailing characters");
    return value;
  }

  value() {
    const c = this.whitespace();
    switch (c) {
      case -1: throw this.peekError("EOF while parsing a value");
      case 0x6e: this.i++; this.ident("ull"); return null;
      case 0x74: this.i++; this.ident("rue"); return true;
      case 0x66: this.i++; this.ident("alse"); return false;
      case 0x2d: this.i++; return this.integer(false);
      case 0x22: this.i++; return this.string();
      case 0x5b:
      case 0x7b: {
        if (--this.depth === 0) throw this.peekError("recursion limit exceeded");
        this.i++;
        const result = c === 0x5b ? this.seq() : this.map();
        this.depth++;
        this.i++; // the closing bracket seen by seq() / map()
        return result;
      }
      default:
        if (isDigit(c)) return this.integer(true);
        throw this.peekError("expected value");
    }
  }

  ident(rest) {
    for (let k = 0; k < rest.length; k++) {
      const c = this.next();
      if (c === -1) throw this.error("EOF while parsing a value");
      if (c !== rest.charCodeAt(k)) throw this.error("expected ident");
    }
  }

  seq() {
    const items = [];
    let first = true;
    for (;;) {
      let c = this.whitespace();
      if (c === -1) throw this.peekError("EOF while parsing a list");
      if (c === 0x5d) return items;
      if (first) {
        first = false;
      } else if (c === 0x2c) {
        this.i++;
        c = this.whitespace();
        if (c === 0x5d) throw this.peekError("trailing comma");
        if (c === -1) throw this.peekError("EOF while parsing a value");
      } else {
        throw this.peekError("expected `,` or `]`");
      }
      items.push(this.value());
    }
  }

  map() {
    const fields = new Map();
    let first = true;
    for (;;) {
      let c = this.whitespace();
      if (c === -1) throw this.peekError("EOF while parsing an object");
      if (c === 0x7d) return fields;
      if (first) {
        first = false;
        if (c !== 0x22) throw this.peekError("key must be a string");
      } else if (c === 0x2c) {
        this.i++;
        c = this.whitespace();
        if (c === 0x7d) throw this.peekError("trailing comma");
        if (c === -1) throw this.peekError("EOF while parsing a value");
        if (c !== 0x22) throw this.peekError("key must be a string");
      } else {
        throw this.peekError("expected `,` or `}`");
      }
      this.i++;
      const key = this.string();
      c = this.whitespace();
      if (c === -1) throw this.peekError("EOF while parsing an object");
      if (c !== 0x3a) throw this.peekError("expected `:`");
      this.i++;
      fields.set(key, this.value());
    }
  }

  integer(positive) {
    const c = this.next();
    if (c === -1) throw this.error("EOF while parsing a value");
    if (c === 0x30) {
      if (isDigit(this.peekOrNull())) throw this.peekError("invalid number");
      return this.number(positive, 0);
    }
    if (!isDigit(c)) throw this.error("invalid number");
    let significand = c - 0x30;
    for (;;) {
      const d = this.peekOrNull();
      if (!isDigit(d)) return this.number(positive, significand);
      const next = pushDigit(significand, d - 0x30);
      if (next === null) return this.longInteger(positive, significand);
      this.i++;
      significand = next;
    }
  }

  number(positive, significand) {
    const c = this.peekOrNull();
    if (c === 0x2e) return this.decimal(positive, significand, 0);
    if (c === 0x65 || c === 0x45) return this.exponent(positive, significand, 0);
    const big = BigInt(significand);
    if (positive) return big;
    if (big === 0n) return -0;
    return big <= I64_MIN_MAGNITUDE ? -big : -Number(big);
  }

  decimal(positive, significand, exponentBefore) {
    this.i++;
    let exponentAfter = 0;
    for (;;) {
      const d = this.peekOrNull();
      if (!isDigit(d)) break;
      const next = pushDigit(significand, d - 0x30);
      if (next === null) return this.decimalOverflow(positive, significand, exponentBefore + exponentAfter);
      this.i++;
      significand = next;
      exponentAfter--;
    }
    if (exponentAfter === 0) {
      throw this.peekError(this.i < this.s.length ? "invalid number" : "EOF while parsing a value");
    }
    const exponent = exponentBefore + exponentAfter;
    const c = this.peekOrNull();
    if (c === 0x65 || c === 0x45) return this.exponent(positive, significand, exponent);
    return this.f64FromParts(positive, significand, exponent);
  }

  exponent(positive, significand, starting) {
    this.i++;
    let positiveExp = true;
    const sign = this.peekOrNull();
    if (sign === 0x2b) {
      this.i++;
    } else if (sign === 0x2d) {
      this.i++;
      positiveExp = false;
    }
    const c = this.next();
    if (c === -1) throw this.error("EOF while parsing a value");
    if (!isDigit(c)) throw this.error("invalid number");
    let exp = c - 0x30;
    for (;;) {
      const d = this.peekOrNull();
      if (!isDigit(d)) break;
      this.i++;
      const digit = d - 0x30;
      if (exp >= 214748364 && (exp > 214748364 || digit > 7)) {
        return this.exponentOverflow(positive, Number(significand) === 0, positiveExp);
      }
      exp = exp * 10 + digit;
    }
    const final = Math.max(I32_MIN, Math.min(I32_MAX, positiveExp ? starting + exp : starting - exp));
    return this.f64FromParts(positive, significand, final);
  }

  exponentOverflow(positive, zeroSignificand, positiveExp) {
    if (!zeroSignificand && positiveExp) throw this.error("number out of range");
    while (isDigit(this.peekOrNull())) this.i++;
    return positive ? 0 : -0;
  }

  longInteger(positive, significand) {
    let exponent = 0;
    for (;;) {
      const c = this.peekOrNull();
      if (isDigit(c)) {
        this.i++;
        exponent++;
      } else if (c === 0x2e) {
        return this.decimal(positive, significand, exponent);
      } else if (c === 0x65 || c === 0x45) {
        return this.exponent(positive, significand, exponent);
      } else {
        return this.f64FromParts(positive, significand, exponent);
      }
    }
  }

  decimalOverflow(positive, significand, exponent) {
    while (isDigit(this.peekOrNull())) this.i++;
    const c = this.peekOrNull();
    if (c === 0x65 || c === 0x45) return this.exponent(positive, significand, exponent);
    return this.f64FromParts(positive, significand, exponent);
  }

  f64FromParts(positive, significand, exponent) {
    let f = Number(significand); // correctly rounded, as Rust's `u64 as f64`
    for (;;) {
      const magnitude = Math.abs(exponent);
      if (magnitude <= 308) {
        if (exponent >= 0) {
          f *= POW10[magnitude];
          if (!Number.isFinite(f)) throw this.error("number out of range");
        } else {
          f /= POW10[magnitude];
        }
        break;
      }
      if (f === 0) break;
      if (exponent >= 0) throw this.error("number out of range");
      f /= 1e308;
      exponent += 308;
    }
    return positive ? f : -f;
  }

  string() {
    const s = this.s;
    const n = s.length;
    let start = this.i;
    let scratch = null;
    for (;;) {
      let i = this.i;
      while (i < n) {
        const c = s[i];
        if (c === 0x22 || c === 0x5c || c < 0x20) break;
        i++;
      }
      this.i = i;
      if (i === n) throw this.error("EOF while parsing a string");
      const c = s[i];
      if (c === 0x22) {
        let content = s.subarray(start, i);
        if (scratch !== null) {
          for (const b of content) scratch.push(b);
          content = Uint8Array.from(scratch);
        }
        this.i++;
        return this.asStr(content);
      }
      if (c === 0x5c) {
        if (scratch === null) scratch = [];
        for (let j = start; j < i; j++) scratch.push(s[j]);
        this.i++;
        this.escape(scratch);
        start = this.i;
      } else {
        this.i++;
        throw this.error("control character (\\u0000-\\u001F) found while parsing a string");
      }
    }
  }

  asStr(content) {
    try {
      return strictDecoder.decode(content);
    } catch {
      const error = this.error("invalid unicode code point");
      const column = Number(/column (\d+)$/.exec(error.message)[1]);
      const fixed = Math.max(0, column - (content.length - utf8ValidUpTo(content)));
      error.message = error.message.replace(/column \d+$/, `column ${fixed}`);
      throw error;
    }
  }

  escape(scratch) {
    const c = this.next();
    if (c === -1) throw this.error("EOF while parsing a string");
    const simple = SIMPLE_ESCAPES[c];
    if (simple !== undefined) scratch.push(simple);
    else if (c === 0x75) this.unicodeEscape(scratch);
    else throw this.error("invalid escape");
  }

  hex4() {
    if (this.s.length - this.i < 4) {
      this.i = this.s.length;
      throw this.error("EOF while parsing a string");
    }
    let n = 0;
    let valid = true;
    for (let k = 0; k < 4; k++) {
      const c = this.s[this.i + k];
      const digit = c >= 0x30 && c <= 0x39 ? c - 0x30
        : c >= 0x61 && c <= 0x66 ? c - 0x57
          : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
      if (digit < 0) valid = false;
      n = n * 16 + digit;
    }
    this.i += 4;
    if (!valid) throw this.error("invalid escape");
    return n;
  }

  peekOrEof() {
    if (this.i >= this.s.length) throw this.error("EOF while parsing a string");
    return this.s[this.i];
  }

  unicodeEscape(scratch) {
    const n = this.hex4();
    if (n >= 0xdc00 && n <= 0xdfff) throw this.error("lone leading surrogate in hex escape");
    if (n < 0xd800 || n > 0xdbff) {
      pushUtf8(scratch, n);
      return;
    }
    for (const expected of [0x5c, 0x75]) {
      if (this.peekOrEof() !== expected) {
        this.i++;
        throw this.error("unexpected end of hex escape");
      }
      this.i++;
    }
    const n2 = this.hex4();
    if (n2 < 0xdc00 || n2 > 0xdfff) throw this.error("lone leading surrogate in hex escape");
    pushUtf8(scratch, (((n - 0xd800) << 10) | (n2 - 0xdc00)) + 0x10000);
  }
}

function pushUtf8(out, cp) {
  if (cp < 0x80) out.push(cp);
  else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
  else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
}

/** The length of the longest valid UTF-8 prefix of `bytes` (Rust's `Utf8Error::valid_up_to`). */
function utf8ValidUpTo(bytes) {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    let width;
    let low = 0x80;
    let high = 0xbf;
    if (b < 0x80) width = 1;
    else if (b >= 0xc2 && b <= 0xdf) width = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      width = 3;
      if (b === 0xe0) low = 0xa0;
      if (b === 0xed) high = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      width = 4;
      if (b === 0xf0) low = 0x90;
      if (b === 0xf4) high = 0x8f;
    } else return i;
    if (i + width > bytes.length) return i;
    for (let k = 1; k < width; k++) {
      const c = bytes[i + k];
      const lo = k === 1 ? low : 0x80;
      const hi = k === 1 ? high : 0xbf;
      if (c < lo || c > hi) return i;
    }
    i += width;
  }
  return i;
}

const ESCAPE = /["\\\u0000-\u001f]/g;
const SHORT_ESCAPES = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function writeString(text) {
  return `"${text.replace(ESCAPE, (c) => SHORT_ESCAPES[c] ?? `\\u00${c.charCodeAt(0).toString(16).padStart(2, "0")}`)}"`;
}

/** `value` as serde_json (zmij) prints an f64: shortest digits, `1.0`, `1e+16`, `1.5e-7`. */
export function formatFloat(value) {
  if (!Number.isFinite(value)) return "null";
  if (value === 0) return Object.is(value, -0) ? "-0.0" : "0.0";
  const sign = value < 0 ? "-" : "";
  const [mantissa, exponent] = Math.abs(value).toExponential().split("e");
  const digits = mantissa.replace(".", "").replace(/0+$/, "");
  const point = Number(exponent) + 1;
  const length = digits.length;
  let text;
  if (point - length >= 0 && point <= 16) text = `${digits}${"0".repeat(point - length)}.0`;
  else if (point > 0 && point <= 16) text = `${digits.slice(0, point)}.${digits.slice(point)}`;
  else if (point > -5 && point <= 0) text = `0.${"0".repeat(-point)}${digits}`;
  else {
    const exponentText = point - 1 >= 0 ? `+${point - 1}` : `${point - 1}`;
    text = length === 1 ? `${digits}e${exponentText}` : `${digits[0]}.${digits.slice(1)}e${exponentText}`;
  }
  return sign + text;
}

function write(value, parts) {
  if (value === null || value === undefined) parts.push("null");
  else if (value === true) parts.push("true");
  else if (value === false) parts.push("false");
  else if (typeof value === "string") parts.push(writeString(value));
  else if (typeof value === "bigint") parts.push(value.toString());
  else if (typeof value === "number") parts.push(formatFloat(value));
  else if (Array.isArray(value)) {
    parts.push("[");
    value.forEach((item, index) => {
      if (index) parts.push(",");
      write(item, parts);
    });
    parts.push("]");
  } else {
    const entries = value instanceof Map ? value.entries() : Object.entries(value);
    parts.push("{");
    let first = true;
    for (const [key, item] of entries) {
      if (!first) parts.push(",");
      first = false;
      parts.push(writeString(String(key)));
      parts.push(":");
      write(item, parts);
    }
    parts.push("}");
  }
}

export const json = {
  /** Parses UTF-8 bytes (or a string) as serde_json's `from_slice`; throws JsonError. */
  parse(data) {
    return new Parser(typeof data === "string" ? encoder.encode(data) : data).parse();
  },

  /** Compact JSON text of `value` as serde_json writes it. */
  stringify(value) {
    const parts = [];
    write(value, parts);
    return parts.join("");
  },

  /** The record's value as JSON, or DeadLetter `value is not JSON: …`. */
  valueOf(msg) {
    if (msg.value === null) throw new DeadLetter("value is not JSON: record has no value");
    try {
      return json.parse(msg.value);
    } catch (error) {
      if (error instanceof JsonError) throw new DeadLetter(`value is not JSON: ${error.message}`);
      throw error;
    }
  },
};
