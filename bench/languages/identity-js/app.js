// The identity transform in JavaScript: every record written on unchanged. The benchmark's
// JavaScript guest (bench/languages.sh), the twin of examples/passthrough.
import { transform } from "./sluice.js";

export function onMessage(msg, out) {
  out.write(msg);
}

transform(onMessage);
