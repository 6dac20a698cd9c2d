// Joins the SDK (sluice.js) and a transform module into the one ES module componentize-js
// builds: the SDK's exports (`init`, `transformBatch`, ...) become the component's, the
// transform's `import ... from "./sluice.js"` lines are dropped (the names are now local), and
// the host's `log` import is bound for the SDK's `log`.
//
//   node bundle.mjs path/to/sluice.js path/to/app.js > bundle.js
import { readFileSync } from "node:fs";

const [sdkPath, appPath] = process.argv.slice(2);
if (!sdkPath || !appPath) {
  console.error("usage: node bundle.mjs sluice.js app.js");
  process.exit(2);
}
const sdk = readFileSync(sdkPath, "utf8");
const app = readFileSync(appPath, "utf8");
const sdkImport = /^import\s*(?:\{[^}]*\}|\*\s+as\s+\w+)\s*from\s*["']\.\/sluice\.js["'];?[ \t]*$/gm;
const rest = app.replace(sdkImport, "");
const other = /^\s*import\s.*from\s*["'](?!\.\/sluice\.js)/m.exec(rest);
if (other) {
  console.error(`error: ${appPath}: only imports from "./sluice.js" are bundled; found: ${other[0].trim()}`);
  process.exit(2);
}
// `export function onMessage` in the app is fine for tests; in the bundle it stays a plain
// function (the world has no such export).
const appBody = rest.replace(/^export\s+(?=(?:async\s+)?function|const|let|class)/gm, "");
// Keyed state (docs/state.md) is imported only by an app that uses `msg.state`: the others
// stay components without the `state` import, which the host runs as before.
const stateImport = /\.state\b/.test(appBody)
  ? `import { get as __sluiceStateGet, set as __sluiceStateSet, delete as __sluiceStateDelete } ` +
    `from "sluice:transform/state@0.2.0";\n` +
    `globalThis.__sluiceHostState = { get: __sluiceStateGet, set: __sluiceStateSet, ` +
    `delete: __sluiceStateDelete };\n`
  : "";
process.stdout.write(
  `import { log as __sluiceHostLogImport } from "sluice:transform/host@0.2.0";\n` +
    `globalThis.__sluiceHostLog = __sluiceHostLogImport;\n` +
    stateImport +
    `${sdk}\n// ---- ${appPath}\n${appBody}`,
);
