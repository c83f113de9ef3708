// History page: a paginated gallery of server-side thumbnails, newest first, with filters
// kept in the URL (so back/forward and shared links work). The status filter shows the
// images with no result instead (failed, pending, processing), with their error and a
// Retry button for failed ones.
import {
  api, classBadges, errorText, escapeHtml, fillClassPicker, formatTime, messageFromBody, readerHeaders,
  showAlert,
} from "./common.js";

const PAGE_SIZE = 24;
const FIELDS = [
  "q", "status", "start_date", "end_date", "class_name", "min_defects", "batch_id", "model_version",
  "review_state", "disposition",
];
// The viewer's previous/next image walks the gallery of the filters last shown here.
const NAV_KEY = "aoi.historyNav"; // read by image_nav.js
// Filters that only apply to images with a result.
const RESULT_ONLY = ["class_name", "min_defects", "model_version", "review_state", "disposition"];
const form = document.getElementById("filters");
const gallery = document.getElementById("gallery");
const pager = document.getElementById("pager");
const errorBox = document.getElementById("history-error");
let loadToken = 0;

function currentQuery() {
  const params = new URLSearchParams(location.search);
  const out = new URLSearchParams();
  for (const f of FIELDS) if (params.get(f)) out.set(f, params.get(f));
  out.set("page", String(Math.max(1, parseInt(params.get("page") || "1", 10) || 1)));
  return out;
}

// The filters the exports take (those of /api/query/defects); the others do not apply.
const EXPORT_FIELDS = ["start_date", "end_date", "class_name", "batch_id", "review_state", "disposition"];
// The training-set ZIP takes `model_version` too (the primary answers of that version).
const DATASET_FIELDS = [...EXPORT_FIELDS, "model_version"];

function exportQuery(query, fields) {
  const q = new URLSearchParams();
  for (const f of fields) if (query.get(f)) q.set(f, query.get(f));
  return q.toString() ? `?${q}` : "";
}

/** Points the Export CSV / COCO / training-set links at the current filters. */
function updateExports(query) {
  const suffix = exportQuery(query, EXPORT_FIELDS);
  document.getElementById("export-csv").href = `/api/export/regions.csv${suffix}`;
  document.getElementById("export-coco").href = `/api/export/coco.json${suffix}`;
  document.getElementById("export-dataset").href = `/api/export/dataset.zip${exportQuery(query, DATASET_FIELDS)}`;
}

function fillForm(query) {
  for (const f of FIELDS) form.elements[f].value = query.get(f) || "";
  const withResults = !query.get("status") || query.get("status") === "succeeded";
  for (const f of RESULT_ONLY) form.elements[f].disabled = !withResults;
}

function card(img) {
  const id = encodeURIComponent(img.img_unique_id);
  const name = img.original_filename || img.img_unique_id;
  return `<div class="col"><a class="card h-100 thumb-card text-decoration-none text-body" href="/results/${id}"
      data-img-id="${escapeHtml(img.img_unique_id)}" title="${escapeHtml(name)} (${escapeHtml(img.img_unique_id)})">
    <img class="card-img-top thumb" loading="lazy" decoding="async" width="256" height="256"
      src="/api/images/${id}/thumbnail?size=256&kind=overlay" alt="Overlay of ${escapeHtml(name)}">
    <div class="card-body">
      <div class="small fw-semibold text-truncate file-name">${escapeHtml(name)}</div>
      <div class="small text-truncate text-muted"><code class="text-muted">${escapeHtml(img.img_unique_id)}</code></div>
      <div class="small text-muted">${escapeHtml(formatTime(img.timestamp))}</div>
      <div class="small mb-1"><span class="badge text-bg-dark">${img.total_defects} defect${img.total_defects === 1 ? "" : "s"}</span></div>
      <div class="d-flex flex-wrap gap-1">${classBadges(img.defect_classes, { empty: "clean" })}</div>
      ${reviewBadges(img.review)}
    </div></a></div>`;
}

const DISPOSITION_BADGE = { pass: "text-bg-success", repair: "text-bg-warning", scrap: "text-bg-danger" };

/** The review badges of a card: "3/5 reviewed" (or "reviewed"), false calls, disposition. */
function reviewBadges(review) {
  if (!review) return "";
  const out = [];
  if (review.state === "reviewed") {
    out.push(`<span class="badge text-bg-success review-badge">✓ reviewed</span>`);
  } else if (review.state === "unreviewed") {
    out.push(`<span class="badge text-bg-light border review-badge">${review.reviewed_regions}/${review.regions} reviewed</span>`);
  }
  if (review.false_calls) {
    out.push(`<span class="badge text-bg-info false-call-badge">${review.false_calls} false call${review.false_calls === 1 ? "" : "s"}</span>`);
  }
  if (review.disposition) {
    out.push(`<span class="badge ${DISPOSITION_BADGE[review.disposition]} disposition-badge">${escapeHtml(review.disposition)}</span>`);
  }
  return out.length ? `<div class="d-flex flex-wrap gap-1 mt-1 review-badges">${out.join("")}</div>` : "";
}

