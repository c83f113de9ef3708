// Batch page: pick files or a folder, send them as one or more batch requests (at most
// max_batch_size images each), then follow every image live by polling the batch status.
// The URL keeps the batch ids (/batch?batch=A&batch=B), so coming back shows their state.
import {
  api, checkFile, classBadges, errorText, escapeHtml, formatBytes, formatTime, showAlert, uploadLimits,
  uploadWithProgress,
} from "./common.js";

const limits = uploadLimits();
const POLL_MS = 1000;
const RECENT_KEY = "aoi.recentBatches";

const $ = (id) => document.getElementById(id);
const tbody = document.querySelector("#queue tbody");
const errorBox = $("batch-error");

/** One row of the queue. `state`: selected, skipped, uploading, queued, waiting (for the
 * model service or the store), running, done, failed, rejected. */
const rows = [];
const rowsById = new Map();
const batches = new Map(); // batch_id -> last status answer (or null before the first)
let started = false;
let pollTimer = null;

const STATE_LABEL = {
  selected: ["Selected", "text-bg-secondary"],
  skipped: ["Skipped", "text-bg-warning"],
  uploading: ["Uploading", "text-bg-info"],
  queued: ["Queued", "text-bg-secondary"],
  waiting: ["Waiting", "text-bg-warning"],
  running: ["Running", "text-bg-primary"],
  done: ["Done", "text-bg-success"],
  failed: ["Failed", "text-bg-danger"],
  rejected: ["Rejected", "text-bg-warning"],
};
const API_STATE = { pending: "queued", processing: "running", succeeded: "done", failed: "failed" };

function newRow(fields) {
  const row = { index: rows.length + 1, progress: 0, detail: "", ...fields };
  row.tr = document.createElement("tr");
  row.tr.className = "queue-row";
  rows.push(row);
  tbody.appendChild(row.tr);
  drawRow(row);
  return row;
}

function drawRow(row) {
  const [label, badge] = STATE_LABEL[row.state];
  const id = row.img_unique_id;
  const live = row.state === "uploading" || row.state === "running";
  const barKind = { done: "bg-success", failed: "bg-danger", rejected: "bg-warning", skipped: "bg-warning" }[row.state] || "";
  const pct = Math.round(row.progress * 100);
  let result = "";
  if (row.state === "done") {
    result = `<span class="fw-semibold defect-count">${row.total_defects} defect${row.total_defects === 1 ? "" : "s"}</span> ${classBadges(row.defect_classes, { empty: "" })}`;
  } else if (row.detail) {
    result = `<span class="small ${row.state === "failed" ? "text-danger" : "text-body-secondary"} row-error">${escapeHtml(row.detail)}</span>`;
  }
  const actions = [];
  if (id && row.state === "done") actions.push(`<a class="btn btn-sm btn-outline-primary" href="/results/${encodeURIComponent(id)}">View</a>`);
  if (id && row.state === "failed") actions.push(`<button type="button" class="btn btn-sm btn-outline-danger retry-btn" data-id="${escapeHtml(id)}">Retry</button>`);
  row.tr.dataset.state = row.state;
  if (id) row.tr.dataset.imgId = id;
  row.tr.innerHTML = `
    <td class="text-muted small">${row.index}</td>
    <td class="filename small">${escapeHtml(row.name)}</td>
    <td class="small text-nowrap d-none d-md-table-cell">${row.size != null ? formatBytes(row.size) : ""}</td>
    <td><div class="progress" role="progressbar" aria-label="${escapeHtml(row.name)} progress" aria-valuenow="${pct}" aria-valuemin="0" aria-valuemax="100">
      <div class="progress-bar ${barKind}${live ? " progress-bar-striped progress-bar-animated" : ""}" data-style="width:${pct}%"></div></div></td>
    <td><span class="badge status-badge ${badge}">${label}</span></td>
    <td>${result}</td>
    <td class="text-nowrap">${actions.join(" ")}</td>`;
}

function update(row, fields) {
  let changed = false;
  for (const [k, v] of Object.entries(fields)) {
    const same = typeof v === "object" && v !== null ? JSON.stringify(row[k]) === JSON.stringify(v) : row[k] === v;
    if (!same) { row[k] = v; changed = true; }
  }
  if (changed) drawRow(row);
}

// ---- selection -------------------------------------------------------------------------

