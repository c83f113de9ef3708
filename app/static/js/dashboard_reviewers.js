// The dashboard's reviewer figures: seconds per verdict (median, p90) and verdicts per
// hour per reviewer, the median per reviewer and day (line chart), and Cohen's kappa of
// the double-review sample, from /api/review/figures for the dashboard's date range.
import { api, errorText, escapeHtml, onRangeChange, readerHeaders, showAlert } from "./common.js";

const Chart = window.Chart;
const form = document.getElementById("range");
const errorBox = document.getElementById("dashboard-error");
const COLOURS = ["#0d6efd", "#dc3545", "#198754", "#6f42c1", "#fd7e14", "#20c997", "#6c757d", "#d63384"];
let dayChart = null;

const seconds = (s) => (s == null ? "–" : s.toFixed(1));
const kappa = (k) => (k == null ? "–" : k.toFixed(2));
const share = (p) => (p == null ? "–" : `${(100 * p).toFixed(0)}%`);

function query() {
  const q = new URLSearchParams();
  if (form.elements.start_date.value) q.set("start_date", form.elements.start_date.value);
  if (form.elements.end_date.value) q.set("end_date", form.elements.end_date.value);
  return q;
}

function drawSpeed(figures) {
  document.getElementById("idle-gap").textContent = figures.idle_gap_s;
  const body = document.querySelector("#reviewer-speed tbody");
  body.innerHTML = figures.reviewers.length ? figures.reviewers.map((r) => `<tr data-reviewer="${escapeHtml(r.reviewer)}">
      <th scope="row" class="fw-normal">${escapeHtml(r.reviewer)}</th>
      <td class="text-end">${r.verdicts}</td><td class="text-end" data-median>${seconds(r.seconds_median)}</td>
      <td class="text-end">${seconds(r.seconds_p90)}</td>
      <td class="text-end">${r.verdicts_per_hour == null ? "–" : Math.round(r.verdicts_per_hour)}</td></tr>`).join("")
    : '<tr><td colspan="5" class="text-muted">No verdict given in the range.</td></tr>';
}

function drawAgreement(figures) {
  const rows = [...figures.pairs.map((p) => [escapeHtml(p.first_reviewer), escapeHtml(p.second_reviewer), p]),
    ["<em>All</em>", "", figures.agreement]];
  document.querySelector("#reviewer-agreement tbody").innerHTML = rows.map(([a, b, p]) => `<tr>
      <td>${a}</td><td>${b}</td><td class="text-end">${p.regions}</td>
      <td class="text-end">${share(p.observed_agreement)}</td><td class="text-end" data-kappa>${kappa(p.kappa)}</td></tr>`).join("");
  const rate = figures.audit_rate ? `${(100 * figures.audit_rate).toFixed(1)} % of reviewed boards` : "off (REVIEW_AUDIT_RATE=0)";
  document.getElementById("audit-note").textContent = `Double review (${rate}): ${figures.audits_done} of`
    + ` ${figures.audits_queued} queued boards audited; Cohen's kappa of first and second verdicts (– : undefined).`;
}

function drawDays(figures) {
  const names = [...new Set(figures.days.map((d) => d.reviewer))];
  const labels = [...new Set(figures.days.map((d) => d.day))].sort();
  const config = {
    type: "line",
    data: {
      labels,
      datasets: names.map((name, i) => ({
        label: name, borderColor: COLOURS[i % COLOURS.length], backgroundColor: COLOURS[i % COLOURS.length],
        spanGaps: true, tension: 0.2,
        data: labels.map((day) => figures.days.find((d) => d.day === day && d.reviewer === name)?.seconds_median ?? null),
      })),
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: { y: { min: 0, title: { display: true, text: "median s per verdict" } } },
    },
  };
  if (dayChart) {
    dayChart.data = config.data;
    dayChart.update();
  } else {
    dayChart = new Chart(document.getElementById("chart-reviewer-days"), config);
  }
}

async function load() {
  document.body.dataset.reviewerFigures = "loading";
  try {
    const figures = await api(`/api/review/figures?${query()}`, { headers: readerHeaders() });
    drawSpeed(figures);
    drawAgreement(figures);
    drawDays(figures);
  } catch (err) {
    showAlert(errorText(err), "danger", errorBox);
  }
  document.body.dataset.reviewerFigures = "ready";
}

onRangeChange(form, load);
load();
