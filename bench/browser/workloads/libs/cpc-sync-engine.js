// cpc-sync's engine alone, without the `Peer` around it (no sync node, no
// log folds, no storage): the bench build's `WorkloadDoc`, one signed
// writer sealing each burst. A second, labelled row of the memory
// workload, to tell what the engine holds from what the peer adds.
let bench;

export default {
  name: "cpc-sync (engine alone)",
  transport: "none (an engine alone)",
  persistence: "none (an engine alone)",

  async init() {
    bench = await import("../../../../target/bench/pkg/cpc_sync.js");
    await bench.default();
  },

  memory: {
    open: () => new bench.WorkloadDoc(),
    write: (doc, from, to) => doc.write(from, to),
    state: (doc) => JSON.parse(doc.stateJson()),
  },
};
