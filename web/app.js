// Loads the WebAssembly client and reports its state. User-visible text is set with
// textContent only, never innerHTML.
import init, { protocolVersion } from "./pkg/peerchat_client_wasm.js";

const status = document.getElementById("status");

try {
  await init();
  status.textContent = `Client ready (protocol v${protocolVersion()}).`;
  document.body.dataset.state = "ready";
} catch (error) {
  status.textContent = `The client could not start: ${error}`;
  document.body.dataset.state = "failed";
}
