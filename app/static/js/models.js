// The Models page, /models: every model version with answers, and two versions compared
// per defect class by the reviewers' verdicts (GET /api/models, GET /api/models/compare).
import { api, errorText, escapeHtml, formatTime, showAlert } from "./common.js";

const list = document.getElementById("models-list");
const form = document.getElementById("compare-form");
const result = document.getElementById("compare-result");
const FIELDS = ["a", "b", "start_date", "end_date", "product", "batch_id"];

const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);

function modelsTable(body) {
  if (!body.models.length) return `<p class="text-muted">No answers yet.</p>`;
  const rows = body.models.map((m) => `<tr>
    <td>${escapeHtml(m.model_name ?? "–")}</td><td><code>${escapeHtml(m.model_version ?? "–")}</code></td>
    <td class="text-end">${m.primary_answers}</td><td class="text-end">${m.shadow_answers}</td>
    <td class="text-end">${m.replay_answers}</td>
    <td>${m.first_seen ? escapeHtml(formatTime(m.first_seen)) : "–"}</td>
    <td>${m.last_seen ? escapeHtml(formatTime(m.last_seen)) : "–"}</td></tr>`).join("");
  const failed = body.failed_services.map((f) => `<li><code>${escapeHtml(f.model_service_url)}</code>:
    ${f.failed_answers} failed, last ${escapeHtml(formatTime(f.last_failed_at))} (${escapeHtml(f.last_error ?? "")})</li>`).join("");
  return `<div class="table-responsive"><table class="table table-sm align-middle" id="models-table">
    <caption class="small">Model versions with answers, last seen first</caption>
    <thead><tr><th scope="col">Model</th><th scope="col">Version</th><th scope="col" class="text-end">Primary</th>
      <th scope="col" class="text-end">Shadow</th><th scope="col" class="text-end">Replay</th>
      <th scope="col">First seen</th><th scope="col">Last seen</th></tr></thead>
    <tbody>${rows}</tbody></table></div>
    ${failed ? `<div class="small"><strong>Failing model services</strong><ul>${failed}</ul></div>` : ""}`;
}

function fillVersions(models) {
  const versions = [...new Set(models.map((m) => m.model_version).filter(Boolean))];
  for (const name of ["a", "b"]) {
    form.elements[name].innerHTML = versions.map((v) => `<option value="${escapeHtml(v)}">${escapeHtml(v)}</option>`).join("");
  }
  // Default: the most answered primary version against the newest other one.
  const primary = [...models].sort((x, y) => y.primary_answers - x.primary_answers)[0];
  if (primary?.model_version) form.elements.a.value = primary.model_version;
  const other = models.find((m) => m.model_version && m.model_version !== form.elements.a.value);
  if (other) form.elements.b.value = other.model_version;
}

function sideCells(s) {
  return `<td class="text-end">${s.calls}</td><td class="text-end">${s.confirmed_real}</td>
    <td class="text-end">${s.false_calls}</td><td class="text-end">${s.missed_real}</td>
    <td class="text-end">${pct(s.precision)}</td><td class="text-end">${pct(s.relative_recall)}</td>`;
}

function compareHtml(c, query) {
  const row = (k, extra = "") => `<tr${extra}><th scope="row">${escapeHtml(k.class_name)}</th>
    <td class="text-end">${k.matched}</td><td class="text-end">${k.a_only}</td><td class="text-end">${k.b_only}</td>
    <td class="text-end">${k.a_overlapping}/${k.b_overlapping}</td>
    ${sideCells(k.a)}${sideCells(k.b)}</tr>`;
  const sideHead = ["calls", "real", "false calls", "missed real", "precision", "rel. recall"]
    .map((h) => `<th scope="col" class="text-end">${h}</th>`).join("");
  const disagreements = c.disagreements.map((d) => `<li><a href="${escapeHtml(d.viewer_url)}">${escapeHtml(d.img_unique_id)}</a>
    <span class="small text-muted">${escapeHtml(formatTime(d.timestamp))}: ${d.a_only} A only, ${d.b_only} B only${d.a_overlapping + d.b_overlapping ? `, ${d.a_overlapping}/${d.b_overlapping} overlapping` : ""}</span></li>`).join("");
  const primary = c.disagreements.find((d) => d.a_answer_id === null) ? c.b
    : c.disagreements.find((d) => d.b_answer_id === null) ? c.a : c.b;
  const review = new URLSearchParams({ disagreement: primary });
  for (const key of ["start_date", "end_date", "batch_id"]) if (query[key]) review.set(key, query[key]);
  return `<p class="mb-2">${c.images} image${c.images === 1 ? "" : "s"} answered by both
      <code>${escapeHtml(c.a)}</code> (A) and <code>${escapeHtml(c.b)}</code> (B); regions match at IoU ≥ ${c.min_iou};
      unmatched regions that overlap one of the same class are the same defect outlined differently (overlapping), a miss of neither.</p>
    <div class="table-responsive" tabindex="0" role="region" aria-label="Comparison per defect class"><table class="table table-sm align-middle" id="compare-table">
      <caption class="small">Per defect class: regions both found, found by one only, and each version judged by the reviewers' verdicts</caption>
      <thead><tr><th scope="col" rowspan="2">Class</th><th scope="col" rowspan="2" class="text-end">Matched</th>
        <th scope="col" rowspan="2" class="text-end">A only</th><th scope="col" rowspan="2" class="text-end">B only</th>
        <th scope="col" rowspan="2" class="text-end" title="Regions of A / of B that match none of the other's but overlap one of the same class: the same defect, outlined differently. A miss of neither.">Overlapping A/B</th>
        <th scope="colgroup" colspan="6" class="text-center">A</th><th scope="colgroup" colspan="6" class="text-center">B</th></tr>
        <tr>${sideHead}${sideHead}</tr></thead>
      <tbody>${c.classes.map((k) => row(k)).join("")}</tbody>
      <tfoot>${row(c.totals, ' class="table-light"')}</tfoot></table></div>
    <h2 class="h5 mt-3">Disagreements <span class="text-muted small">(${c.disagreeing_images} images)</span></h2>
    ${c.disagreeing_images ? `<p><a class="btn btn-sm btn-primary" id="review-disagreements" href="/review?${review}">Review the disagreements</a></p>` : ""}
    <ul id="disagreements">${disagreements || "<li class=\"text-muted\">None.</li>"}</ul>`;
}

function query() {
  const out = {};
  for (const name of FIELDS) {
    const value = form.elements[name].value.trim();
    if (value) out[name] = value;
  }
  return out;
}

async function compare() {
  result.innerHTML = "";
  const q = query();
  if (!q.a || !q.b) return;
  history.replaceState(null, "", `?${new URLSearchParams(q)}`);
  try {
    result.innerHTML = compareHtml(await api(`/api/models/compare?${new URLSearchParams(q)}`), q);
  } catch (err) {
    showAlert(errorText(err), "danger", result);
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  compare();
});

try {
  const body = await api("/api/models");
  list.innerHTML = modelsTable(body);
  fillVersions(body.models);
} catch (err) {
  showAlert(errorText(err), "danger", list);
}
const preset = new URLSearchParams(location.search);
for (const name of FIELDS) if (preset.get(name)) form.elements[name].value = preset.get(name);
if (form.elements.a.value && form.elements.b.value) compare();
