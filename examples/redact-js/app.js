// Masks named fields of JSON records, at any depth, and says how many it masked.
//
// The JavaScript twin of examples/redact (Rust): same config, byte-identical outputs.
//
// Config: `fields` (comma-separated field names, matched in nested objects and inside arrays)
// and `mask` (default `***`). Every matching field's value, whatever its JSON type, becomes the
// mask string. The output keeps the key and headers, carries the compact re-serialized JSON
// (field order kept) and adds header `sluice-redacted` with the count. Records that are not
// JSON are dead-lettered.
import { Fatal, config, json, log, quoted, transform } from "./sluice.js";

/** Header carrying how many fields were masked, as decimal text. */
const REDACTED_HEADER = "sluice-redacted";
const DEFAULT_MASK = "***";

/** The parsed `fields` and `mask` settings. */
class Redaction {
  constructor(cfg) {
    cfg.require("fields");
    this.fields = cfg.getList("fields");
    if (this.fields.length === 0) {
      throw new Fatal('invalid config "fields": expected comma-separated field names');
    }
    this.names = new Set(this.fields);
    this.mask = cfg.get("mask") ?? DEFAULT_MASK;
  }

  /** Masks matching fields in `value` and below; returns how many were masked. A masked value
   * is replaced whole, so fields inside it are not counted again. */
  apply(value) {
    if (value instanceof Map) {
      let masked = 0;
      for (const [name, field] of value) {
        if (this.names.has(name)) {
          value.set(name, this.mask);
          masked += 1;
        } else {
          masked += this.apply(field);
        }
      }
      return masked;
    }
    if (Array.isArray(value)) return value.reduce((sum, item) => sum + this.apply(item), 0);
    return 0;
  }
}

/** Refuses a configuration without field names; logs the one it accepts. */
export function setup(cfg) {
  const redaction = new Redaction(cfg);
  log.info(`masking fields [${redaction.fields.map(quoted).join(", ")}] with ${quoted(redaction.mask)}`);
}

/** Writes the record with its matching fields masked. */
export function onMessage(msg, out) {
  const redaction = new Redaction(config());
  const document = json.valueOf(msg);
  const masked = redaction.apply(document);
  out.write(msg.intoOutput().withValue(json.stringify(document)).withHeader(REDACTED_HEADER, String(masked)));
}

transform(onMessage, { init: setup });
