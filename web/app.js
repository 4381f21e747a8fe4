// The chat page: renders what the WebAssembly client reports and hands it the member's actions.
// All protocol work (login, signatures, outbox, history) happens in the client. Text from other
// people is only ever set with textContent, never parsed as HTML.
import init, { Client, importIdentity, protocolVersion } from "./pkg/peerchat_client_wasm.js";

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

const $ = (id) => document.getElementById(id);
const ui = {
  connection: $("connection"), problem: $("problem"), channels: $("channels"),
  moreChannels: $("more-channels"), moreChannelsHeading: $("more-channels-heading"),
  channelTitle: $("channel-title"), historyState: $("history-state"), messages: $("messages"), jump: $("jump-to-latest"),
  composer: $("composer"), text: $("message-text"), members: $("members"),
  joinForm: $("join-form"), joinName: $("join-name"), settings: $("settings"),
  fingerprint: $("fingerprint"), nameForm: $("name-form"), displayName: $("display-name"),
};

/** Everything the page knows, per channel. */
const state = {
  client: null,
  me: null,
  active: null,
  joined: new Set(), // the channels this member is in: the only ones it receives and keeps
  listed: new Map(), // the relay's channel list: name -> sessions online
  channels: new Map(), // name -> { online, unread, messages: Map(id -> view) (at most LOG_WINDOW), pending: Map(nonce -> entry), failed: Map(nonce -> reason), members: [], oldestLoaded, complete, newerUnloaded }
  names: new Map(), // member key -> display name
  sharedNames: null, // display names more than one member uses; rebuilt after a change
};

