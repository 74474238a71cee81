// Live updates for the task pages.
//
// One socket (/ws/tasks/?html=1) carries task.updated and task.log events with pre-rendered HTML (the same partials
// the server used for the page). Every task event carries the task's version: an event not newer than what the page
// shows is dropped, and a jump in versions means the page missed something, so it resyncs. It also resyncs on every
// (re)connect and polls while the socket is down: the page fetches its own "live" fragment (hx-target header) and
// the log lines after the last one it shows. No business rules here: the server decides what a task looks like.

const body = document.body;
const pageKind = body.dataset.page; // "dashboard" | "detail" | undefined
const detailTaskId = Number(body.dataset.taskId || 0);
const indicator = document.getElementById("live-indicator");
const toasts = document.getElementById("toasts");

const POLL_MS = 3000;           // while the socket is down
const SAFETY_RESYNC_MS = 15000; // while it is up: covers events lost inside the server (e.g. a Redis restart)
const versions = new Map();     // task id -> newest version this page has applied

let socket = null;
let retries = 0;
let pollTimer = null;
let resyncTimer = null;
let resyncing = false;
let resyncAgain = false;

// --- Small helpers --------------------------------------------------------------------------------------------------

function parse(html) {
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  return template.content;
}

function rememberVersions(root) {
  root.querySelectorAll("[data-task-id][data-version]").forEach((el) => {
    const id = Number(el.dataset.taskId);
    versions.set(id, Math.max(versions.get(id) || 0, Number(el.dataset.version)));
  });
}

function setState(state, label) {
  if (!indicator) return;
  indicator.dataset.state = state;
  indicator.querySelector(".live-label").textContent = label;
}

function toast(message, level = "info") {
  const el = document.createElement("div");
  el.className = `toast toast-${level}`;
  el.setAttribute("role", level === "error" ? "alert" : "status");
  const text = document.createElement("span");
  text.className = "toast-text";
  text.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  el.append(text, close);
  toasts.append(el);
  setTimeout(() => el.remove(), level === "error" ? 9000 : 6000);
}

toasts.addEventListener("click", (event) => {
  if (event.target.matches(".toast-close")) event.target.closest(".toast").remove();
});
toasts.querySelectorAll("[data-server-toast]").forEach((el) => setTimeout(() => el.remove(), 6000));

// --- Socket ---------------------------------------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/tasks/?html=1`);
  socket.addEventListener("open", () => {
    retries = 0;
    stopPolling();
    setState("live", "Live");
    if (pageKind === "detail") socket.send(JSON.stringify({ subscribe: detailTaskId }));
    else resync(); // whatever changed between the page load (or the drop) and now
  });
  socket.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
  socket.addEventListener("close", () => {
    socket = null;
    setState("offline", "Offline · polling");
    startPolling();
    const delay = Math.min(10000, 500 * 2 ** retries++) * (0.75 + Math.random() / 2);
    setTimeout(connect, delay);
  });
}

function onMessage(message) {
  if (message.type === "task.updated") onTaskUpdated(message);
  else if (message.type === "task.log" && message.task_id === detailTaskId) insertLogLines(parse(message.html));
  else if (message.type === "subscribed") resync(); // lines logged before the subscription took effect
}

function onTaskUpdated({ task, previous_status: previous, html, base_version: base = task.version - 1 }) {
  const known = versions.get(task.id);
  if (known !== undefined && task.version <= known) return; // stale or duplicate
  versions.set(task.id, task.version);
  const transition = Boolean(previous) && previous !== task.status;
  // New to this page: created after the snapshot the page shows (so not counted in it yet).
  const newHere = pageKind === "dashboard" && known === undefined &&
    Date.parse(task.created_at) > Date.parse(liveRegion().dataset.syncedAt);
  if (resyncing && (transition || newHere)) resyncAgain = true; // the fetch in flight may predate this change
  if (transition) notify(task, previous);
  if (pageKind === "dashboard") applyToDashboard(task, previous, html, known, newHere);
  if (pageKind === "detail" && task.id === detailTaskId) applyToDetail(task, html);
  // A merged event (a burst) continues from base_version; anything older than that is a gap: we missed an event.
  if (known !== undefined && known < base) resyncSoon();
}

