// A running count per record key in keyed state (docs/state.md), the JavaScript twin of
// tests/guests/keyed-count: every output keeps its record's key and value and carries header
// `count` = how many records of the key came so far, this one included.
import { transform } from "./sluice.js";

export function onMessage(msg, out) {
  const state = msg.state;
  const count = (state.getInt("count") ?? 0) + 1;
  state.setInt("count", count);
  out.write(msg.intoOutput().withHeader("count", String(count)));
}

transform(onMessage);
