// The dashboard's review figures: reviewed share, first-pass yield and false-call rate
// (per day and per class) from /api/dashboard/review, for the dashboard's date range.
// Kept apart from dashboard.js; it follows the same range form.
import { api, dashboardQuery, errorText, escapeHtml, onRangeChange, readerHeaders, showAlert } from "./common.js";

const Chart = window.Chart;
const form = document.getElementById("range");
const errorBox = document.getElementById("dashboard-error");
let dayChart = null;

function percent(rate) {
  return rate == null ? "–" : `${(100 * rate).toFixed(1)}%`;
}

function query() {
  return dashboardQuery(form);
}

function drawTotals(figures) {
  const t = figures.total;
  const d = figures.dispositions;
  const cards = [
    ["Reviewed share", percent(t.reviewed_share), `${t.reviewed_images} of ${t.images} images with defects`],
    ["First-pass yield", percent(t.first_pass_yield), `${t.passed_images} of ${t.reviewed_images} reviewed images without a real defect`],
    ["False-call rate", percent(t.false_call_rate), `${t.false_calls} of ${t.reviewed_regions} reviewed calls`],
    ["Dispositions", `${d.pass || 0} / ${d.repair || 0} / ${d.scrap || 0}`, "pass / repair / scrap"],
  ];
  document.getElementById("review-totals").innerHTML = cards.map(([label, value, note]) => `
    <div class="col"><div class="card stat-card h-100"><div class="card-body py-2">
      <div class="small text-muted">${label}</div>
      <div class="display-6 fw-semibold" data-review-stat="${escapeHtml(label)}">${escapeHtml(value)}</div>
      <div class="small text-muted">${escapeHtml(note)}</div></div></div></div>`).join("");
}

function drawClasses(figures) {
  const body = document.querySelector("#review-classes tbody");
  const rows = figures.classes.filter((c) => c.reviewed);
  body.innerHTML = rows.length ? rows.map((c) => `<tr data-class="${escapeHtml(c.class_name)}">
      <th scope="row" class="fw-normal">${escapeHtml(c.class_name)}</th>
      <td class="text-end">${c.reviewed}</td><td class="text-end">${c.real}</td>
      <td class="text-end">${c.false_call}</td><td class="text-end">${c.unsure}</td>
      <td class="text-end" data-false-call-rate>${percent(c.false_call_rate)}</td></tr>`).join("")
    : '<tr><td colspan="6" class="text-muted">No reviewed call in the range.</td></tr>';
}

function drawDays(figures) {
  const days = figures.days;
  const line = (label, key, color) => ({
    label, borderColor: color, backgroundColor: color, spanGaps: true, tension: 0.2,
    data: days.map((d) => (d[key] == null ? null : 100 * d[key])),
  });
  const config = {
    type: "line",
    data: {
      labels: days.map((d) => d.day),
      datasets: [
        line("First-pass yield", "first_pass_yield", "#198754"),
        line("False-call rate", "false_call_rate", "#dc3545"),
        line("Reviewed share", "reviewed_share", "#0d6efd"),
      ],
    },
    options: {
      interaction: { mode: "index", intersect: false },
      plugins: { tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${ctx.parsed.y == null ? "–" : ctx.parsed.y.toFixed(1)}%` } } },
      scales: { y: { min: 0, max: 100, title: { display: true, text: "%" } } },
    },
  };
  if (dayChart) {
    dayChart.data = config.data;
    dayChart.update();
  } else {
    dayChart = new Chart(document.getElementById("chart-review-days"), config);
  }
}

async function load() {
  document.body.dataset.reviewFigures = "loading";
  try {
    const figures = await api(`/api/dashboard/review?${query()}`, { headers: readerHeaders() });
    drawTotals(figures);
    drawClasses(figures);
    drawDays(figures);
  } catch (err) {
    showAlert(errorText(err), "danger", errorBox);
  }
  document.body.dataset.reviewFigures = "ready";
}

onRangeChange(form, load);
load();