function addFiles(entries) {
  if (started) {
    showAlert("This batch has started; use “New batch” to send more images.", "warning", errorBox);
    return;
  }
  errorBox.innerHTML = "";
  let skipped = 0;
  for (const { file, path } of entries) {
    const problem = checkFile(file, limits);
    if (problem) skipped += 1;
    newRow({ name: path || file.name, size: file.size, file, state: problem ? "skipped" : "selected", detail: problem || "" });
  }
  const usable = rows.filter((r) => r.state === "selected").length;
  const requests = Math.ceil(usable / limits.max_batch_size);
  $("queue-card").hidden = rows.length === 0;
  $("queue-count").textContent = `(${rows.length})`;
  $("start-bar").hidden = usable === 0;
  $("start-batch").textContent = `Start batch (${usable} image${usable === 1 ? "" : "s"})`;
  $("selection-note").textContent = [
    skipped ? `${skipped} file${skipped === 1 ? "" : "s"} skipped (see the queue)` : "",
    requests > 1 ? `sent as ${requests} batches of at most ${limits.max_batch_size}` : "",
  ].filter(Boolean).join("; ");
  if (!usable && skipped) showAlert("None of the chosen files is a JPEG, PNG, TIFF or BMP image within the size limit.", "warning", errorBox);
}

async function readEntry(entry, prefix, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: prefix + file.name });
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    // readEntries answers in chunks (100 in Chromium) until it returns an empty list.
    for (;;) {
      const chunk = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!chunk.length) break;
      for (const child of chunk) await readEntry(child, `${prefix}${entry.name}/`, out);
    }
  }
}

function sortEntries(entries) {
  return entries.sort((a, b) => a.path.localeCompare(b.path, undefined, { numeric: true }));
}

$("files-input").addEventListener("change", (e) => {
  addFiles(sortEntries([...e.target.files].map((file) => ({ file, path: file.name }))));
  e.target.value = "";
});
$("folder-input").addEventListener("change", (e) => {
  // Inside a folder, files that are obviously not images (e.g. .txt) are left out quietly.
  const all = [...e.target.files].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
  const images = all.filter(({ file }) => /\.(jpe?g|png|tiff?|bmp)$/i.test(file.name));
  if (all.length !== images.length) {
    showAlert(`${all.length - images.length} non-image file(s) in the folder were left out.`, "info", errorBox);
  }
  addFiles(sortEntries(images));
  e.target.value = "";
});

const zone = $("drop-zone");
// The zone is a button: a click, Enter or Space chooses images (the folder has its own button).
zone.addEventListener("click", () => $("files-input").click());
zone.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("files-input").click(); }
});
$("choose-files").addEventListener("click", () => $("files-input").click());
$("choose-folder").addEventListener("click", () => $("folder-input").click());
for (const type of ["dragenter", "dragover"]) zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragover"); });
for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("dragover"));
zone.addEventListener("drop", async (e) => {
  e.preventDefault();
  const items = [...(e.dataTransfer.items || [])];
  const entries = items.map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  let found = [];
  if (entries.length) {
    for (const entry of entries) await readEntry(entry, "", found);
    const fromFolder = entries.some((en) => en.isDirectory);
    if (fromFolder) found = found.filter(({ file }) => /\.(jpe?g|png|tiff?|bmp)$/i.test(file.name));
  } else {
    found = [...e.dataTransfer.files].map((file) => ({ file, path: file.name }));
  }
  addFiles(sortEntries(found));
});
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());

$("clear-selection").addEventListener("click", () => { location.href = "/batch"; });

// ---- sending ---------------------------------------------------------------------------

