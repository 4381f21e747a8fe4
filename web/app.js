// Loads the WebAssembly client and shows who this browser is. User-visible text is set with
// textContent only, never innerHTML.
import init, { Me, protocolVersion } from "./pkg/peerchat_client_wasm.js";

const status = document.getElementById("status");
const fingerprint = document.getElementById("fingerprint");

try {
  await init();
  const me = await Me.loadOrCreate();
  status.textContent = `Client ready (protocol v${protocolVersion()}).`;
  fingerprint.textContent = `Your key's fingerprint: ${me.fingerprint}`;
  document.body.dataset.state = "ready";
} catch (error) {
  status.textContent = `The client could not start: ${error}`;
  document.body.dataset.state = "failed";
}
