// @ts-check
// The chat page: renders what the WebAssembly client reports and hands it the member's actions.
// All protocol work (login, signatures, outbox, history) happens in the client. Text from other
// people is only ever set with textContent, never parsed as HTML. Lists are drawn by key
// (`renderList`), so an update touches only what changed.
import init, { Client, importIdentity, previewPixels, protocolVersion } from "./pkg/peerchat_client_wasm.js";

// ---- what the client reports ----------------------------------------------------------------
// The objects `Client.start` hands to its callback, and what `history` and `profiles` resolve
// to: serde's JSON of the Rust types named here (shared/src/client/, sync/, mesh/,
// membership.rs; client-wasm/src/page.rs). Keys, ids, nonces and tokens are strings; times are
// Unix milliseconds.

/** `Attachment`: a file a message carries, described (its bytes come from peers).
 * @typedef {{ name: string, media_type: string, size: number, sha256: string, root: string,
 *   image?: { width: number, height: number, preview: string } }} Attachment */
/** `MessageBody`: a text, or a caption (possibly empty) with attachments.
 * @typedef {{ kind: "text", text: string, attachments?: Attachment[] }} MessageBody */
/** `MessageView`: a stored message.
 * @typedef {{ id: string, channel: string, author: string, author_fingerprint: string,
 *   sent_at: number, nonce: string, body: MessageBody }} MessageView */
/** `OutboxEntry`: a message the relay has not acknowledged yet.
 * @typedef {{ channel: string, nonce: string, body: MessageBody, queued_at: number }} OutboxEntry */
/** `Role`. @typedef {"member" | "owner" | "virtual"} Role */
/** `MemberView`: a member online in a channel, once per key.
 * @typedef {{ key: string, fingerprint: string, role: Role, display_name: string | null,
 *   is_me: boolean }} MemberView */
/** `ChannelSummary`: a channel as the relay lists it.
 * @typedef {{ name: string, online: number, default?: boolean }} ChannelSummary */
/** `HistoryState`: how complete a channel's history is.
 * @typedef {{ state: "connecting", peers: number } | { state: "syncing", peers: number }
 *   | { state: "up_to_date" } | { state: "no_peers" }} HistoryState */
/** `MeshStats`: the peer links and what came over them.
 * @typedef {{ data_channels_open: number, relayed_links: number,
 *   envelopes_over_data_channel: number, envelopes_over_relay: number,
 *   envelopes_from_archive_peers: number, relayed_frames_held_back: number,
 *   links_without_candidates: number, links_timed_out: number, links_rotated: number,
 *   chunks_over_data_channel: number, chunks_over_relay: number,
 *   chunks_from_archive_peers: number, relayed_chunks_held_back: number }} MeshStats */
/** `AttachmentForPage`: where a file stands in this browser (client-wasm/src/page.rs).
 * @typedef {{ root: string, size: number,
 *   state: "fetching" | "ready" | "mismatch" | "unavailable" | "declined" | "no_room" | "failed" | "cancelled" | "dropped",
 *   sha256: string | null, held: number, total: number, peers: string[], bytes_per_second: number,
 *   message: string | null }} FileProgress */
/** `Profile`: a member's signed display name, as `Client.profiles` returns them.
 * @typedef {{ member: string, display_name: string, updated_at: number, signature: string }} Profile */
/** `ConnectionState`: the relay connection. @typedef {"connecting" | "online" | "offline" | "stopped"} ConnectionState */
/** `ErrorCode`, snake_case (shared/src/frames.rs). @typedef {string} ErrorCode */

/** @typedef {{ type: "connection", state: ConnectionState, retry_in_millis?: number }} ConnectionEvent */
/** @typedef {{ type: "history_state", channel: string } & HistoryState} HistoryStateEvent */
/** Everything the callback is given: `ClientEvent`, and the driver's `message`, `history`,
 * `history_state`, `peers` and `attachment`.
 * @typedef {ConnectionEvent
 *   | { type: "welcome", session: number, role: Role, relay: string }
 *   | { type: "channels", channels: ChannelSummary[], joined: string[] }
 *   | { type: "members", channel: string, members: MemberView[] }
 *   | { type: "pending", entry: OutboxEntry }
 *   | { type: "send_failed", nonce: string, code: ErrorCode, message: string }
 *   | { type: "problem", code: ErrorCode | null, message: string }
 *   | { type: "stopped", message: string }
 *   | { type: "invite_minted", token: string }
 *   | { type: "message", acknowledged: boolean } & MessageView
 *   | { type: "history", channel: string, messages: MessageView[] }
 *   | HistoryStateEvent
 *   | { type: "peers" } & MeshStats
 *   | { type: "attachment" } & FileProgress} ClientEvent */
/** Each event by its `type`. @typedef {{ [E in ClientEvent as E["type"]]: E }} EventOfType */

// ---- the page's state ---------------------------------------------------------------------

/** A channel opens with its newest messages (one screenful, drawn at once), then fills up to
 * BACKLOG messages behind them; older pages load while scrolling up. */
const FIRST_PAGE = 100;
const BACKLOG = 1000;
const OLDER_PAGE = 200;
/** Most messages a channel's log holds, in memory and on screen, so a long history costs the
 * page no more than a short one. The rest stay in IndexedDB: older ones load again while
 * scrolling up, newer ones with "New messages below". */
const LOG_WINDOW = 1000;
const GROUP_GAP_MS = 5 * 60 * 1000;
const NEAR_BOTTOM_PX = 48;

/**
 * The element with `id`, which the page must have, of the kind given.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {{ new (): T }} kind
 * @returns {T}
 */
function $(id, kind) {
  const node = document.getElementById(id);
  if (!(node instanceof kind)) throw new Error(`the page has no #${id} of the expected kind`);
  return node;
}

const ui = {
  connection: $("connection", HTMLElement), problem: $("problem", HTMLElement),
  channels: $("channels", HTMLUListElement), moreChannels: $("more-channels", HTMLUListElement),
  moreChannelsHeading: $("more-channels-heading", HTMLElement),
  toggleChannels: $("toggle-channels", HTMLButtonElement),
  channelTitle: $("channel-title", HTMLElement), historyState: $("history-state", HTMLElement),
  messages: $("messages", HTMLOListElement), jump: $("jump-to-latest", HTMLButtonElement),
  composer: $("composer", HTMLFormElement), text: $("message-text", HTMLTextAreaElement),
  members: $("members", HTMLUListElement),
  joinForm: $("join-form", HTMLFormElement), joinName: $("join-name", HTMLInputElement),
  settings: $("settings", HTMLDialogElement), fingerprint: $("fingerprint", HTMLElement),
  nameForm: $("name-form", HTMLFormElement), displayName: $("display-name", HTMLInputElement),
  importIdentity: $("import-identity", HTMLInputElement),
  conversation: $("conversation", HTMLElement), uploads: $("uploads", HTMLUListElement),
  attach: $("attach", HTMLButtonElement), attachInput: $("attach-input", HTMLInputElement),
  storageUse: $("storage-use", HTMLElement), storageForm: $("storage-form", HTMLFormElement),
  storageLimit: $("storage-limit", HTMLInputElement),
  automaticFetch: $("automatic-fetch", HTMLInputElement),
  lightbox: $("lightbox", HTMLDialogElement), lightboxImage: $("lightbox-image", HTMLImageElement),
  lightboxCaption: $("lightbox-caption", HTMLElement),
};

/**
 * What the page knows of one channel.
 * @typedef {object} ChannelState
 * @property {number} unread
 * @property {Map<string, MessageView>} messages by id, at most LOG_WINDOW
 * @property {Map<string, OutboxEntry>} pending by nonce, in the order queued
 * @property {Map<string, string>} failed why a pending message was refused, by nonce
 * @property {MemberView[]} members
 * @property {string | null} oldestLoaded
 * @property {string | null} newestId
 * @property {boolean} complete nothing older is stored
 * @property {boolean} newerUnloaded newer messages are stored than the log holds
 * @property {boolean} loaded
 * @property {boolean} loading
 * @property {HistoryStateEvent | null} history
 */

