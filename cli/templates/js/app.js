// {{name}}: a Sluice transform. Writes every record on with a `processed-by` header and drops
// tombstones (records without a value).
import { Skip, transform } from "./sluice.js";

/** Header added to every output: which transform wrote it. */
const PROCESSED_BY = "processed-by";

export function onMessage(msg, out) {
  if (msg.value === null) throw new Skip("tombstone");
  out.write(msg.intoOutput().withHeader(PROCESSED_BY, "{{name}}"));
}

transform(onMessage);
