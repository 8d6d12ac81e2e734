// Summaries of repeated measurements, shared by the harnesses (Node and
// the benchmark pages) and the report: every figure is kept as its samples
// and summarized the same way everywhere.

/** The `q` quantile of `samples` (nearest rank; q in [0, 1]). */
export function quantile(samples, q) {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export const median = (samples) => quantile(samples, 0.5);

/** `{ min, median, p90, runs }` of the samples. */
export function summary(samples) {
  if (!samples.length) throw new Error("no samples to summarize");
  return {
    min: Math.min(...samples),
    median: median(samples),
    p90: quantile(samples, 0.9),
    runs: samples.length,
  };
}