const STATUS_BADGE = { failed: "text-bg-danger", pending: "text-bg-secondary", processing: "text-bg-primary" };

/** A card for an image with no result: its status, error, and Retry when it failed. */
function stateCard(img) {
  const waiting = img.next_attempt_at
    ? `<div class="small text-body-secondary">waiting for ${img.waiting_for === "storage" ? "storage" : "model service"}, next attempt at ${escapeHtml(formatTime(img.next_attempt_at))}</div>`
    : "";
  const retry = img.retry_url
    ? `<button type="button" class="btn btn-sm btn-outline-danger retry-btn mt-2" data-id="${escapeHtml(img.img_unique_id)}">Retry</button>`
    : "";
  return `<div class="col"><div class="card h-100 state-card" data-img-id="${escapeHtml(img.img_unique_id)}"
      data-status="${escapeHtml(img.status)}" title="${escapeHtml(img.original_filename)}">
    <div class="card-body">
      <div class="mb-1"><span class="badge ${STATUS_BADGE[img.status] || "text-bg-secondary"} status-badge">${escapeHtml(img.status)}</span>
        <span class="small text-muted">attempt${img.attempts === 1 ? "" : "s"}: ${img.attempts}</span></div>
      <div class="small fw-semibold text-truncate">${escapeHtml(img.original_filename)}</div>
      <div class="small text-truncate"><code>${escapeHtml(img.img_unique_id)}</code></div>
      <div class="small text-muted">${escapeHtml(formatTime(img.timestamp))}</div>
      ${img.error ? `<div class="small text-danger row-error text-break mt-1">${escapeHtml(img.error)}</div>` : ""}
      ${waiting}
      <div class="retry-result small"></div>
      ${retry}
    </div></div></div>`;
}

function drawPager(total, page) {
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const link = (p, label, { disabled = false, active = false } = {}) => {
    const q = currentQuery();
    q.set("page", String(p));
    return `<li class="page-item${disabled ? " disabled" : ""}${active ? " active" : ""}">
      <a class="page-link" href="?${q}" data-page="${p}" ${active ? 'aria-current="page"' : ""}>${label}</a></li>`;
  };
  const items = [link(page - 1, "‹ Prev", { disabled: page <= 1 })];
  const shown = new Set([1, pages, page - 2, page - 1, page, page + 1, page + 2].filter((p) => p >= 1 && p <= pages));
  let last = 0;
  for (const p of [...shown].sort((a, b) => a - b)) {
    if (p - last > 1) items.push(`<li class="page-item disabled"><span class="page-link">…</span></li>`);
    items.push(link(p, String(p), { active: p === page }));
    last = p;
  }
  items.push(link(page + 1, "Next ›", { disabled: page >= pages }));
  pager.innerHTML = pages > 1 ? items.join("") : "";
}

// The listing last shown (its total changes when a failed image is retried here).
let shown = null;

function showTotal() {
  const { total, page, status } = shown;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  // Over 10,000 matches with a filter no rollup serves, the total is an estimate.
  const about = shown.total_is_exact === false ? "about " : "";
  document.getElementById("history-total").textContent =
    `${about}${total} ${status === "succeeded" ? "" : `${status} `}image${total === 1 ? "" : "s"} · page ${page} of ${about}${pages}`;
}

async function load() {
  const token = ++loadToken;
  const query = currentQuery();
  fillForm(query);
  updateExports(query);
  errorBox.innerHTML = "";
  gallery.setAttribute("aria-busy", "true");
  gallery.classList.add("opacity-50");
  query.set("limit", String(PAGE_SIZE));
  try {
    // Who reads (X-Reviewer with keys off): the boards they audit list as unreviewed.
    const answer = await api(`/api/images?${query}`, { headers: readerHeaders() });
    if (token !== loadToken) return;
    const page = answer.page;
    shown = answer;
    showTotal();
    gallery.innerHTML = answer.images.length
      ? answer.images.map((img) => (img.status === "succeeded" ? card(img) : stateCard(img))).join("")
      : `<div class="col-12"><div class="alert alert-secondary mb-0">No image matches these filters.</div></div>`;
    drawPager(answer.total, page);
    rememberForViewer(query, answer);
  } catch (err) {
    if (token !== loadToken) return;
    gallery.innerHTML = "";
    pager.innerHTML = "";
    showAlert(errorText(err), "danger", errorBox);
  } finally {
    if (token === loadToken) {
      gallery.removeAttribute("aria-busy");
      gallery.classList.remove("opacity-50");
    }
  }
}

