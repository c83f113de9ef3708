// The dashboard's false-call Pareto by reason code (/api/dashboard/false-calls/reasons),
// for the dashboard's date range and model version: bars per reason, most first, the
// cumulative share as a line, and the same figures as a table. Kept apart from
// dashboard_review.js; it follows the same range form.
import { api, errorText, escapeHtml, onRangeChange, readerHeaders, showAlert } from "./common.js";

const Chart = window.Chart;
const form = document.getElementById("range");
const errorBox = document.getElementById("dashboard-error");
const NO_REASON = "(no reason)";
let chart = null;

function query() {
  const q = new URLSearchParams();
  if (form.elements.start_date.value) q.set("start_date", form.elements.start_date.value);
  if (form.elements.end_date.value) q.set("end_date", form.elements.end_date.value);
  if (form.elements.model_version.value.trim()) q.set("model_version", form.elements.model_version.value.trim());
  return q;
}

const percent = (share) => `${(100 * share).toFixed(1)}%`;

function drawTable(pareto) {
  const body = document.querySelector("#false-call-reasons-table tbody");
  body.innerHTML = pareto.reasons.length ? pareto.reasons.map((r) => `<tr data-reason="${escapeHtml(r.reason ?? "")}">
      <th scope="row" class="fw-normal">${escapeHtml(r.reason ?? NO_REASON)}</th>
      <td class="text-end" data-false-calls>${r.false_calls}</td>
      <td class="text-end">${percent(r.share)}</td><td class="text-end">${percent(r.cumulative_share)}</td></tr>`).join("")
    : '<tr><td colspan="4" class="text-muted">No false call in the range.</td></tr>';
}

function drawChart(pareto) {
  const labels = pareto.reasons.map((r) => r.reason ?? NO_REASON);
  const data = {
    labels,
    datasets: [
      { type: "bar", label: "False calls", data: pareto.reasons.map((r) => r.false_calls),
        backgroundColor: "#198754", yAxisID: "y", order: 2 },
      { type: "line", label: "Cumulative %", data: pareto.reasons.map((r) => +(100 * r.cumulative_share).toFixed(1)),
        borderColor: "#212529", backgroundColor: "#212529", yAxisID: "y2", tension: 0, order: 1 },
    ],
  };
  if (chart) {
    chart.data = data;
    chart.update();
    return;
  }
  chart = new Chart(document.getElementById("chart-false-call-reasons"), {
    data,
    options: {
      scales: {
        y: { beginAtZero: true, title: { display: true, text: "false calls" }, ticks: { precision: 0 } },
        y2: { position: "right", min: 0, max: 100, title: { display: true, text: "cumulative %" }, grid: { drawOnChartArea: false } },
      },
    },
  });
}

async function load() {
  document.body.dataset.falseCallReasons = "loading";
  try {
    const pareto = await api(`/api/dashboard/false-calls/reasons?${query()}`, { headers: readerHeaders() });
    drawTable(pareto);
    drawChart(pareto);
  } catch (err) {
    showAlert(errorText(err), "danger", errorBox);
  }
  document.body.dataset.falseCallReasons = "ready";
}

onRangeChange(form, load);
load();