/** The member this page is, once the client has started. @typedef {{ publicKey: string, fingerprint: string }} Me */

/** Everything the page knows, per channel. */
const state = {
  /** @type {Client | null} */
  client: null,
  /** @type {Me | null} */
  me: null,
  /** @type {string | null} */
  active: null,
  /** The channels this member is in: the only ones it receives and keeps. @type {Set<string>} */
  joined: new Set(),
  /** The relay's channel list: name -> sessions online. @type {Map<string, number>} */
  listed: new Map(),
  /** @type {Map<string, ChannelState>} */
  channels: new Map(),
  /** Member key -> display name. @type {Map<string, string>} */
  names: new Map(),
  /** Display names more than one member uses; rebuilt after a change. @type {Set<string> | null} */
  sharedNames: null,
};

/** The started client; the page's actions are wired before it starts. */
function client() {
  if (!state.client) throw new Error("The client has not started yet.");
  return state.client;
}

/** This page's member; known once the client has started. */
function me() {
  if (!state.me) throw new Error("The client has not started yet.");
  return state.me;
}

/** @param {string} name */
function channelState(name) {
  let channel = state.channels.get(name);
  if (!channel) {
    channel = { unread: 0, messages: new Map(), pending: new Map(), failed: new Map(), members: [],
      oldestLoaded: null, newestId: null, complete: false, newerUnloaded: false, loaded: false,
      loading: false, history: null };
    state.channels.set(name, channel);
  }
  return channel;
}

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 */
function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** @param {string} message */
function showProblem(message) {
  ui.problem.textContent = message;
  ui.problem.hidden = false;
}

/** What an exception says, for the member. @param {unknown} error */
function describe(error) {
  return error instanceof Error ? error.message : String(error);
}

/** @param {string} key @param {string} fingerprint */
function authorName(key, fingerprint) {
  const name = state.names.get(key);
  if (name === undefined) {
    return state.me && key === state.me.publicKey ? "You" : `Member ${fingerprint.slice(0, 9)}`;
  }
  return distinctName(name, fingerprint);
}

/** Display names are self-chosen, so one that two members use is shown with the start of each
 * one's key fingerprint (which nobody can choose).
 * @param {string} name @param {string} fingerprint */
function distinctName(name, fingerprint) {
  if (!state.sharedNames) {
    /** @type {Map<string, number>} */
    const users = new Map();
    for (const used of state.names.values()) users.set(used, (users.get(used) ?? 0) + 1);
    state.sharedNames = new Set([...users].filter(([, count]) => count > 1).map(([used]) => used));
  }
  return state.sharedNames.has(name) ? `${name} · ${fingerprint.slice(0, 9)}` : name;
}

/** @param {string} key @param {string} name */
function setName(key, name) {
  state.names.set(key, name);
  state.sharedNames = null;
}

/** @param {number} millis */
function formatTime(millis) {
  return new Date(millis).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// ---- keyed lists --------------------------------------------------------------------------
// A list's node stays for as long as its key does: a changed entry is patched in place (so
// focus inside it survives), and only new, gone and moved nodes are inserted into or taken out
// of the list (so a live region announces only what is new).

/**
 * One entry of a keyed list. `key` names it among its list's entries for as long as it is
 * shown; `signature` sums up everything its node shows, so that an unchanged entry is neither
 * built again nor touched; `build` makes its node.
 * @typedef {{ key: string, signature: string, build: () => Element }} Row
 */

/** The key and signature each list node was drawn with. @type {WeakMap<Element, { key: string, signature: string }>} */
const drawn = new WeakMap();

/** Builds a row's node and remembers what it was drawn from. @param {Row} row */
function draw(row) {
  const node = row.build();
  drawn.set(node, { key: row.key, signature: row.signature });
  return node;
}

/** Brings a row's existing node up to date, in place. @param {Element} node @param {Row} row */
function redraw(node, row) {
  if (drawn.get(node)?.signature === row.signature) return;
  patch(node, row.build());
  drawn.set(node, { key: row.key, signature: row.signature });
}

/** Makes `parent`'s children the nodes of `rows`, in order, keeping the node of every key it
 * already shows. @param {Element} parent @param {Row[]} rows */
function renderList(parent, rows) {
  /** @type {Map<string, Element>} */
  const shown = new Map();
  for (const child of [...parent.children]) {
    const key = drawn.get(child)?.key;
    if (key !== undefined && !shown.has(key)) shown.set(key, child);
    else child.remove();
  }
  const wanted = new Set(rows.map((row) => row.key));
  for (const [key, node] of shown) {
    if (!wanted.has(key)) node.remove();
  }
  /** @type {Map<Element, number>} */
  const position = new Map();
  for (const child of parent.children) position.set(child, position.size);
  /** @type {Element[]} */
  const nodes = [];
  const placed = new Set();
  for (const row of rows) {
    if (placed.has(row.key)) continue; // keys are unique; a repeat would show one node twice
    placed.add(row.key);
    const node = shown.get(row.key);
    if (node) redraw(node, row);
    nodes.push(node ?? draw(row));
  }
  // The nodes already in order stay where they are; the others are inserted or moved.
  const stays = longestIncreasingRun(nodes.map((node) => position.get(node) ?? -1));
  /** @type {Element | null} */
  let next = null;
  for (let index = nodes.length - 1; index >= 0; index -= 1) {
    if (!stays[index]) parent.insertBefore(nodes[index], next);
    next = nodes[index];
  }
}

/** Marks the entries of a longest increasing run in `positions` (negative ones, new nodes,
 * never belong to it): the nodes that need not move.
 * @param {number[]} positions @returns {boolean[]} */
function longestIncreasingRun(positions) {
  /** Index of the smallest last entry of an increasing run of each length. @type {number[]} */
  const ends = [];
  /** @type {number[]} */
  const before = positions.map(() => -1);
  positions.forEach((position, index) => {
    if (position < 0) return;
    let low = 0;
    let high = ends.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (positions[ends[middle]] < position) low = middle + 1;
      else high = middle;
    }
    if (low > 0) before[index] = ends[low - 1];
    ends[low] = index;
  });
  const stays = positions.map(() => false);
  for (let index = ends.length > 0 ? ends[ends.length - 1] : -1; index >= 0; index = before[index]) {
    stays[index] = true;
  }
  return stays;
}

/** Makes `node` show what `fresh` shows, keeping each of its children that has a match of the
 * same tag and class there (in order), and so the focus and text inside it.
 * @param {Element} node @param {Element} fresh */
function patch(node, fresh) {
  for (const name of node.getAttributeNames()) {
    if (!fresh.hasAttribute(name)) node.removeAttribute(name);
  }
  for (const name of fresh.getAttributeNames()) {
    const value = fresh.getAttribute(name) ?? "";
    if (node.getAttribute(name) !== value) node.setAttribute(name, value);
  }
  const old = [...node.childNodes];
  /** @param {Node} child */
  const kind = (child) => (child instanceof Element ? `${child.nodeName}.${child.className}` : child.nodeName);
  let next = 0;
  for (const child of [...fresh.childNodes]) {
    const match = old.findIndex((current, index) => index >= next && kind(current) === kind(child));
    if (match < 0) {
      node.insertBefore(child, old[next] ?? null);
      continue;
    }
    for (const skipped of old.slice(next, match)) skipped.remove();
    next = match + 1;
    const current = old[match];
    if (current instanceof Element && child instanceof Element) patch(current, child);
    else if (current.nodeValue !== child.nodeValue) current.nodeValue = child.nodeValue;
  }
  for (const extra of old.slice(next)) extra.remove();
}

