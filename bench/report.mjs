// Regenerates BENCHMARKS.md's measured tables from the benchmark results,
// so the tables and the figures cannot drift apart.
//
//   node bench/report.mjs              render from target/bench/*.json (the
//                                      last full runs) and keep a copy of
//                                      each in bench/results/
//   node bench/report.mjs --committed  render from bench/results/ (what
//                                      the document was last made from)
//   node bench/report.mjs --dry-run    render whatever target/bench holds,
//                                      quick runs too, and write nothing
//                                      (npm test: the renderers cannot rot)
//
// Each result file has a renderer in bench/report/<name>.mjs exporting
// `render(result) -> { section: markdown }`; a section replaces the text
// between `<!-- generated: section -->` and `<!-- /generated -->` in
// BENCHMARKS.md. Quick (smoke) results are refused: they are not figures.
import { readFile, writeFile, copyFile, access } from "node:fs/promises";
import path from "node:path";
import { root } from "./meta.mjs";

const RESULTS = ["compare", "peer", "workloads"];

const committed = process.argv.includes("--committed");
const dryRun = process.argv.includes("--dry-run");
const from = path.join(root, committed ? "bench/results" : "target/bench");
const doc = path.join(root, "BENCHMARKS.md");

const exists = (file) => access(file).then(() => true, () => false);

/** Replaces one generated section's body; fails when its markers are missing. */
export function replaceSection(text, name, body) {
  const open = `<!-- generated: ${name} -->`;
  const start = text.indexOf(open);
  const end = start < 0 ? -1 : text.indexOf("<!-- /generated -->", start);
  if (start < 0 || end < 0) throw new Error(`BENCHMARKS.md has no section "${name}" (${open} ... <!-- /generated -->)`);
  return `${text.slice(0, start + open.length)}\n${body.trim()}\n${text.slice(end)}`;
}

async function main() {
  let text = await readFile(doc, "utf8");
  const rendered = [];
  for (const name of RESULTS) {
    const file = path.join(from, `${name}.json`);
    if (!(await exists(file))) continue;
    const result = JSON.parse(await readFile(file, "utf8"));
    if (!result.meta) {
      console.warn(`${file}: no meta record (an older harness's output); skipped`);
      continue;
    }
    if (result.meta.quick && !dryRun) throw new Error(`${file} is a quick (smoke) run: run the full benchmark first`);
    const { render } = await import(`./report/${name}.mjs`);
    for (const [section, body] of Object.entries(render(result))) {
      text = replaceSection(text, section, body);
      rendered.push(section);
    }
    if (!committed && !dryRun) await copyFile(file, path.join(root, "bench/results", `${name}.json`));
  }
  if (!rendered.length) throw new Error(`no results in ${from}`);
  if (dryRun) return console.log(`report: rendered ${rendered.join(", ")} (dry run, nothing written)`);
  await writeFile(doc, text);
  console.log(`BENCHMARKS.md: regenerated ${rendered.join(", ")} from ${path.relative(root, from)}/`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
