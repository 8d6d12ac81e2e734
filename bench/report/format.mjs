// Formatting shared by the renderers of bench/report.mjs.
import { summary } from "../stats.mjs";

/** A number with `digits` decimals and thousands separators. */
export function num(x, digits = 0) {
  if (typeof x !== "number" || !Number.isFinite(x)) return "–";
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Milliseconds, with fewer decimals as they grow. */
export const ms = (x) => `${num(x, x < 10 ? 2 : x < 100 ? 1 : 0)} ms`;

/** "min / median / p90" of samples through `unit`. */
export function spread(samples, unit = ms) {
  const s = summary(samples);
  return `${unit(s.min)} / **${unit(s.median)}** / ${unit(s.p90)}`;
}

/** A Markdown table. */
export function table(header, rows) {
  const line = (cells) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

/** The line under every generated table: where and when it was measured. */
export function provenance(meta, extra = "") {
  const versions = Object.entries(meta.versions ?? {})
    .map(([name, v]) => `${name} ${v}`)
    .join(", ");
  return `Measured ${meta.date} at ${meta.commit ?? "?"} on ${meta.machine}, ${meta.browser ?? "no browser"}; ${versions}.${extra ? ` ${extra}` : ""}`;
}

/** "met" / "missed by x%" for a median judged against a goal. */
export function verdict(value, goal, { higherIsBetter = false } = {}) {
  const met = higherIsBetter ? value >= goal : value <= goal;
  if (met) return "met";
  const by = higherIsBetter ? goal / value : value / goal;
  return `missed (${by.toFixed(2)}×)`;
}