// ---- channel list -------------------------------------------------------------------------

/** The member's channels, then the others the relay lists (opening one joins it). */
function renderChannels() {
  const mine = [...state.joined].sort().map((name) => {
    const unread = channelState(name).unread;
    const current = name === state.active;
    return { key: name, signature: JSON.stringify([unread, current]),
      build: () => joinedChannelItem(name, unread, current) };
  });
  const others = [...state.listed].filter(([name]) => !state.joined.has(name)).map(([name, online]) => (
    { key: name, signature: String(online), build: () => listedChannelItem(name, online) }));
  renderList(ui.channels, mine);
  renderList(ui.moreChannels, others);
  ui.moreChannelsHeading.hidden = others.length === 0;
}

/** @param {string} name @param {number} unread @param {boolean} current */
function joinedChannelItem(name, unread, current) {
  const button = channelButton(name);
  if (current) button.setAttribute("aria-current", "page");
  if (unread > 0) {
    const badge = element("span", "unread", String(unread));
    badge.setAttribute("aria-label", `${unread} unread`);
    button.append(badge);
  }
  return listItem(button);
}

/** @param {string} name @param {number} online */
function listedChannelItem(name, online) {
  const button = channelButton(name);
  button.append(element("span", "online-count", `${online} online`));
  button.setAttribute("aria-label", `Join #${name}, ${online} online`);
  return listItem(button);
}

/** @param {string} name */
function channelButton(name) {
  const button = element("button", "channel-button");
  button.type = "button";
  button.dataset.channel = name;
  button.append(element("span", "channel-name", `#${name}`));
  return button;
}

/** @param {Element} child */
function listItem(child) {
  const item = element("li");
  item.append(child);
  return item;
}

/** The channel a click in a channel list was for, if it was on a channel's button.
 * @param {Event} event */
function clickedChannel(event) {
  const button = event.target instanceof Element ? event.target.closest("button[data-channel]") : null;
  return button instanceof HTMLElement ? button.dataset.channel : undefined;
}

/** Joins and opens a channel; false when the name is refused. @param {string} name */
function joinChannel(name) {
  try {
    client().join(name);
  } catch (error) {
    showProblem(describe(error));
    return false;
  }
  state.joined.add(name);
  openChannel(name);
  return true;
}

/** @param {string} name */
async function openChannel(name) {
  state.active = name;
  const channel = channelState(name);
  channel.unread = 0;
  ui.channelTitle.textContent = `#${name}`;
  document.body.classList.remove("show-channels");
  ui.toggleChannels.setAttribute("aria-expanded", "false");
  renderChannels();
  renderMembers();
  renderHistoryState();
  if (channel.loaded) {
    renderLog({ scrollToBottom: true });
    return;
  }
  await loadOlder(name, FIRST_PAGE);
  if (state.active !== name) return;
  renderLog({ scrollToBottom: true });
  markTime("firstPaintMs");
  const offset = ui.messages.scrollHeight - ui.messages.scrollTop;
  if ((await loadOlder(name, BACKLOG - FIRST_PAGE)) > 0 && state.active === name) {
    trimLog(name);
    renderLog({ keepOffsetFromBottom: offset });
  }
  markTime("backlogDrawnMs");
}

/** Records when a milestone of the first load was reached, for docs/benchmarks.md.
 * @param {string} milestone */
function markTime(milestone) {
  if (document.body.dataset[milestone] === undefined) {
    document.body.dataset[milestone] = performance.now().toFixed(1);
  }
}

// ---- history ------------------------------------------------------------------------------

/** Loads a page of older messages from IndexedDB; returns how many came.
 * @param {string} name @param {number} [size] */
async function loadOlder(name, size = OLDER_PAGE) {
  const channel = channelState(name);
  if (channel.complete || channel.loading) return 0;
  channel.loading = true;
  try {
    /** @type {MessageView[]} */
    const page = await client().history(name, channel.oldestLoaded ?? undefined, size);
    for (const view of page) channel.messages.set(view.id, view);
    if (page.length > 0 && (!channel.newestId || page[0].id > channel.newestId)) channel.newestId = page[0].id;
    if (page.length > 0) channel.oldestLoaded = page[page.length - 1].id;
    if (page.length < size) channel.complete = true;
    channel.loaded = true;
    return page.length;
  } catch (error) {
    showProblem(`Could not read the history: ${describe(error)}`);
    return 0;
  } finally {
    channel.loading = false;
  }
}

/** Keeps a channel's log within LOG_WINDOW, dropping from the end away from the reader: the
 * oldest while they read the newest, else the newest (reloaded by "New messages below").
 * Returns the ids dropped.
 * @param {string} name @param {boolean} [readingNewest] @returns {string[]} */
function trimLog(name, readingNewest = name !== state.active || isNearBottom()) {
  const channel = channelState(name);
  const excess = channel.messages.size - LOG_WINDOW;
  if (excess <= 0) return [];
  const ids = [...channel.messages.keys()].sort();
  const dropped = readingNewest ? ids.slice(0, excess) : ids.slice(ids.length - excess);
  for (const id of dropped) channel.messages.delete(id);
  if (readingNewest) {
    channel.oldestLoaded = ids[excess];
    channel.complete = false;
  } else {
    channel.newestId = ids[ids.length - excess - 1];
    channel.newerUnloaded = true;
    ui.jump.hidden = false;
  }
  return dropped;
}

/** Opens the active channel at its newest messages, reloading them if the log holds older
 * ones only. */
async function showLatest() {
  if (!state.active) return;
  const channel = channelState(state.active);
  if (!channel.newerUnloaded) {
    scrollToLatest();
    return;
  }
  Object.assign(channel, { messages: new Map(), newestId: null, oldestLoaded: null, complete: false,
    newerUnloaded: false, loaded: false });
  await openChannel(state.active);
}

// ---- message log --------------------------------------------------------------------------

function isNearBottom() {
  const log = ui.messages;
  return log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM_PX;
}

/** @param {string} id */
const messageKey = (id) => `message ${id}`;
/** @param {string} nonce */
const pendingKey = (nonce) => `pending ${nonce}`;

/** Whether a message goes under the author and time of the one before it.
 * @param {MessageView} view @param {MessageView | null} previous */
function isGrouped(view, previous) {
  return previous !== null && previous.author === view.author && view.sent_at - previous.sent_at < GROUP_GAP_MS;
}

/** A stored message in the log. @param {MessageView} view @param {MessageView | null} previous
 * @returns {Row} */
function messageRow(view, previous) {
  const grouped = isGrouped(view, previous);
  const author = grouped ? null : authorName(view.author, view.author_fingerprint);
  return { key: messageKey(view.id), signature: JSON.stringify(author),
    build: () => messageItem(view, author) };
}

/** @param {MessageView} view @param {string | null} author null under the one before */
function messageItem(view, author) {
  const item = element("li", "message");
  item.dataset.id = view.id;
  item.dataset.nonce = view.nonce;
  item.dataset.author = view.author;
  item.dataset.state = "sent";
  if (author !== null) item.append(messageHeader(author, view.author_fingerprint, view.sent_at));
  else item.classList.add("grouped");
  item.append(messageBody(view.body));
  return item;
}

/** @param {string} author @param {string} fingerprint @param {number} time */
function messageHeader(author, fingerprint, time) {
  const header = element("div", "message-header");
  const name = element("span", "author", author);
  name.title = `Key fingerprint ${fingerprint}`;
  const stamp = element("time", "time", formatTime(time));
  stamp.dateTime = new Date(time).toISOString();
  stamp.title = new Date(time).toLocaleString();
  header.append(name, stamp);
  return header;
}

/** @param {MessageBody} body */
function messageBody(body) {
  const attachments = body.attachments ?? [];
  if (attachments.length === 0) return element("p", "text", body.text);
  const part = element("div", "body");
  if (body.text) part.append(element("p", "text", body.text));
  const list = element("ul", "attachments");
  for (const attachment of attachments) list.append(attachmentItem(attachment));
  part.append(list);
  return part;
}

