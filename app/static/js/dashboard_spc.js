// The dashboard's control charts (docs/spc.md): the p-chart of defective boards and the
// u-chart of one class's defects per board from /api/spc/*, for the dashboard's date
// range, with the centre line, the 3σ limits, the points a Western Electric rule flags
// (red) and a badge counting the open alarms. Kept apart from dashboard.js.
import { api, dashboardQuery, errorText, escapeHtml, showAlert } from "./common.js";

const Chart = window.Chart;
const form = document.getElementById("range");
const errorBox = document.getElementById("dashboard-error");
const subgroup = document.getElementById("spc-subgroup");
const classSelect = document.getElementById("spc-class");
const charts = {};
let answers = { p: null, u: null };

function query() {
  const q = dashboardQuery(form);
  q.set("subgroup", subgroup.value);
  return q;
}

function draw(id, chart) {
  const points = chart.points;
  const flagged = points.map((p) => p.rules.length > 0);
  const line = (label, key, color, dash) => ({
    label, data: points.map((p) => p[key]), borderColor: color, backgroundColor: color,
    borderDash: dash, pointRadius: 0, stepped: "middle", spanGaps: true, borderWidth: 1.5,
  });
  const config = {
    type: "line",
    data: {
      labels: points.map((p) => p.key),
      datasets: [
        {
          label: chart.kind === "p" ? "Fraction defective" : "Defects per board",
          data: points.map((p) => p.value), borderColor: "#0d6efd", backgroundColor: "#0d6efd",
          pointRadius: flagged.map((f) => (f ? 6 : 3)),
          pointStyle: flagged.map((f) => (f ? "triangle" : "circle")),
          pointBackgroundColor: flagged.map((f) => (f ? "#dc3545" : "#0d6efd")),
          pointBorderColor: flagged.map((f) => (f ? "#dc3545" : "#0d6efd")),
        },
        line("Centre line", "center", "#198754", []),
        line("UCL", "ucl", "#6c757d", [6, 4]),
        line("LCL", "lcl", "#6c757d", [6, 4]),
      ],
    },
    options: {
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        tooltip: {
          callbacks: {
            afterBody: (items) => {
              const p = points[items[0].dataIndex];
              const rules = p.rules.length ? `rules ${p.rules.join(", ")}` : "in control";
              return `${p.count} of ${p.boards} boards; ${rules}`;
            },
          },
        },
      },
      scales: { y: { min: 0 } },
    },
  };
  if (charts[id]) {
    charts[id].data = config.data;
    charts[id].update();
  } else {
    charts[id] = new Chart(document.getElementById(id), config);
  }
}

function drawAlarms() {
  const alarms = [answers.p, answers.u].filter(Boolean).flatMap((c) => c.alarms);
  const open = alarms.filter((a) => a.open);
  const badge = document.getElementById("spc-badge");
  badge.textContent = open.length ? `${open.length} open alarm${open.length > 1 ? "s" : ""}` : "no alarm";
  badge.className = `badge ms-1 ${open.length ? "text-bg-danger" : "text-bg-success"}`;
  badge.dataset.openAlarms = String(open.length);
  document.getElementById("spc-alarms").innerHTML = alarms.map((a) => `<li data-rule="${a.rule}">
    ${a.open ? "<strong>open</strong>" : "cleared"}: ${a.chart}-chart${a.class_name ? ` ${escapeHtml(a.class_name)}` : ""},
    rule ${a.rule} (${escapeHtml(a.rule_text)}), ${a.side}, from ${escapeHtml(a.first_key)} to ${escapeHtml(a.last_key)}</li>`).join("");
}

async function fillClasses() {
  const q = query();
  q.delete("subgroup");
  const summary = await api(`/api/dashboard/summary?${q}`);
  const chosen = classSelect.value;
  classSelect.innerHTML = summary.classes.map((c) => `<option value="${escapeHtml(c.class_name)}">${escapeHtml(c.class_name)}</option>`).join("")
    || '<option value="">no class</option>';
  if (chosen && summary.classes.some((c) => c.class_name === chosen)) classSelect.value = chosen;
}

async function load(withClasses) {
  document.body.dataset.spc = "loading";
  try {
    if (withClasses) await fillClasses();
    answers.p = await api(`/api/spc/p-chart?${query()}`);
    draw("chart-spc-p", answers.p);
    document.getElementById("spc-zone").textContent = `(days in ${answers.p.timezone})`;
    answers.u = null;
    if (classSelect.value) {
      const q = query();
      q.set("class", classSelect.value);
      answers.u = await api(`/api/spc/u-chart?${q}`);
      draw("chart-spc-u", answers.u);
    }
    drawAlarms();
  } catch (err) {
    showAlert(errorText(err), "danger", errorBox);
  }
  document.body.dataset.spc = "ready";
}

form.addEventListener("submit", (e) => {
  const { start_date: s, end_date: t } = form.elements;
  if (!(s.value && t.value && s.value > t.value)) load(true);
  e.preventDefault();
});
form.querySelectorAll("[data-days]").forEach((btn) => btn.addEventListener("click", () => load(true)));
subgroup.addEventListener("change", () => load(false));
classSelect.addEventListener("change", () => load(false));
load(true);
