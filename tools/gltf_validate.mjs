// Validate glTF/GLB files with the Khronos glTF validator (npm package gltf-validator, installed by
// `npm ci` in the repository root). Usage: node tools/gltf_validate.mjs FILE...
// Prints one JSON line per file: {"path", "errors", "warnings", "infos", "hints", "messages": [...]}.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");

for (const path of process.argv.slice(2)) {
  const bytes = new Uint8Array(await readFile(path));
  const report = await validator.validateBytes(bytes, { maxIssues: 50 });
  const issues = report.issues;
  console.log(JSON.stringify({
    path,
    errors: issues.numErrors,
    warnings: issues.numWarnings,
    infos: issues.numInfos,
    hints: issues.numHints,
    messages: issues.messages.map((m) => `${["error", "warning", "info", "hint"][m.severity]} ${m.code} ${m.pointer || ""}: ${m.message}`),
  }));
}
