// Keeps the page's own files so that it opens, with its history from IndexedDB, while the relay
// cannot be reached. Network first: whenever the relay answers, its files win and are kept.
const CACHE = "peerchat-shell-v1";
const SHELL = ["./", "index.html", "app.js", "style.css", "pkg/peerchat_client_wasm.js", "pkg/peerchat_client_wasm_bg.wasm"];
const SHELL_PATHS = new Set(SHELL.map((path) => new URL(path, self.location).pathname));

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !SHELL_PATHS.has(url.pathname)) return;
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(url.pathname, copy)));
        }
        return response;
      })
      .catch(() => caches.match(url.pathname).then((cached) => cached ?? Response.error())),
  );
});
