// Builds a component from one ES module with componentize-js's API (the `jco componentize`
// command wraps the same call, but its WIT pre-check cannot read paths outside its sandbox).
//
//   node componentize.mjs NODE_MODULES_DIR bundle.js WIT_DIR out.wasm
//
// Only stdio (console output), clocks and random stay enabled: http and fetch-event would
// import wasi:http, which the Sluice sandbox does not provide.
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [nodeModules, source, wit, out] = process.argv.slice(2);
// The package is ESM-only: import its entry by path (Node resolves bare names from this file).
const packageDir = join(resolve(nodeModules), "@bytecodealliance", "componentize-js");
const { exports } = JSON.parse(await readFile(join(packageDir, "package.json"), "utf8"));
const entry = join(packageDir, exports.import ?? exports["."]?.import);
const { componentize } = await import(pathToFileURL(entry).href);
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(wit),
  worldName: "transformer",
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(out, component);