// --- Dashboard ------------------------------------------------------------------------------------------------------

function liveRegion() {
  return document.getElementById("live-region");
}

function bumpCount(key, delta) {
  const el = document.querySelector(`#counts [data-count="${key}"]`);
  if (el) el.textContent = Math.max(0, Number(el.textContent) + delta);
}

function matchesFilters(task) {
  const f = liveRegion().dataset;
  return (!f.status || f.status === task.status) && (!f.type || f.type === task.task_type) &&
    (!f.q || task.name.toLowerCase().includes(f.q.toLowerCase()));
}

function flash(el) {
  el.classList.remove("flash");
  void el.offsetWidth; // restart the animation
  el.classList.add("flash");
}

function applyToDashboard(task, previous, html, known, newHere) {
  const region = liveRegion();
  // Counts follow transitions; a change older than the region's snapshot is already in it.
  if (newHere) {
    bumpCount(task.status, 1);
    bumpCount("total", 1);
  } else if (previous && previous !== task.status &&
             (known !== undefined || Date.parse(task.updated_at) > Date.parse(region.dataset.syncedAt))) {
    bumpCount(previous, -1);
    bumpCount(task.status, 1);
  }
  const row = document.getElementById(`task-${task.id}`);
  if (row) {
    const fresh = parse(html.row).firstElementChild;
    row.replaceWith(fresh);
    if (previous && previous !== task.status) flash(fresh);
  } else if (matchesFilters(task) && region.dataset.page === "1") {
    if (newHere) insertRow(parse(html.row).firstElementChild, task.id, Number(region.dataset.pageSize));
    else if (region.dataset.status && previous !== task.status) resyncSoon(); // an older task moved into the filter
  }
}

function insertRow(fresh, id, pageSize) {
  // Newest first. Events from different processes may arrive out of order, so place the row by id.
  const rows = document.getElementById("task-rows");
  let before = rows.firstElementChild;
  while (before && Number(before.dataset.taskId) > id) before = before.nextElementSibling;
  rows.insertBefore(fresh, before);
  flash(fresh);
  while (rows.children.length > pageSize) rows.lastElementChild.remove();
  document.getElementById("empty-state").hidden = true;
}

// --- Task detail ----------------------------------------------------------------------------------------------------

function applyToDetail(task, html) {
  const summary = document.getElementById("task-summary");
  const statusChanged = summary.dataset.status !== task.status;
  const fresh = parse(html.summary).firstElementChild;
  summary.replaceWith(fresh);
  htmx.process(fresh); // its retry/cancel buttons are htmx forms
  if (statusChanged) resyncSoon(100); // the attempts timeline changes with the status
}

function insertLogLines(fragment) {
  const log = document.getElementById("log");
  if (!log) return;
  const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  for (const line of [...fragment.querySelectorAll("li[data-log-id]")]) {
    if (document.getElementById(line.id)) continue; // already shown
    const id = Number(line.dataset.logId);
    let before = null; // keep id order even if lines from two processes arrive out of order
    for (let el = log.lastElementChild; el && Number(el.dataset.logId) > id; el = el.previousElementSibling) before = el;
    log.insertBefore(line, before);
  }
  if (nearBottom) log.scrollTop = log.scrollHeight;
}

function lastLogId() {
  const last = document.querySelector("#log li[data-log-id]:last-child");
  return last ? last.dataset.logId : "";
}

// --- Resync: fetch what the server shows now and merge it by version -------------------------------------------------