async function sendChunk(chunk) {
  const form = new FormData();
  for (const row of chunk) form.append("images", row.file, row.file.name);
  const offsets = [];
  let sum = 0;
  for (const row of chunk) { offsets.push(sum); sum += row.size; }
  chunk.forEach((row) => update(row, { state: "uploading", progress: 0 }));
  const answer = await uploadWithProgress("/api/upload/batch", form, {
    onProgress: (sent, total) => {
      // Files go out in order: map the bytes sent onto each file (multipart overhead scaled out).
      const bytes = (sent / total) * sum;
      chunk.forEach((row, i) => {
        const p = row.size ? Math.min(1, Math.max(0, (bytes - offsets[i]) / row.size)) : 1;
        if (Math.abs(p - row.progress) > 0.02 || p === 1) update(row, { progress: p });
      });
    },
    onSent: () => chunk.forEach((row) => update(row, { progress: 1, detail: "waiting for the agent…" })),
  });
  // Pair the answer with the rows by file name, in order (names may repeat across folders).
  const accepted = [...answer.accepted];
  const rejected = [...answer.rejected];
  for (const row of chunk) {
    const a = accepted.findIndex((x) => x.filename === row.file.name);
    if (a >= 0) {
      const [item] = accepted.splice(a, 1);
      row.img_unique_id = item.img_unique_id;
      row.batch_id = answer.batch_id;
      rowsById.set(item.img_unique_id, row);
      update(row, { state: "queued", progress: 0, detail: "" });
      continue;
    }
    const r = rejected.findIndex((x) => x.filename === row.file.name);
    const [item] = r >= 0 ? rejected.splice(r, 1) : [{ detail: "not accepted by the agent" }];
    update(row, { state: "rejected", progress: 1, detail: item.detail });
  }
  return answer.batch_id;
}

$("start-batch").addEventListener("click", async () => {
  const todo = rows.filter((r) => r.state === "selected");
  if (!todo.length) return;
  started = true;
  $("start-bar").hidden = true;
  $("picker").classList.add("d-none");
  $("summary-col").className = "col-12";
  $("summary").hidden = false;
  $("summary-state").textContent = "uploading…";
  for (let i = 0; i < todo.length; i += limits.max_batch_size) {
    const chunk = todo.slice(i, i + limits.max_batch_size);
    try {
      const batchId = await sendChunk(chunk);
      batches.set(batchId, null);
      rememberBatch(batchId);
      const url = new URL(location.href);
      url.searchParams.append("batch", batchId);
      history.replaceState(null, "", url);
      schedulePoll(0);
    } catch (err) {
      chunk.forEach((row) => update(row, { state: "rejected", progress: 1, detail: errorText(err) }));
      showAlert(`A batch request failed: ${errorText(err)}`, "danger", errorBox);
    }
  }
  if (!batches.size) $("summary-state").textContent = "nothing was accepted";
});

// ---- following -------------------------------------------------------------------------

/** What a row says about its attempts (the ledger's `attempts` counts every inference
 * started, the automatic and the manual retries included). */
function attemptText(item, state) {
  const n = item.attempts || 0;
  if (state === "running") return `attempt ${Math.max(n, 1)}`;
  if (state === "waiting") {
    const what = item.waiting_for === "storage" ? "storage" : "model service";
    return `attempt ${n} failed; waiting for ${what}, next attempt at ${formatTime(item.next_attempt_at)} (${item.error || "unreachable"})`;
  }
  if (state === "failed") return `${item.error || "failed"}${n > 1 ? ` (after ${n} attempts)` : ""}`;
  if (state === "queued" && n > 0) return `queued for attempt ${n + 1}`;
  return "";
}

function applyStatus(status) {
  batches.set(status.batch_id, status);
  for (const item of status.items) {
    let row = rowsById.get(item.img_unique_id);
    if (!row) {
      row = newRow({ name: item.filename, size: null, state: "queued", img_unique_id: item.img_unique_id, batch_id: status.batch_id });
      rowsById.set(item.img_unique_id, row);
    }
    let state = item.next_attempt_at ? "waiting" : API_STATE[item.status];
    let detail = attemptText(item, state);
    // A retry this page started is running: the status may not show it yet (the agent
    // marks the row when the retry begins), so never show it failed or finished meanwhile.
    if (row.retrying && state === "failed") {
      state = "running";
      detail = `retrying (attempt ${(item.attempts || 0) + 1})`;
    }
    update(row, {
      state,
      progress: state === "done" || state === "failed" ? 1 : state === "running" ? 0.5 : 0.05,
      detail,
      total_defects: item.total_defects,
      defect_classes: item.defect_classes,
    });
  }
}

/** Rows still on their way: the batch is not finished while any of them is. */
const UNFINISHED = new Set(["uploading", "queued", "waiting", "running"]);

