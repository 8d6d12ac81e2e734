// The side-by-side workloads: what each writer does, in each library, and
// the state every library must end in. Pure functions of the sizes; the
// libraries' own code is in libraries.js.

/** B3.1: `n` writers each set one shared key to their index. */
export const B3_1 = { name: "B3_1", sameKey: true };
/** C1.2: `n` writers each set their own key `key{i}` to `i`. */
export const C1_2 = { name: "C1_2", sameKey: false };

/**
 * The run-heavy workload: `writers` writers making `updates` updates each
 * over `keys` keys, in bursts of `burst` (a page's task), their bursts
 * interleaved. Writer `w`'s update `j` sets `key{(j * writers + w) % keys}`
 * to `j`: each writer has its own keys, so the final state is the same
 * whatever a library's tie-break.
 */
export function runHeavyWrite(w, j, writers, keys) {
  return [`key${(j * writers + w) % keys}`, j];
}

/** The state every library must end in after `workload` (B3.1: see below). */
export function expectedState(workload, sizes) {
  const state = {};
  if (workload === "C1_2") {
    for (let i = 0; i < sizes.c12; i++) state[`key${i}`] = i;
  } else if (workload === "run_heavy") {
    const { writers, updates, keys } = sizes.runHeavy;
    for (let j = 0; j < updates; j++) {
      for (let w = 0; w < writers; w++) {
        const [key, value] = runHeavyWrite(w, j, writers, keys);
        state[key] = value;
      }
    }
  }
  // B3.1's one key holds the write each library's rule picks among
  // concurrent ones; the generator knows which (libraries.js).
  return state;
}

/** JSON with sorted keys: equal states print equal. */
export function canonical(state) {
  return JSON.stringify(Object.fromEntries(Object.entries(state).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}