/** Keeps this gallery's filters, page and ids for the viewer's previous/next image. */
function rememberForViewer(query, answer) {
  const filters = new URLSearchParams(query);
  filters.delete("page");
  filters.delete("limit");
  try {
    sessionStorage.setItem(NAV_KEY, JSON.stringify({
      filters: filters.toString(),
      page: answer.page,
      limit: answer.limit,
      total: answer.total,
      ids: answer.images.map((img) => img.img_unique_id),
    }));
  } catch { /* storage may be disabled: the viewer then shows no previous/next */ }
}

function navigate(query) {
  history.pushState(null, "", `?${query}`);
  load();
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const start = form.elements.start_date.value;
  const end = form.elements.end_date.value;
  if (start && end && start > end) {
    errorBox.innerHTML = "";
    showAlert("The start date is after the end date.", "warning", errorBox);
    return;
  }
  const q = new URLSearchParams();
  for (const f of FIELDS) {
    if (form.elements[f].disabled) continue;
    const v = form.elements[f].value.trim();
    if (v && !(f === "status" && v === "succeeded")) q.set(f, v);
  }
  q.set("page", "1");
  navigate(q);
});
form.elements.class_name.addEventListener("change", () => form.requestSubmit());
for (const name of ["status", "review_state", "disposition"]) {
  form.elements[name].addEventListener("change", () => form.requestSubmit());
}
gallery.addEventListener("click", async (e) => {
  const btn = e.target.closest(".retry-btn");
  if (!btn) return;
  const cardEl = btn.closest(".state-card");
  const result = cardEl.querySelector(".retry-result");
  const id = btn.dataset.id;
  btn.disabled = true;
  btn.textContent = "Retrying…";
  try {
    const answer = await api(`/api/images/${encodeURIComponent(id)}/retry`, { method: "POST" });
    cardEl.dataset.status = "succeeded";
    cardEl.querySelector(".row-error")?.remove();
    const badge = cardEl.querySelector(".status-badge");
    badge.className = "badge text-bg-success status-badge";
    badge.textContent = "succeeded";
    // It has left the listing of failed images: the count says so at once.
    if (shown && shown.status === "failed" && shown.total > 0) {
      shown.total -= 1;
      showTotal();
    }
    btn.remove();
    result.innerHTML = `<span class="text-success">Inspected: ${answer.total_defects} defect${answer.total_defects === 1 ? "" : "s"}</span>
      <a href="/results/${encodeURIComponent(id)}">View result</a>`;
  } catch (err) {
    btn.disabled = false;
    btn.textContent = "Retry";
    result.innerHTML = `<span class="text-danger">${escapeHtml(errorText(err))}</span>`;
  }
});
/** A link cannot send X-Reviewer: with keys off and a reviewer name given, an export
 * (CSV, COCO, training set) is fetched with it and saved from memory, so the boards this
 * reviewer audits (or may audit) carry no first review in the file (docs/review.md). With
 * keys required, or no name, the plain link streams to disk (the session, or nobody, says
 * who reads). */
async function exportAsReader(e) {
  const headers = readerHeaders();
  if (!headers["X-Reviewer"]) return;
  e.preventDefault();
  const link = e.currentTarget;
  link.setAttribute("aria-busy", "true");
  try {
    const response = await fetch(link.href, { headers: { ...headers, Accept: "*/*" } });
    if (!response.ok) throw messageFromBody(response.status, await response.text());
    const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const url = URL.createObjectURL(await response.blob());
    const save = document.createElement("a");
    save.href = url;
    save.download = named ? named[1] : "";
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    showAlert(errorText(err), "danger", errorBox);
  } finally {
    link.removeAttribute("aria-busy");
  }
}
for (const id of ["export-csv", "export-coco", "export-dataset"]) {
  document.getElementById(id).addEventListener("click", exportAsReader);
}
form.addEventListener("reset", (e) => {
  e.preventDefault();
  navigate(new URLSearchParams({ page: "1" }));
});
pager.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-page]");
  if (!a) return;
  e.preventDefault();
  if (a.closest(".disabled")) return;
  const q = currentQuery();
  q.set("page", a.dataset.page);
  navigate(q);
  window.scrollTo({ top: 0 });
});
window.addEventListener("popstate", load);

fillClassPicker(form.elements.class_name, new URLSearchParams(location.search).get("class_name") || "");
load();