function drawSummary() {
  const known = [...batches.values()].filter(Boolean);
  const total = known.reduce((s, b) => s + b.total, 0);
  const ok = known.reduce((s, b) => s + b.succeeded, 0);
  const failed = known.reduce((s, b) => s + b.failed, 0);
  const running = known.reduce((s, b) => s + b.processing, 0);
  const queued = known.reduce((s, b) => s + b.pending - b.processing, 0);
  const rejected = rows.filter((r) => r.state === "rejected" || r.state === "skipped").length;
  const done = known.length === batches.size && known.every((b) => b.done)
    && !rows.some((r) => r.retrying || (r.img_unique_id && UNFINISHED.has(r.state)));
  const byClass = {};
  for (const b of known) for (const [k, v] of Object.entries(b.defects_by_class)) byClass[k] = (byClass[k] || 0) + v;
  $("summary").hidden = false;
  $("summary").dataset.done = String(done);
  const waiting = known.reduce((s, b) => s + (b.waiting_for_model_service || 0) + (b.waiting_for_storage || 0), 0);
  $("overall-ok").style.width = total ? `${(100 * ok) / total}%` : "0%";
  $("overall-failed").style.width = total ? `${(100 * failed) / total}%` : "0%";
  $("overall-progress").setAttribute("aria-valuenow", String(total ? Math.round((100 * (ok + failed)) / total) : 0));
  // Written here from `next_attempt_at` (not the API's `message`, which is in UTC) so the
  // summary shows the same local time as the rows.
  const nextAttempt = known.map((b) => b.next_attempt_at).filter(Boolean).sort((a, b) => Date.parse(a) - Date.parse(b))[0];
  const waitingFor = nextAttempt
    ? `waiting for model service, next attempt at ${formatTime(nextAttempt)} (${waiting} image${waiting === 1 ? "" : "s"})`
    : "";
  $("summary-state").textContent = done ? "finished" : waitingFor || "running…";
  $("summary-counts").innerHTML = `
    <span><b class="count-succeeded">${ok}</b> succeeded</span>
    <span class="${failed ? "text-danger" : ""}"><b class="count-failed">${failed}</b> failed</span>
    <span><b>${running}</b> running</span><span><b>${queued}</b> queued</span>
    ${rejected ? `<span class="text-warning-emphasis"><b>${rejected}</b> not sent/rejected</span>` : ""}
    <span class="text-muted">of ${total}</span>`;
  const defects = Object.values(byClass).reduce((s, n) => s + n, 0);
  $("summary-classes").innerHTML = ok
    ? `<div class="small text-muted mb-1">${defects} defects by class</div>${classBadges(byClass)}`
    : "";
  $("summary-zips").innerHTML = [...batches.keys()].map((id, i) => `<a class="btn btn-sm btn-primary zip-btn${done ? "" : " disabled"}"
      href="/api/download/batch/${encodeURIComponent(id)}" download ${done ? "" : 'aria-disabled="true" tabindex="-1"'}
      title="${escapeHtml(id)}">⤓ Download batch ZIP${batches.size > 1 ? ` ${i + 1}` : ""}</a>`
      + exportLinks(id, batches.size > 1 ? ` ${i + 1}` : "", done)).join("")
    + (failed || waiting
      ? `<button type="button" class="btn btn-sm btn-outline-danger" id="retry-failed">${failed ? `Retry ${failed} failed` : "Try again now"}</button>`
      : "")
    + `<a class="btn btn-sm btn-outline-secondary" href="/history?batch_id=${encodeURIComponent([...batches.keys()][0] || "")}">Open in history</a>`
    + `<a class="btn btn-sm btn-outline-secondary review-batch-btn" href="/review?batch_id=${encodeURIComponent([...batches.keys()][0] || "")}">Review</a>`;
  return done;
}

/** Export CSV / Export COCO links for the regions of one batch (enabled once it is done). */
function exportLinks(id, suffix, done) {
  const off = done ? "" : ' aria-disabled="true" tabindex="-1"';
  const query = `batch_id=${encodeURIComponent(id)}`;
  return `<a class="btn btn-sm btn-outline-primary export-csv-btn${done ? "" : " disabled"}" href="/api/export/regions.csv?${query}" download${off}>⤓ Export CSV${suffix}</a>`
    + `<a class="btn btn-sm btn-outline-primary export-coco-btn${done ? "" : " disabled"}" href="/api/export/coco.json?${query}" download${off}>⤓ Export COCO${suffix}</a>`;
}

