// The page only renders: everything it shows comes from the wasm module.
import init, * as cpc from "/pkg/cpc_sync.js";

const $ = (id) => document.getElementById(id);

async function main() {
  try {
    await init();
    $("version").textContent = `engine v${cpc.version()}`;
    $("status").textContent = "ready";
    window.cpc = { module: cpc };
    document.body.dataset.ready = "true";
  } catch (error) {
    $("status").textContent = `failed to load: ${error}`;
    $("status").classList.add("error");
    document.body.dataset.ready = "error";
    throw error;
  }
}

main();