function channelState(name) {
  let channel = state.channels.get(name);
  if (!channel) {
    channel = { online: 0, unread: 0, messages: new Map(), pending: new Map(), failed: new Map(),
      members: [], oldestLoaded: null, complete: false, newerUnloaded: false, loaded: false, history: null };
    state.channels.set(name, channel);
  }
  return channel;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showProblem(message) {
  ui.problem.textContent = message;
  ui.problem.hidden = false;
}

function authorName(key, fingerprint) {
  const name = state.names.get(key);
  if (name === undefined) {
    return state.me && key === state.me.publicKey ? "You" : `Member ${fingerprint.slice(0, 9)}`;
  }
  return distinctName(name, fingerprint);
}

/** Display names are self-chosen, so one that two members use is shown with the start of each
 * one's key fingerprint (which nobody can choose). */
function distinctName(name, fingerprint) {
  if (!state.sharedNames) {
    const users = new Map();
    for (const used of state.names.values()) users.set(used, (users.get(used) ?? 0) + 1);
    state.sharedNames = new Set([...users].filter(([, count]) => count > 1).map(([used]) => used));
  }
  return state.sharedNames.has(name) ? `${name} · ${fingerprint.slice(0, 9)}` : name;
}

function setName(key, name) {
  state.names.set(key, name);
  state.sharedNames = null;
}

function formatTime(millis) {
  return new Date(millis).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// ---- channel list -------------------------------------------------------------------------

/** The member's channels, then the others the relay lists (opening one joins it). */
function renderChannels() {
  const mine = [...state.joined].sort().map((name) => {
    const channel = channelState(name);
    const button = channelButton(name);
    if (name === state.active) button.setAttribute("aria-current", "page");
    if (channel.unread > 0) {
      const badge = element("span", "unread", String(channel.unread));
      badge.setAttribute("aria-label", `${channel.unread} unread`);
      button.append(badge);
    }
    button.addEventListener("click", () => openChannel(name));
    return listItem(button);
  });
  const others = [...state.listed].filter(([name]) => !state.joined.has(name)).map(([name, online]) => {
    const button = channelButton(name);
    button.append(element("span", "online-count", `${online} online`));
    button.setAttribute("aria-label", `Join #${name}, ${online} online`);
    button.addEventListener("click", () => joinChannel(name));
    return listItem(button);
  });
  ui.channels.replaceChildren(...mine);
  ui.moreChannels.replaceChildren(...others);
  ui.moreChannelsHeading.hidden = others.length === 0;
}

function channelButton(name) {
  const button = element("button", "channel-button");
  button.type = "button";
  button.dataset.channel = name;
  button.append(element("span", "channel-name", `#${name}`));
  return button;
}

function listItem(child) {
  const item = element("li");
  item.append(child);
  return item;
}

/** Joins and opens a channel; false when the name is refused. */
function joinChannel(name) {
  try {
    state.client.join(name);
  } catch (error) {
    showProblem(String(error.message ?? error));
    return false;
  }
  state.joined.add(name);
  openChannel(name);
  return true;
}

async function openChannel(name) {
  state.active = name;
  const channel = channelState(name);
  channel.unread = 0;
  ui.channelTitle.textContent = `#${name}`;
  document.body.classList.remove("show-channels");
  $("toggle-channels").setAttribute("aria-expanded", "false");
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

/** Records when a milestone of the first load was reached, for docs/benchmarks.md. */
function markTime(milestone) {
  if (document.body.dataset[milestone] === undefined) {
    document.body.dataset[milestone] = performance.now().toFixed(1);
  }
}

// ---- history ------------------------------------------------------------------------------

async function loadOlder(name, size = OLDER_PAGE) {
  const channel = channelState(name);
  if (channel.complete || channel.loading) return 0;
  channel.loading = true;
  try {
    const page = await state.client.history(name, channel.oldestLoaded ?? undefined, size);
    for (const view of page) channel.messages.set(view.id, view);
    if (page.length > 0 && (!channel.newestId || page[0].id > channel.newestId)) channel.newestId = page[0].id;
    if (page.length > 0) channel.oldestLoaded = page[page.length - 1].id;
    if (page.length < size) channel.complete = true;
    channel.loaded = true;
    return page.length;
  } catch (error) {
    showProblem(`Could not read the history: ${error}`);
    return 0;
  } finally {
    channel.loading = false;
  }
}

/** Keeps a channel's log within LOG_WINDOW, dropping from the end away from the reader: the
 * oldest while they read the newest, else the newest (reloaded by "New messages below").
 * Returns the ids dropped. */
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

function messageItem(view, previous) {
  const item = element("li", "message");
  item.dataset.id = view.id;
  item.dataset.nonce = view.nonce;
  item.dataset.author = view.author;
  item.dataset.state = "sent";
  const grouped = previous && previous.author === view.author && view.sent_at - previous.sent_at < GROUP_GAP_MS;
  if (!grouped) item.append(messageHeader(view.author, view.author_fingerprint, view.sent_at));
  else item.classList.add("grouped");
  item.append(messageBody(view.body));
  return item;
}

function messageHeader(author, fingerprint, time) {
  const header = element("div", "message-header");
  const name = element("span", "author", authorName(author, fingerprint));
  name.title = `Key fingerprint ${fingerprint}`;
  const stamp = element("time", "time", formatTime(time));
  stamp.dateTime = new Date(time).toISOString();
  stamp.title = new Date(time).toLocaleString();
  header.append(name, stamp);
  return header;
}

function messageBody(body) {
  if (body.kind === "text") return element("p", "text", body.text);
  return element("p", "text attachment", `Attachment: ${body.name} (${body.size} bytes)`);
}

function pendingItem(entry, failure) {
  const item = element("li", "message pending");
  item.dataset.nonce = entry.nonce;
  item.dataset.author = state.me.publicKey;
  item.dataset.state = failure ? "failed" : "pending";
  item.append(messageHeader(state.me.publicKey, state.me.fingerprint, entry.queued_at));
  item.append(messageBody(entry.body));
  item.append(element("p", "delivery", failure ? `Not sent: ${failure}` : "Sending…"));
  return item;
}

function sortedMessages(channel) {
  return [...channel.messages.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function renderLog({ scrollToBottom = false, keepOffsetFromBottom = null } = {}) {
  logGeneration += 1;
  const channel = channelState(state.active);
  const wasNearBottom = isNearBottom();
  let previous = null;
  const items = [];
  for (const view of sortedMessages(channel)) {
    items.push(messageItem(view, previous));
    previous = view;
  }
  for (const entry of channel.pending.values()) items.push(pendingItem(entry, channel.failed.get(entry.nonce)));
  ui.messages.replaceChildren(...items);
  if (keepOffsetFromBottom !== null) {
    ui.messages.scrollTop = ui.messages.scrollHeight - keepOffsetFromBottom;
  } else if (scrollToBottom || wasNearBottom) {
    scrollToLatest();
  }
}

/** Least time between two redraws of the log for history batches (a newcomer's backlog arrives
 * in hundreds of them; redrawing for each would make receiving it quadratic). */
const LOG_REDRAW_MILLIS = 250;
/** A redraw costs time in proportion to the log's length; waiting this many times its cost
 * before the next keeps redraws under a tenth of the page's time, however long the log. */
const LOG_REDRAW_COST_FACTOR = 9;
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
 * together once the client has reported the batch they came in. */
let logAppends = [];
/** Counts full redraws of the log, which draw whatever was waiting to be appended. */
let logGeneration = 0;

/** Adds a newly stored message to the open log without redrawing it, when it is the newest. */
function appendToLog(view, previousNewestId) {
  const channel = channelState(view.channel);
  const previous = channel.messages.get(previousNewestId);
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
  if (appends.length === 0) return;
  const channel = channelState(state.active);
  const nearBottom = isNearBottom();
  ui.messages.append(...appends.map(({ view, previous }) => messageItem(view, previous)));
  removeFromLog(channel, trimLog(state.active, nearBottom));
  if (nearBottom) scrollToLatest();
  else ui.jump.hidden = false;
}

/** Takes messages trimmed from the open channel off the screen (they are at one end of it);
 * the new first one gets its author and time back if it was grouped under one now gone. */
function removeFromLog(channel, droppedIds) {
  if (droppedIds.length === 0) return;
  const dropped = new Set(droppedIds);
  for (const end of ["firstElementChild", "lastElementChild"]) {
    while (ui.messages[end] && dropped.has(ui.messages[end].dataset.id)) ui.messages[end].remove();
  }
  const first = ui.messages.firstElementChild;
  const view = first && channel.messages.get(first.dataset.id);
  if (view && first.classList.contains("grouped")) first.replaceWith(messageItem(view, null));
}

// ---- members ------------------------------------------------------------------------------

function renderMembers() {
  const channel = state.active ? channelState(state.active) : null;
  const items = (channel?.members ?? []).map((member) => {
    const item = element("li", "member");
    item.dataset.key = member.key;
    const name = member.display_name
      ? distinctName(member.display_name, member.fingerprint)
      : `Member ${member.fingerprint.slice(0, 9)}`;
    item.append(element("span", "member-name", member.is_me ? `${name} (you)` : name));
    if (member.role === "virtual") item.append(element("span", "role", "archive peer"));
    if (member.role === "owner") item.append(element("span", "role", "owner"));
    item.title = `Key fingerprint ${member.fingerprint}`;
    return item;
  });
  ui.members.replaceChildren(...items);
}

// ---- events from the client ---------------------------------------------------------------

const CONNECTION_TEXT = {
  connecting: () => "Connecting…",
  online: () => "Online",
  offline: (event) => `Offline, retrying in ${Math.ceil((event.retry_in_millis ?? 0) / 1000)} s`,
  stopped: () => "Disconnected",
};

const peers = (count) => `${count} ${count === 1 ? "peer" : "peers"}`;

const HISTORY_TEXT = {
  connecting: (state) => `Connecting to ${peers(state.peers)}…`,
  syncing: (state) => `Syncing history from ${peers(state.peers)}…`,
  up_to_date: () => "History up to date",
  no_peers: () => "History may be incomplete: no peer online",
};

function renderHistoryState() {
  const history = state.active ? channelState(state.active).history : null;
  ui.historyState.textContent = history ? HISTORY_TEXT[history.state](history) : "";
  document.body.dataset.historyState = history?.state ?? "";
}

const handlers = {
  connection(event) {
    ui.connection.textContent = CONNECTION_TEXT[event.state](event);
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
    if (channel.messages.has(event.id) && !wasPending) return;
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
        trimLog(event.channel);
        renderLog();
      } else if (channel.loaded) appendToLog(event, previousNewestId);
    } else if (event.author !== state.me.publicKey) {
      channel.unread += 1;
      renderChannels();
    }
  },
  history(event) {
    const channel = channelState(event.channel);
    let added = 0;
    for (const view of event.messages) {
      if (channel.messages.has(view.id)) continue;
      if (channel.newerUnloaded && view.id > channel.newestId) continue;
      channel.messages.set(view.id, view);
      if (!channel.newestId || view.id > channel.newestId) channel.newestId = view.id;
      if (view.author !== state.me.publicKey) added += 1;
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
    data.dataChannelsOpen = event.data_channels_open;
    data.relayedLinks = event.relayed_links;
    data.envelopesOverDataChannel = event.envelopes_over_data_channel;
    data.envelopesOverRelay = event.envelopes_over_relay;
    data.envelopesFromArchivePeers = event.envelopes_from_archive_peers;
    data.linksWithoutCandidates = event.links_without_candidates;
    data.linksTimedOut = event.links_timed_out;
    if (event.envelopes_over_data_channel + event.envelopes_over_relay > 0) {
      data.firstPeerEnvelopeMs ??= performance.now().toFixed(1);
      data.lastPeerEnvelopeMs = performance.now().toFixed(1);
    }
  },
  problem(event) { showProblem(event.message); },
  stopped(event) { showProblem(event.message); },
  invite_minted(event) {
    showProblem(`Invite link: ${location.origin}/#invite=${event.token}`);
  },
};

/** Events that arrive while `Client.start` is still returning wait here. */
const early = [];

function onClientEvent(event) {
  if (!state.client) {
    early.push(event);
    return;
  }
  const handler = handlers[event.type];
  if (handler) handler(event);
}

// ---- the member's actions -----------------------------------------------------------------

function sendFromComposer() {
  const text = ui.text.value;
  if (text.trim() === "" || !state.active) return;
  try {
    state.client.send(state.active, text);
    ui.text.value = "";
    autoGrow();
  } catch (error) {
    showProblem(String(error.message ?? error));
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
    if (isNearBottom() && !channelState(state.active).newerUnloaded) ui.jump.hidden = true;
    if (ui.messages.scrollTop > 80 || !state.active) return;
    const offset = ui.messages.scrollHeight - ui.messages.scrollTop;
    if ((await loadOlder(state.active)) > 0) {
      trimLog(state.active);
      renderLog({ keepOffsetFromBottom: offset });
    }
  });
}

function wirePanels() {
  for (const [buttonId, className] of [["toggle-channels", "show-channels"], ["toggle-members", "show-members"]]) {
    const button = $(buttonId);
    button.addEventListener("click", () => {
      const shown = document.body.classList.toggle(className);
      button.setAttribute("aria-expanded", String(shown));
    });
  }
  ui.joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = ui.joinName.value.trim().toLowerCase();
    if (!name) return;
    if (joinChannel(name)) ui.joinName.value = "";
  });
}

function wireSettings() {
  $("open-settings").addEventListener("click", () => {
    ui.displayName.value = state.client.displayName ?? "";
    ui.settings.showModal();
  });
  ui.nameForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await state.client.setDisplayName(ui.displayName.value);
      setName(state.me.publicKey, state.client.displayName);
      renderLog();
    } catch (error) {
      showProblem(String(error.message ?? error));
    }
  });
  $("export-identity").addEventListener("click", () => {
    const file = new Blob([state.client.exportFile()], { type: "application/json" });
    const link = element("a");
    link.href = URL.createObjectURL(file);
    link.download = `peerchat-identity-${state.me.fingerprint.slice(0, 4)}.json`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  });
  $("import-identity").addEventListener("change", async (event) => {
    const [file] = event.target.files;
    if (!file) return;
    try {
      await importIdentity(await file.text());
      location.reload();
    } catch (error) {
      showProblem(`That identity file was not imported: ${error.message ?? error}`);
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
  try {
    await init();
    const client = await Client.start(relayUrl(), inviteFromLink(), onClientEvent);
    state.me = { publicKey: client.publicKey, fingerprint: client.fingerprint };
    ui.fingerprint.textContent = client.fingerprint;
    for (const profile of await client.profiles()) setName(profile.member, profile.display_name);
    if (client.displayName) setName(state.me.publicKey, client.displayName);
    document.body.dataset.protocol = String(protocolVersion());
    state.client = client;
    markTime("clientReadyMs");
    for (const event of early.splice(0)) onClientEvent(event);
  } catch (error) {
    ui.connection.textContent = "Not started";
    document.body.dataset.connection = "failed";
    showProblem(`The client could not start: ${error.message ?? error}`);
  }
}

start();