// ---- attachments --------------------------------------------------------------------------
// A file's bytes come from peers, checked chunk by chunk in the client and as a whole against
// the signed SHA-256; the page shows a file only from those bytes (a `blob:` URL), never from
// anything a message names. Raster images are shown inline: first their preview (a BlurHash in
// the signed message), then the image. Everything else, SVG and HTML included, is offered as a
// download only, so no file can run script in the page.

/** Images up to this size load as soon as they are shown; larger ones, and other files, when
 * the member asks. */
const AUTO_LOAD_BYTES = 16 * 1024 * 1024;
/** Media types drawn inline. */
const INLINE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"]);
/** An image's preview is drawn this many pixels on its longer side (then scaled up). */
const PREVIEW_SIDE = 32;
/** Files one message carries at most (docs/protocol.md §8). */
const MAX_ATTACHMENTS = 10;

/** What the page knows of a file as one description has it, by `root:size:sha256`: the
 * description, whether the client was asked for it, where its bytes stand, and its `blob:` URL
 * once shown. Two descriptions of the same bytes (`root:size`) may claim other digests: each
 * is checked on its own, so one that lies shows as not matching and the other still opens.
 * @type {Map<string, { attachment: Attachment, asked: boolean, progress: FileProgress | null,
 *   url: string | null, saveWhenReady: boolean }>} */
const files = new Map();
/** The keys in `files` of each `root:size`. @type {Map<string, Set<string>>} */
const descriptionsOf = new Map();

/** @param {Attachment} attachment */
function fileKey(attachment) {
  return `${attachment.root}:${attachment.size}:${attachment.sha256}`;
}

/** @param {{ root: string, size: number }} file */
function contentKey(file) {
  return `${file.root}:${file.size}`;
}

/** @param {Attachment} attachment */
function isInline(attachment) {
  return attachment.image !== undefined && INLINE_TYPES.has(attachment.media_type);
}

/** @param {Attachment} attachment */
function fileEntry(attachment) {
  const key = fileKey(attachment);
  let entry = files.get(key);
  if (!entry) {
    entry = { attachment, asked: false, progress: null, url: null, saveWhenReady: false };
    files.set(key, entry);
    const content = contentKey(attachment);
    const keys = descriptionsOf.get(content) ?? new Set();
    keys.add(key);
    descriptionsOf.set(content, keys);
  }
  return entry;
}

/** One attachment in a message. @param {Attachment} attachment */
function attachmentItem(attachment) {
  const entry = fileEntry(attachment);
  const inline = isInline(attachment);
  const item = element("li", inline ? "attachment image" : "attachment file");
  item.dataset.file = fileKey(attachment);
  if (inline) {
    item.append(imageTile(attachment), element("p", "file-status"));
    if (attachment.size <= AUTO_LOAD_BYTES && entry.progress === null) queueMicrotask(() => openFile(attachment));
  } else {
    const card = element("div", "file-card");
    card.append(element("span", "file-name", attachment.name),
      element("span", "file-meta", `${attachment.media_type}, ${formatBytes(attachment.size)}`),
      element("span", "file-status"));
    const action = element("button", "file-action");
    if (action instanceof HTMLButtonElement) action.type = "button";
    card.append(action);
    item.append(card);
  }
  showFileState(item, entry);
  return item;
}

/** An image: its preview at once, the image over it once its bytes are here.
 * @param {Attachment} attachment */
function imageTile(attachment) {
  const image = attachment.image;
  const tile = element("button", "image-tile");
  if (tile instanceof HTMLButtonElement) tile.type = "button";
  tile.setAttribute("aria-label", `Open image ${attachment.name}`);
  if (!image) return tile;
  tile.style.aspectRatio = `${image.width} / ${image.height}`;
  tile.style.width = `${Math.min(image.width, 320)}px`;
  const scale = PREVIEW_SIDE / Math.max(image.width, image.height);
  const width = Math.max(1, Math.round(image.width * scale));
  const height = Math.max(1, Math.round(image.height * scale));
  const pixels = previewPixels(image.preview, width, height);
  const canvas = document.createElement("canvas");
  canvas.className = "preview";
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  if (pixels && context) context.putImageData(new ImageData(new Uint8ClampedArray(pixels), width, height), 0, 0);
  tile.append(canvas);
  return tile;
}

/** Brings a shown attachment up to date with what the page knows of its file.
 * @param {HTMLElement} item @param {{ attachment: Attachment, progress: FileProgress | null, url: string | null }} entry */
function showFileState(item, entry) {
  const { attachment, progress, url } = entry;
  item.dataset.state = progress?.state ?? "not_fetched";
  item.dataset.peers = (progress?.peers ?? []).join(",");
  item.dataset.held = String(progress?.held ?? 0);
  const tile = item.querySelector(".image-tile");
  if (tile && url && !tile.querySelector("img")) {
    const img = document.createElement("img");
    img.alt = attachment.name;
    img.src = url;
    tile.append(img);
  }
  const status = item.querySelector(".file-status");
  const action = item.querySelector(".file-action");
  if (status) status.textContent = fileStatusText(progress);
  if (action instanceof HTMLButtonElement) {
    const state = progress?.state;
    action.textContent = state === "fetching" ? "Cancel" : state === "ready" ? "Save" : "Download";
    action.hidden = state === "mismatch";
    action.setAttribute("aria-label", `${action.textContent} ${attachment.name}`);
  }
}

/** @param {FileProgress | null} progress */
function fileStatusText(progress) {
  if (!progress) return "";
  switch (progress.state) {
    case "fetching": {
      const share = progress.total > 0 ? Math.floor((100 * progress.held) / progress.total) : 0;
      const peers = progress.peers.length;
      const from = peers > 0 ? ` from ${peers} ${peers === 1 ? "peer" : "peers"}, ${formatBytes(progress.bytes_per_second)}/s` : "";
      return `Downloading: ${share}%${from}`;
    }
    case "ready": return "";
    case "mismatch": return "This file does not match its description and was not opened.";
    case "unavailable": return "Nobody online has this file now; it comes when someone who has it is online.";
    case "declined": return "Too many files are downloading at once; open it again in a moment.";
    case "dropped": return "Removed from this browser to make room for newer files; open it to fetch it again.";
    case "no_room": return `No room for it within this browser's storage limit (You → Files). ${progress.message ?? ""}`;
    case "failed": return `It could not be kept: ${progress.message ?? "unknown error"}`;
    default: return "";
  }
}

/** Asks the client for a file (it fetches what this browser does not hold yet).
 * @param {Attachment} attachment */
function openFile(attachment) {
  const entry = fileEntry(attachment);
  const state = entry.progress?.state;
  if (entry.asked && (state === undefined || state === "fetching" || state === "ready" || state === "mismatch")) return;
  entry.asked = true;
  try {
    client().openAttachment(attachment);
  } catch (error) {
    showProblem(describe(error));
  }
}

/** The page's files shown in the open log, drawn again from what the page knows.
 * @param {string} key */
function redrawFile(key) {
  const entry = files.get(key);
  if (!entry) return;
  for (const item of ui.messages.querySelectorAll(`li.attachment[data-file="${CSS.escape(key)}"]`)) {
    if (item instanceof HTMLElement) showFileState(item, entry);
  }
}

/** Where the bytes of a file stand, for each description of them.
 * @param {FileProgress} progress */
async function onFileProgress(progress) {
  for (const key of descriptionsOf.get(contentKey(progress)) ?? []) {
    const entry = files.get(key);
    if (!entry) continue;
    const matches = progress.state !== "ready" || progress.sha256 === entry.attachment.sha256;
    await showProgress(key, entry, matches ? progress : { ...progress, state: "mismatch" });
  }
}