async function poll() {
  pollTimer = null;
  const retrying = new Set(rows.filter((r) => r.retrying).map((r) => r.batch_id));
  const open = [...batches.entries()].filter(([id, s]) => !s || !s.done || retrying.has(id)).map(([id]) => id);
  try {
    const answers = await Promise.all(open.map((id) => api(`/api/batches/${encodeURIComponent(id)}`)));
    answers.forEach(applyStatus);
    errorBox.querySelector(".poll-error")?.remove();
  } catch (err) {
    if (!errorBox.querySelector(".poll-error")) {
      showAlert(`Cannot read the batch status (retrying): ${errorText(err)}`, "warning", errorBox).classList.add("poll-error");
    }
  }
  const done = drawSummary();
  if (!done) schedulePoll(document.hidden ? POLL_MS * 5 : POLL_MS);
}

function schedulePoll(delay) {
  if (pollTimer === null) pollTimer = setTimeout(poll, delay);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && pollTimer !== null) { clearTimeout(pollTimer); pollTimer = null; schedulePoll(0); }
});

tbody.addEventListener("click", async (e) => {
  const btn = e.target.closest(".retry-btn");
  if (!btn) return;
  const row = rowsById.get(btn.dataset.id);
  btn.disabled = true;
  row.retrying = true;
  update(row, { state: "running", progress: 0.5, detail: "retrying…" });
  drawSummary();
  // Follow the batch while the retry runs: the row shows the agent's attempt count and
  // the summary does not say "finished" until the retry has ended.
  if (row.batch_id) batches.set(row.batch_id, null);
  schedulePoll(0);
  try {
    const answer = await api(`/api/images/${encodeURIComponent(row.img_unique_id)}/retry`, { method: "POST" });
    row.retrying = false;
    update(row, { state: "done", progress: 1, detail: "", total_defects: answer.total_defects, defect_classes: answer.defect_classes });
  } catch (err) {
    row.retrying = false;
    update(row, { state: "failed", progress: 1, detail: errorText(err) });
  }
  if (row.batch_id) batches.set(row.batch_id, null);
  schedulePoll(0);
});

$("summary-zips").addEventListener("click", async (e) => {
  const btn = e.target.closest("#retry-failed");
  if (!btn) return;
  btn.disabled = true;
  // Failed images are queued again, waiting ones tried now: both go through the batch's retry.
  const withFailures = [...batches.values()].filter((b) => b && (b.failed || b.waiting_for_model_service));
  try {
    await Promise.all(withFailures.map((b) => api(b.retry_url, { method: "POST" })));
  } catch (err) {
    showAlert(`Retry failed: ${errorText(err)}`, "danger", errorBox);
  }
  for (const b of withFailures) batches.set(b.batch_id, null);
  schedulePoll(0);
});

// ---- recent batches --------------------------------------------------------------------

function rememberBatch(id) {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]").filter((x) => x !== id);
    list.unshift(id);
    localStorage.setItem(RECENT_KEY, JSON.stringify(list.slice(0, 15)));
  } catch { /* storage may be disabled; the URL still holds the batch */ }
}

function showRecent() {
  let list = [];
  try { list = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]"); } catch { list = []; }
  const select = $("recent-batches");
  if (!list.length) return;
  select.hidden = false;
  select.innerHTML = `<option value="">Recent batches…</option>` +
    list.map((id) => `<option value="${escapeHtml(id)}">${escapeHtml(id)}</option>`).join("");
  select.addEventListener("change", () => { if (select.value) location.href = `/batch?batch=${encodeURIComponent(select.value)}`; });
}

showRecent();
const resume = new URLSearchParams(location.search).getAll("batch").filter(Boolean);
if (resume.length) {
  started = true;
  $("picker").classList.add("d-none");
  $("summary-col").className = "col-12";
  $("queue-card").hidden = false;
  resume.forEach((id) => batches.set(id, null));
  (async () => {
    try {
      const answers = await Promise.all(resume.map((id) => api(`/api/batches/${encodeURIComponent(id)}`)));
      answers.forEach(applyStatus);
      $("queue-count").textContent = `(${rows.length})`;
      if (!drawSummary()) schedulePoll(POLL_MS);
    } catch (err) {
      showAlert(errorText(err), "danger", errorBox);
    }
  })();
}
