// @ts-check
// Keeps the page's files so that it opens, with its history from IndexedDB, while the relay
// cannot be reached, and so that a repeat visit downloads nothing but a revalidated page.
// `cargo xtask web` writes ASSETS (this build's content-hashed files) and BUILD above.
// - Hashed files never change under their name: served from this build's cache, else fetched
//   and kept.
// - The page itself (index.html) is network first: a new deploy is picked up on the next load
//   (its new hashed names are fetched then), and the cached copy opens the page offline.
// - Each build has its own cache; once this worker activates, other builds' caches go.
/** This script's global scope: TypeScript's worker library types `self` as any kind of worker's,
 * and this one is a service worker. */
const worker = /** @type {ServiceWorkerGlobalScope} */ (/** @type {unknown} */ (self));
const CACHE = `peerchat-${BUILD}`;
const PAGE = new URL("./", worker.location.href).href;
const ASSET_URLS = new Set(ASSETS.map((path) => new URL(path, worker.location.href).href));

worker.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll([PAGE, ...ASSET_URLS])).then(() => worker.skipWaiting()));
});

worker.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name.startsWith("peerchat-") && name !== CACHE).map((name) => caches.delete(name))))
      .then(() => worker.clients.claim()),
  );
});

worker.addEventListener("fetch", (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== worker.location.origin) return;
  url.hash = "";
  if (ASSET_URLS.has(url.href)) {
    event.respondWith(cacheFirst(event, url.href));
  } else if (request.mode === "navigate" || url.href === PAGE || url.href === `${PAGE}index.html`) {
    event.respondWith(pageNetworkFirst(event));
  }
});

/** @param {FetchEvent} event @param {string} key */
async function cacheFirst(event, key) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(key);
  if (cached) return cached;
  const response = await fetch(event.request);
  if (response.ok) event.waitUntil(cache.put(key, response.clone()));
  return response;
}

/** @param {FetchEvent} event */
async function pageNetworkFirst(event) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(event.request);
    if (response.ok) event.waitUntil(cache.put(PAGE, response.clone()));
    return response;
  } catch (error) {
    return (await cache.match(PAGE)) ?? Response.error();
  }
}