/** @param {string} key
 * @param {{ attachment: Attachment, asked: boolean, progress: FileProgress | null, url: string | null,
 *   saveWhenReady: boolean }} entry
 * @param {FileProgress} progress */
async function showProgress(key, entry, progress) {
  entry.progress = progress;
  if (progress.state === "dropped") {
    entry.asked = false;
    if (entry.url) URL.revokeObjectURL(entry.url);
    entry.url = null;
    for (const img of ui.messages.querySelectorAll(`li.attachment[data-file="${CSS.escape(key)}"] .image-tile img`)) img.remove();
  }
  if (progress.state === "ready" && (isInline(entry.attachment) || entry.saveWhenReady)) {
    const blob = await client().attachmentBlob(entry.attachment);
    if (!(blob instanceof Blob)) {
      entry.progress = { ...progress, state: "mismatch" };
    } else if (isInline(entry.attachment)) {
      entry.url ??= URL.createObjectURL(blob);
    }
    if (blob instanceof Blob && entry.saveWhenReady) {
      entry.saveWhenReady = false;
      saveBlob(blob, entry.attachment.name);
    }
  }
  redrawFile(key);
}

/** Offers `blob` as a download named `name` (the browser makes the name safe for its disk).
 * @param {Blob} blob @param {string} name */
function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  saveUrl(url, name);
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Offers the `blob:` URL `url` as a download named `name`. @param {string} url @param {string} name */
function saveUrl(url, name) {
  const link = element("a");
  if (!(link instanceof HTMLAnchorElement)) return;
  link.href = url;
  link.download = name;
  link.click();
}

/** The file buttons in the log: one listener for all. @param {MouseEvent} event */
function clickedInLog(event) {
  const target = event.target instanceof Element ? event.target : null;
  const item = target?.closest("li.attachment");
  if (!(item instanceof HTMLElement) || !item.dataset.file) return;
  const entry = files.get(item.dataset.file);
  if (!entry) return;
  if (target?.closest(".image-tile")) {
    if (entry.url) openLightbox(entry.url);
    else openFile(entry.attachment);
  } else if (target?.closest(".file-action")) {
    const state = entry.progress?.state;
    if (state === "fetching") {
      client().cancelAttachment(entry.attachment.root, entry.attachment.size);
    } else {
      entry.saveWhenReady = true;
      if (state === "ready") onFileProgress(entry.progress ?? { ...entry.attachment, state: "ready", held: 0,
        total: 0, peers: [], bytes_per_second: 0, message: null });
      else openFile(entry.attachment);
    }
  }
}

// ---- the lightbox -------------------------------------------------------------------------

/** The images shown in the open log, in order. */
function imagesInLog() {
  return [...ui.messages.querySelectorAll("li.attachment.image img")]
    .filter((img) => img instanceof HTMLImageElement);
}

/** @param {string} url */
function openLightbox(url) {
  const image = imagesInLog().find((img) => img instanceof HTMLImageElement && img.src === url);
  if (!(image instanceof HTMLImageElement)) return;
  showInLightbox(image);
  if (!ui.lightbox.open) ui.lightbox.showModal();
}

/** @param {HTMLImageElement} image */
function showInLightbox(image) {
  ui.lightboxImage.src = image.src;
  ui.lightboxImage.alt = image.alt;
  ui.lightboxCaption.textContent = image.alt;
}

/** Shows the image `step` places from the one shown. @param {number} step */
function stepLightbox(step) {
  const images = imagesInLog();
  const at = images.findIndex((img) => img instanceof HTMLImageElement && img.src === ui.lightboxImage.src);
  const next = images[at + step];
  if (next instanceof HTMLImageElement) showInLightbox(next);
}

function wireLightbox() {
  $("lightbox-previous", HTMLButtonElement).addEventListener("click", () => stepLightbox(-1));
  $("lightbox-next", HTMLButtonElement).addEventListener("click", () => stepLightbox(1));
  $("lightbox-save", HTMLButtonElement).addEventListener("click", () => {
    saveUrl(ui.lightboxImage.src, ui.lightboxImage.alt);
  });
  ui.lightbox.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") stepLightbox(-1);
    else if (event.key === "ArrowRight") stepLightbox(1);
  });
}

// ---- files to send ------------------------------------------------------------------------

/** A file being hashed and stored in this browser before its message goes.
 * @typedef {{ id: number, file: File, abort: AbortController, done: number, total: number,
 *   attachment: Attachment | null, error: string | null, ready: Promise<void> }} Upload */
/** @type {Upload[]} */
let uploads = [];
let nextUpload = 0;

/** Starts preparing each of `list` to be sent with the next message. @param {Iterable<File>} list */
function addFiles(list) {
  for (const file of list) {
    const abort = new AbortController();
    /** @type {Upload} */
    const upload = { id: nextUpload++, file, abort, done: 0, total: file.size, attachment: null, error: null,
      ready: Promise.resolve() };
    upload.ready = prepareUpload(upload);
    uploads.push(upload);
  }
  renderUploads();
}

/** @param {Upload} upload */
async function prepareUpload(upload) {
  try {
    const image = await measureImage(upload.file);
    upload.attachment = await client().prepareAttachment(upload.file, image, (/** @type {number} */ done, /** @type {number} */ total) => {
      upload.done = done;
      upload.total = total;
      renderUploads();
    }, upload.abort.signal);
  } catch (error) {
    upload.error = upload.abort.signal.aborted ? "cancelled" : describe(error);
  }
  renderUploads();
}

/** A raster image's size and its pixels drawn small, for the preview; null for anything else
 * (or an image this browser cannot decode, which is then sent as a plain file).
 * @param {File} file */
async function measureImage(file) {
  if (!INLINE_TYPES.has(file.type.toLowerCase())) return null;
  try {
    const bitmap = await createImageBitmap(file);
    const { width, height } = bitmap;
    if (width < 1 || height < 1 || width > 65535 || height > 65535) return null;
    const scale = PREVIEW_SIDE / Math.max(width, height);
    const sampleWidth = Math.max(1, Math.round(width * scale));
    const sampleHeight = Math.max(1, Math.round(height * scale));
    const canvas = new OffscreenCanvas(sampleWidth, sampleHeight);
    const context = canvas.getContext("2d");
    if (!context) return null;
    context.drawImage(bitmap, 0, 0, sampleWidth, sampleHeight);
    bitmap.close();
    const pixels = context.getImageData(0, 0, sampleWidth, sampleHeight).data;
    return { width, height, sample_width: sampleWidth, sample_height: sampleHeight,
      pixels: new Uint8Array(pixels.buffer) };
  } catch {
    return null;
  }
}

function renderUploads() {
  renderList(ui.uploads, uploads.map((upload) => {
    const state = upload.error ? "failed" : upload.attachment ? "ready" : "preparing";
    return { key: String(upload.id), signature: JSON.stringify([state, upload.done, upload.error]),
      build: () => uploadItem(upload, state) };
  }));
}

/** @param {Upload} upload @param {string} state */
function uploadItem(upload, state) {
  const item = element("li", "upload");
  item.dataset.state = state;
  item.dataset.upload = String(upload.id);
  item.append(element("span", "file-name", upload.file.name));
  if (state === "preparing") {
    const bar = document.createElement("progress");
    bar.max = Math.max(1, upload.total);
    bar.value = upload.done;
    bar.setAttribute("aria-label", `Preparing ${upload.file.name}`);
    item.append(bar);
  } else {
    item.append(element("span", "file-meta", state === "failed" ? `Not attached: ${upload.error}` : formatBytes(upload.file.size)));
  }
  const remove = element("button", "remove-upload", state === "preparing" ? "Cancel" : "Remove");
  if (remove instanceof HTMLButtonElement) remove.type = "button";
  remove.setAttribute("aria-label", `${remove.textContent} ${upload.file.name}`);
  remove.dataset.upload = String(upload.id);
  item.append(remove);
  return item;
}