async function fetchFragment(url, target) {
  const response = await fetch(url, { headers: { "HX-Request": "true", "HX-Target": target }, credentials: "same-origin" });
  if (response.redirected && new URL(response.url).pathname.startsWith("/login")) {
    location.reload(); // the session ended: show the login page
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.text();
}

function mergeByVersion(fresh, root) {
  // Keep any element this page already shows at a newer version than the fetched one (an event won the race).
  fresh.querySelectorAll("[data-task-id][data-version]").forEach((el) => {
    const current = root.querySelector(`#${CSS.escape(el.id)}`);
    if (current && Number(current.dataset.version) > Number(el.dataset.version)) el.replaceWith(current);
  });
}

async function resyncDashboard() {
  const region = liveRegion();
  const html = await fetchFragment(location.pathname + location.search, "live-region");
  const fresh = parse(html).firstElementChild;
  mergeByVersion(fresh, region);
  region.replaceWith(fresh);
  htmx.process(fresh);
  rememberVersions(fresh);
}

async function resyncDetail() {
  const live = document.getElementById("task-live");
  const [html, lines] = await Promise.all([
    fetchFragment(location.pathname, "task-live"),
    fetchFragment(`${document.getElementById("log").dataset.logUrl}?after=${lastLogId()}`, "log"),
  ]);
  const fresh = parse(html).firstElementChild;
  mergeByVersion(fresh, live);
  live.replaceWith(fresh);
  htmx.process(fresh);
  rememberVersions(fresh);
  insertLogLines(parse(lines));
}

async function resync() {
  if (!pageKind) return;
  if (resyncing) {
    resyncAgain = true;
    return;
  }
  resyncing = true;
  resyncAgain = false;
  try {
    await (pageKind === "dashboard" ? resyncDashboard() : resyncDetail());
  } catch (error) {
    console.warn("resync failed", error);
  } finally {
    resyncing = false;
    if (resyncAgain) resyncSoon(); // transitions arrived meanwhile: the fetched counts may predate them
  }
}

function resyncSoon(delay = 250) {
  clearTimeout(resyncTimer);
  resyncTimer = setTimeout(resync, delay);
}

function startPolling() {
  if (!pollTimer) pollTimer = setInterval(resync, POLL_MS);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

// --- Toasts for what happened to a task ------------------------------------------------------------------------------

function notify(task, previous) {
  const name = `“${task.name}”`;
  if (task.status === "completed") toast(`${name} completed.`, "success");
  else if (task.status === "failed") toast(`${name} failed after ${task.attempts} attempts.`, "error");
  else if (task.status === "cancelled") toast(`${name} was cancelled.`, "warning");
  else if (task.status === "pending" && previous === "running" && task.next_retry_at)
    toast(`${name}: attempt ${task.attempts} failed, retrying.`, "warning");
  else if (task.status === "pending" && (previous === "failed" || previous === "cancelled"))
    toast(`${name} was retried.`, "info");
}

// --- htmx glue --------------------------------------------------------------------------------------------------------

document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  toast(xhr.status === 409 ? xhr.responseText : `Request failed (HTTP ${xhr.status}).`, "error");
});
document.addEventListener("htmx:sendError", () => toast("The server could not be reached.", "error"));
document.addEventListener("task-created", (event) => {
  toast(event.detail.message, "success");
  if (!socket || socket.readyState !== WebSocket.OPEN) resyncSoon(0);
});
document.addEventListener("htmx:afterRequest", (event) => {
  // After an action, show the outcome even if the socket is down.
  if (event.detail.successful && event.detail.elt.closest(".actions") && socket?.readyState !== WebSocket.OPEN) resyncSoon(0);
});
document.addEventListener("htmx:afterSwap", (event) => {
  rememberVersions(event.detail.target.isConnected ? event.detail.target : document);
  syncFilterForm();
});
window.addEventListener("htmx:historyRestore", () => resyncSoon(0));

function syncFilterForm() {
  // The count cards filter by status too: keep the filter form in step with the region the server sent.
  const form = document.getElementById("filters");
  const region = liveRegion();
  if (!form || !region) return;
  form.elements.status.value = region.dataset.status;
  form.elements.type.value = region.dataset.type;
}

// The type's description under the create form's select.
document.addEventListener("change", (event) => {
  if (event.target.id !== "id_task_type") return;
  const option = event.target.selectedOptions[0];
  document.getElementById("type-help").textContent = option ? option.dataset.description : "";
});

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") resyncSoon(0);
});

rememberVersions(document);
if (pageKind) {
  connect();
  setInterval(() => {
    if (socket?.readyState === WebSocket.OPEN && document.visibilityState === "visible") resync();
  }, SAFETY_RESYNC_MS);
}