/** @param {MouseEvent} event */
function clickedInUploads(event) {
  const button = event.target instanceof Element ? event.target.closest("button.remove-upload") : null;
  if (!(button instanceof HTMLButtonElement)) return;
  const upload = uploads.find((candidate) => String(candidate.id) === button.dataset.upload);
  if (!upload) return;
  upload.abort.abort();
  uploads = uploads.filter((candidate) => candidate !== upload);
  renderUploads();
  ui.text.focus();
}

function wireAttaching() {
  ui.attach.addEventListener("click", () => ui.attachInput.click());
  ui.attachInput.addEventListener("change", () => {
    addFiles(ui.attachInput.files ?? []);
    ui.attachInput.value = "";
  });
  ui.text.addEventListener("paste", (event) => {
    const pasted = event.clipboardData?.files;
    if (pasted && pasted.length > 0) {
      event.preventDefault();
      addFiles(pasted);
    }
  });
  const carriesFiles = (/** @type {DragEvent} */ event) => event.dataTransfer?.types.includes("Files") ?? false;
  ui.conversation.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    ui.conversation.classList.add("dropping");
  });
  ui.conversation.addEventListener("dragleave", () => ui.conversation.classList.remove("dropping"));
  ui.conversation.addEventListener("drop", (event) => {
    ui.conversation.classList.remove("dropping");
    if (!carriesFiles(event)) return;
    event.preventDefault();
    addFiles(event.dataTransfer?.files ?? []);
  });
  ui.uploads.addEventListener("click", clickedInUploads);
  ui.messages.addEventListener("click", clickedInLog);
}

// ---- storage ------------------------------------------------------------------------------

/** The storage limit when the member has not set one: half of what the browser grants the site,
 * at most 4 GiB. */
async function defaultStorageLimit() {
  const estimate = await navigator.storage?.estimate?.();
  const quota = estimate?.quota ?? 2 * 1024 ** 3;
  return Math.min(Math.floor(quota / 2), 4 * 1024 ** 3);
}

/** Sets the default limit once, and asks the browser (once) not to clear the site's storage
 * under pressure: files here may be the only copy some peer can get. */
async function prepareStorage() {
  const use = await client().storageUse();
  if (use.limit === null) await client().setStorageLimit(await defaultStorageLimit());
  if (navigator.storage?.persist && localStorage.getItem("peerchat-persist-asked") === null) {
    localStorage.setItem("peerchat-persist-asked", "yes");
    await navigator.storage.persist();
  }
}

async function showStorage() {
  const use = await client().storageUse();
  const limit = use.limit ?? (await defaultStorageLimit());
  ui.storageUse.textContent = `Files in this browser: ${formatBytes(use.used)} of ${formatBytes(limit)}.`;
  ui.storageLimit.value = String(Math.round(limit / 1024 ** 2));
  ui.automaticFetch.value = String(use.automaticFetch / 1024 ** 2);
}

function wireStorage() {
  ui.storageForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const megabytes = Number(ui.storageLimit.value);
    if (!Number.isFinite(megabytes) || megabytes < 16) {
      showProblem("The storage limit is at least 16 megabytes.");
      return;
    }
    // Left empty: left as it is.
    const automatic = ui.automaticFetch.value === "" ? null : Number(ui.automaticFetch.value);
    if (automatic !== null && !(Number.isFinite(automatic) && automatic >= 0 && automatic <= 64)) {
      showProblem("Files are fetched as they are posted up to at most 64 megabytes (0 for none).");
      return;
    }
    try {
      await client().setStorageLimit(megabytes * 1024 ** 2);
      if (automatic !== null) await client().setAutomaticFetchLimit(Math.round(automatic * 1024 ** 2));
      await showStorage();
    } catch (error) {
      showProblem(describe(error));
    }
  });
}

/** @param {number} bytes */
function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** A message of this member's that the relay has not acknowledged.
 * @param {OutboxEntry} entry @param {string | undefined} failure @returns {Row} */
function pendingRow(entry, failure) {
  const { publicKey, fingerprint } = me();
  const author = authorName(publicKey, fingerprint);
  return { key: pendingKey(entry.nonce), signature: JSON.stringify([author, failure ?? null]),
    build: () => pendingItem(entry, author, fingerprint, failure) };
}

/** @param {OutboxEntry} entry @param {string} author @param {string} fingerprint
 * @param {string | undefined} failure */
function pendingItem(entry, author, fingerprint, failure) {
  const item = element("li", "message pending");
  item.dataset.nonce = entry.nonce;
  item.dataset.author = me().publicKey;
  item.dataset.state = failure ? "failed" : "pending";
  item.append(messageHeader(author, fingerprint, entry.queued_at));
  item.append(messageBody(entry.body));
  item.append(element("p", "delivery", failure ? `Not sent: ${failure}` : "Sending…"));
  return item;
}

/** @param {ChannelState} channel */
function sortedMessages(channel) {
  return [...channel.messages.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** The open channel's log: its messages by id, then its unsent ones. Only what changed is
 * touched: the log, a live region, announces just the messages added.
 * @param {{ scrollToBottom?: boolean, keepOffsetFromBottom?: number | null }} [options] */
function renderLog({ scrollToBottom = false, keepOffsetFromBottom = null } = {}) {
  logGeneration += 1;
  if (!state.active) return;
  const channel = channelState(state.active);
  const wasNearBottom = isNearBottom();
  /** @type {MessageView | null} */
  let previous = null;
  /** @type {Row[]} */
  const rows = [];
  for (const view of sortedMessages(channel)) {
    rows.push(messageRow(view, previous));
    previous = view;
  }
  for (const entry of channel.pending.values()) rows.push(pendingRow(entry, channel.failed.get(entry.nonce)));
  renderList(ui.messages, rows);
  if (keepOffsetFromBottom !== null) {
    ui.messages.scrollTop = ui.messages.scrollHeight - keepOffsetFromBottom;
  } else if (scrollToBottom || wasNearBottom) {
    scrollToLatest();
  }
}

/** Lets the open log's node of an unsent message stand for it once stored, so that it changes
 * in place instead of leaving the log and coming back.
 * @param {string} nonce @param {string} id */
function keepPendingNode(nonce, id) {
  const key = pendingKey(nonce);
  for (let node = ui.messages.lastElementChild; node; node = node.previousElementSibling) {
    if (drawn.get(node)?.key === key) {
      drawn.set(node, { key: messageKey(id), signature: "" });
      return;
    }
  }
}

/** Least time between two redraws of the log for history batches (a newcomer's backlog arrives
 * in hundreds of them; redrawing for each would make receiving it quadratic). */
const LOG_REDRAW_MILLIS = 250;
/** A redraw costs time in proportion to the log's length; waiting this many times its cost
 * before the next keeps redraws under a tenth of the page's time, however long the log. */
const LOG_REDRAW_COST_FACTOR = 9;
/** @type {{ timer: ReturnType<typeof setTimeout> | null, last: number, cost: number }} */
let logRedraw = { timer: null, last: -Infinity, cost: 0 };

/** Redraws the open log soon, once for all the batches that come in meanwhile, keeping the
 * reader's place. */
function renderLogSoon() {
  if (logRedraw.timer !== null) return;
  const gap = Math.max(LOG_REDRAW_MILLIS, LOG_REDRAW_COST_FACTOR * logRedraw.cost);
  const wait = Math.max(0, logRedraw.last + gap - performance.now());
  logRedraw.timer = setTimeout(() => {
    const start = performance.now();
    renderLog({ keepOffsetFromBottom: isNearBottom() ? null : ui.messages.scrollHeight - ui.messages.scrollTop });
    const end = performance.now();
    logRedraw = { timer: null, last: end, cost: end - start };
  }, wait);
}

function scrollToLatest() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
  ui.jump.hidden = true;
}

/** Messages waiting to be appended to the open log, each with the one before it; appended
 * together once the client has reported the batch they came in.
 * @type {{ view: MessageView, previous: MessageView, generation: number }[]} */
let logAppends = [];
/** Counts full redraws of the log, which draw whatever was waiting to be appended. */
let logGeneration = 0;

/** Adds a newly stored message to the open log without going through the whole log, when it is
 * the newest. @param {MessageView} view @param {string | null} previousNewestId */
function appendToLog(view, previousNewestId) {
  const channel = channelState(view.channel);
  const previous = previousNewestId === null ? undefined : channel.messages.get(previousNewestId);
  if (channel.pending.size > 0 || !previous || previous.id > view.id) {
    renderLog();
    return;
  }
  logAppends.push({ view, previous, generation: logGeneration });
  if (logAppends.length === 1) queueMicrotask(flushLogAppends);
}

/** Appends the waiting messages at once: one layout for a whole batch, however long the log. */
function flushLogAppends() {
  const appends = logAppends.filter((append) => append.generation === logGeneration
    && append.view.channel === state.active);
  logAppends = [];
  if (appends.length === 0 || !state.active) return;
  const channel = channelState(state.active);
  const nearBottom = isNearBottom();
  ui.messages.append(...appends.map(({ view, previous }) => draw(messageRow(view, previous))));
  removeFromLog(channel, trimLog(state.active, nearBottom));
  if (nearBottom) scrollToLatest();
  else ui.jump.hidden = false;
}

/** Takes messages trimmed from the open channel off the screen (they are at one end of it);
 * the new first one gets its author and time back if it was grouped under one now gone.
 * @param {ChannelState} channel @param {string[]} droppedIds */
function removeFromLog(channel, droppedIds) {
  if (droppedIds.length === 0) return;
  const dropped = new Set(droppedIds.map(messageKey));
  const isDropped = (/** @type {Element | null} */ node) => node !== null && dropped.has(drawn.get(node)?.key ?? "");
  while (isDropped(ui.messages.firstElementChild)) ui.messages.firstElementChild?.remove();
  while (isDropped(ui.messages.lastElementChild)) ui.messages.lastElementChild?.remove();
  const first = ui.messages.firstElementChild;
  const view = first instanceof HTMLElement && first.dataset.id ? channel.messages.get(first.dataset.id) : undefined;
  if (first && view) redraw(first, messageRow(view, null));
}

// ---- members ------------------------------------------------------------------------------

function renderMembers() {
  const channel = state.active ? channelState(state.active) : null;
  renderList(ui.members, (channel?.members ?? []).map((member) => {
    const name = member.display_name
      ? distinctName(member.display_name, member.fingerprint)
      : `Member ${member.fingerprint.slice(0, 9)}`;
    const shown = member.is_me ? `${name} (you)` : name;
    return { key: member.key, signature: JSON.stringify([shown, member.role, member.fingerprint]),
      build: () => memberItem(member, shown) };
  }));
}

/** @param {MemberView} member @param {string} shown */
function memberItem(member, shown) {
  const item = element("li", "member");
  item.dataset.key = member.key;
  item.append(element("span", "member-name", shown));
  if (member.role === "virtual") item.append(element("span", "role", "archive peer"));
  if (member.role === "owner") item.append(element("span", "role", "owner"));
  item.title = `Key fingerprint ${member.fingerprint}`;
  return item;
}

// ---- events from the client ---------------------------------------------------------------

/** @param {ConnectionEvent} event */
function connectionText(event) {
  switch (event.state) {
    case "connecting": return "Connecting…";
    case "online": return "Online";
    case "offline": return `Offline, retrying in ${Math.ceil((event.retry_in_millis ?? 0) / 1000)} s`;
    case "stopped": return "Disconnected";
  }
}

/** @param {number} count */
const peers = (count) => `${count} ${count === 1 ? "peer" : "peers"}`;

/** @param {HistoryState} history */
function historyText(history) {
  switch (history.state) {
    case "connecting": return `Connecting to ${peers(history.peers)}…`;
    case "syncing": return `Syncing history from ${peers(history.peers)}…`;
    case "up_to_date": return "History up to date";
    case "no_peers": return "History may be incomplete: no peer online";
  }
}

function renderHistoryState() {
  const history = state.active ? channelState(state.active).history : null;
  ui.historyState.textContent = history ? historyText(history) : "";
  document.body.dataset.historyState = history?.state ?? "";
}

/** @type {{ [K in keyof EventOfType]: (event: EventOfType[K]) => void }} */
const handlers = {
  connection(event) {
    ui.connection.textContent = connectionText(event);
    document.body.dataset.connection = event.state;
    if (event.state === "online") {
      ui.problem.hidden = true;
      document.body.dataset.onlineMs ??= performance.now().toFixed(1);
    }
  },
  welcome() {
    if (location.hash.startsWith("#invite=")) history.replaceState(null, "", location.pathname);
  },
  channels(event) {
    state.listed = new Map(event.channels.map((summary) => [summary.name, summary.online]));
    state.joined = new Set(event.joined);
    renderChannels();
    if (!state.active && event.joined.length > 0) {
      openChannel(state.joined.has("general") ? "general" : event.joined[0]);
    }
  },
  members(event) {
    const channel = channelState(event.channel);
    channel.members = event.members;
    let renamed = false;
    for (const member of event.members) {
      if (member.display_name && state.names.get(member.key) !== member.display_name) {
        setName(member.key, member.display_name);
        renamed = true;
      }
    }
    if (event.channel === state.active) renderMembers();
    if (renamed && state.active) renderLog();
  },
  pending(event) {
    const channel = channelState(event.entry.channel);
    channel.pending.set(event.entry.nonce, event.entry);
    if (event.entry.channel !== state.active) return;
    if (channel.newerUnloaded) showLatest();
    else renderLog({ scrollToBottom: true });
  },
  send_failed(event) {
    for (const [name, channel] of state.channels) {
      if (channel.pending.has(event.nonce)) {
        channel.failed.set(event.nonce, event.message);
        if (name === state.active) renderLog();
      }
    }
    showProblem(event.message);
  },
  message(event) {
    const channel = channelState(event.channel);
    const wasPending = channel.pending.delete(event.nonce);
    channel.failed.delete(event.nonce);
    const known = channel.messages.has(event.id);
    if (known && !wasPending) return;
    if (channel.newerUnloaded) {
      // Stored; the log holds older messages only, so it shows up with the newest ones.
      if (event.channel === state.active) ui.jump.hidden = false;
      if (wasPending) renderLog();
      return;
    }
    const previousNewestId = channel.newestId;
    channel.messages.set(event.id, event);
    if (!channel.newestId || event.id > channel.newestId) channel.newestId = event.id;
    if (event.channel === state.active) {
      if (wasPending) {
        if (!known) keepPendingNode(event.nonce, event.id);
        trimLog(event.channel);
        renderLog();
      } else if (channel.loaded) appendToLog(event, previousNewestId);
    } else if (event.author !== state.me?.publicKey) {
      channel.unread += 1;
      renderChannels();
    }
  },
  history(event) {
    const channel = channelState(event.channel);
    let added = 0;
    for (const view of event.messages) {
      if (channel.messages.has(view.id)) continue;
      if (channel.newerUnloaded && channel.newestId !== null && view.id > channel.newestId) continue;
      channel.messages.set(view.id, view);
      if (!channel.newestId || view.id > channel.newestId) channel.newestId = view.id;
      if (view.author !== state.me?.publicKey) added += 1;
    }
    trimLog(event.channel);
    if (added === 0) return;
    if (event.channel === state.active) {
      // A backlog older than the whole log only reaches IndexedDB.
      if (channel.loaded && event.messages.some((view) => channel.messages.has(view.id))) renderLogSoon();
    } else {
      channel.unread += added;
      renderChannels();
    }
  },
  history_state(event) {
    channelState(event.channel).history = event;
    if (event.channel === state.active) renderHistoryState();
  },
  peers(event) {
    const data = document.body.dataset;
    data.dataChannelsOpen = String(event.data_channels_open);
    data.relayedLinks = String(event.relayed_links);
    data.envelopesOverDataChannel = String(event.envelopes_over_data_channel);
    data.envelopesOverRelay = String(event.envelopes_over_relay);
    data.envelopesFromArchivePeers = String(event.envelopes_from_archive_peers);
    data.linksWithoutCandidates = String(event.links_without_candidates);
    data.linksTimedOut = String(event.links_timed_out);
    data.chunksOverDataChannel = String(event.chunks_over_data_channel);
    data.chunksOverRelay = String(event.chunks_over_relay);
    data.chunksFromArchivePeers = String(event.chunks_from_archive_peers);
    if (event.envelopes_over_data_channel + event.envelopes_over_relay > 0) {
      data.firstPeerEnvelopeMs ??= performance.now().toFixed(1);
      data.lastPeerEnvelopeMs = performance.now().toFixed(1);
    }
  },
  attachment(event) { onFileProgress(event); },
  problem(event) { showProblem(event.message); },
  stopped(event) { showProblem(event.message); },
  invite_minted(event) {
    showProblem(`Invite link: ${location.origin}/#invite=${event.token}`);
  },
};

/** Events that arrive while `Client.start` is still returning wait here. @type {ClientEvent[]} */
const early = [];

/** The client's callback. @param {ClientEvent} event */
function onClientEvent(event) {
  if (!state.client) {
    early.push(event);
    return;
  }
  // A newer client may report kinds this page does not know yet.
  if (Object.hasOwn(handlers, event.type)) handle(event.type, event);
}

/** @template {keyof EventOfType} K @param {K} type @param {EventOfType[K]} event */
function handle(type, event) {
  handlers[type](event);
}

// ---- the member's actions -----------------------------------------------------------------

async function sendFromComposer() {
  const text = ui.text.value;
  const channel = state.active;
  if (!channel || (text.trim() === "" && uploads.length === 0)) return;
  const sending = uploads;
  try {
    if (sending.length === 0) {
      client().send(channel, text);
    } else {
      uploads = [];
      ui.text.value = "";
      autoGrow();
      await Promise.all(sending.map((upload) => upload.ready));
      const attachments = sending.flatMap((upload) => (upload.attachment ? [upload.attachment] : []));
      const failed = sending.filter((upload) => upload.error && upload.error !== "cancelled");
      uploads = failed;
      renderUploads();
      if (attachments.length === 0 && text.trim() === "") return;
      if (attachments.length === 0) client().send(channel, text);
      for (let first = 0; first < attachments.length; first += MAX_ATTACHMENTS) {
        client().sendWithAttachments(channel, first === 0 ? text : "", attachments.slice(first, first + MAX_ATTACHMENTS));
      }
      return;
    }
    ui.text.value = "";
    autoGrow();
  } catch (error) {
    showProblem(describe(error));
  }
}

function autoGrow() {
  ui.text.style.height = "auto";
  ui.text.style.height = `${Math.min(ui.text.scrollHeight, 200)}px`;
}

function wireComposer() {
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    sendFromComposer();
  });
  ui.text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendFromComposer();
    }
  });
  ui.text.addEventListener("input", autoGrow);
  ui.jump.addEventListener("click", showLatest);
  ui.messages.addEventListener("scroll", async () => {
    if (!state.active) return;
    if (isNearBottom() && !channelState(state.active).newerUnloaded) ui.jump.hidden = true;
    if (ui.messages.scrollTop > 80) return;
    const name = state.active;
    const offset = ui.messages.scrollHeight - ui.messages.scrollTop;
    if ((await loadOlder(name)) > 0 && state.active === name) {
      trimLog(name);
      renderLog({ keepOffsetFromBottom: offset });
    }
  });
}

function wirePanels() {
  for (const [buttonId, className] of [["toggle-channels", "show-channels"], ["toggle-members", "show-members"]]) {
    const button = $(buttonId, HTMLButtonElement);
    button.addEventListener("click", () => {
      const shown = document.body.classList.toggle(className);
      button.setAttribute("aria-expanded", String(shown));
    });
  }
  // One listener per list: its buttons come and go with the channels.
  ui.channels.addEventListener("click", (event) => {
    const name = clickedChannel(event);
    if (name !== undefined) openChannel(name);
  });
  ui.moreChannels.addEventListener("click", (event) => {
    const name = clickedChannel(event);
    if (name === undefined || !joinChannel(name)) return;
    // The channel moved to the member's list: its button there takes the focus.
    const button = ui.channels.querySelector(`button[data-channel="${CSS.escape(name)}"]`);
    if (button instanceof HTMLButtonElement) button.focus();
  });
  ui.joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = ui.joinName.value.trim().toLowerCase();
    if (!name) return;
    if (joinChannel(name)) ui.joinName.value = "";
  });
}

function wireSettings() {
  $("open-settings", HTMLButtonElement).addEventListener("click", () => {
    ui.displayName.value = state.client?.displayName ?? "";
    ui.settings.showModal();
    if (state.client) showStorage().catch((error) => showProblem(describe(error)));
  });
  ui.nameForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await client().setDisplayName(ui.displayName.value);
      const name = client().displayName;
      if (name !== undefined) setName(me().publicKey, name);
      renderLog();
    } catch (error) {
      showProblem(describe(error));
    }
  });
  $("export-identity", HTMLButtonElement).addEventListener("click", () => {
    const file = new Blob([client().exportFile()], { type: "application/json" });
    const link = element("a");
    link.href = URL.createObjectURL(file);
    link.download = `peerchat-identity-${me().fingerprint.slice(0, 4)}.json`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  });
  ui.importIdentity.addEventListener("change", async () => {
    const file = ui.importIdentity.files?.[0];
    if (!file) return;
    try {
      await importIdentity(await file.text());
      location.reload();
    } catch (error) {
      showProblem(`That identity file was not imported: ${describe(error)}`);
    }
  });
}

// ---- start --------------------------------------------------------------------------------

function relayUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/ws`;
}

function inviteFromLink() {
  const match = /^#invite=([A-Za-z0-9_-]+)$/.exec(location.hash);
  return match ? match[1] : undefined;
}

/** Lets the page open while the relay is unreachable (see sw.js). */
async function keepShellForOffline() {
  if (!("serviceWorker" in navigator)) return;
  try {
    await navigator.serviceWorker.register("sw.js");
    await navigator.serviceWorker.ready;
    document.body.dataset.offlineShell = "ready";
  } catch (error) {
    console.warn("The page will not open offline:", error);
  }
}

async function start() {
  keepShellForOffline();
  wireComposer();
  wirePanels();
  wireSettings();
  wireAttaching();
  wireLightbox();
  wireStorage();
  try {
    await init();
    const started = await Client.start(relayUrl(), inviteFromLink(), onClientEvent);
    state.me = { publicKey: started.publicKey, fingerprint: started.fingerprint };
    ui.fingerprint.textContent = started.fingerprint;
    /** @type {Profile[]} */
    const profiles = await started.profiles();
    for (const profile of profiles) setName(profile.member, profile.display_name);
    if (started.displayName) setName(state.me.publicKey, started.displayName);
    document.body.dataset.protocol = String(protocolVersion());
    state.client = started;
    markTime("clientReadyMs");
    for (const event of early.splice(0)) onClientEvent(event);
    prepareStorage().catch((error) => console.warn("Storage for files:", error));
  } catch (error) {
    ui.connection.textContent = "Not started";
    document.body.dataset.connection = "failed";
    showProblem(`The client could not start: ${describe(error)}`);
  }
}

start();
