// The dashboard's board yield (docs/boards.md#yield): first-pass and re-inspection yield
// per product and per line from /api/dashboard/board-yield, and the board-context pickers
// of the range form (product, line, side, lot), filled from /api/dashboard/board-contexts
// with the values the range's inspections were sent with. Kept apart from dashboard.js.
import {
  api, CONTEXT_PICKERS, dashboardQuery, errorText, escapeHtml, onRangeChange, readerHeaders, showAlert,
} from "./common.js";

const Chart = window.Chart;
const form = document.getElementById("range");
const errorBox = document.getElementById("yield-error");
const charts = {};
const FIRST_PASS = "#198754";
const REINSPECTION = "#0d6efd";

function percent(rate) {
  return rate == null ? "–" : `${(100 * rate).toFixed(1)}%`;
}

function rangeOnly() {
  const q = new URLSearchParams();
  if (form.elements.start_date.value) q.set("start_date", form.elements.start_date.value);
  if (form.elements.end_date.value) q.set("end_date", form.elements.end_date.value);
  return q;
}

async function fillPickers() {
  const values = await api(`/api/dashboard/board-contexts?${rangeOnly()}`);
  for (const name of CONTEXT_PICKERS) {
    const picker = form.elements[name];
    const chosen = picker.value;
    const every = picker.options[0].textContent;
    const offered = values[name].includes(chosen) || !chosen ? values[name] : [chosen, ...values[name]];
    picker.innerHTML = `<option value="">${escapeHtml(every)}</option>`
      + offered.map((v) => `<option value="${escapeHtml(v)}">${escapeHtml(v)}</option>`).join("");
    picker.value = chosen;
  }
}

function drawTotals(total) {
  const cards = [
    ["Boards", String(total.boards), "first inspected in the range"],
    ["First-pass yield", percent(total.first_pass_yield), `${total.first_pass_passed} of ${total.boards} passed their first inspection`],
    ["Re-inspected", String(total.reinspected_boards), "boards inspected again"],
    ["Re-inspection yield", percent(total.reinspection_yield), `${total.reinspection_passed} of ${total.reinspected_boards} passed at their latest inspection`],
  ];
  document.getElementById("yield-totals").innerHTML = cards.map(([label, value, note]) => `
    <div class="col"><div class="card stat-card h-100"><div class="card-body py-2">
      <div class="small text-muted">${label}</div>
      <div class="display-6 fw-semibold" data-yield-stat="${escapeHtml(label)}">${escapeHtml(value)}</div>
      <div class="small text-muted">${escapeHtml(note)}</div></div></div></div>`).join("");
}

function drawGroups(id, groups) {
  const names = Object.keys(groups);
  const bars = (label, key, color) => ({
    label, backgroundColor: color, borderColor: color,
    data: names.map((n) => (groups[n][key] == null ? null : +(100 * groups[n][key]).toFixed(1))),
  });
  const config = {
    type: "bar",
    data: { labels: names, datasets: [bars("First-pass yield", "first_pass_yield", FIRST_PASS), bars("Re-inspection yield", "reinspection_yield", REINSPECTION)] },
    options: {
      plugins: { tooltip: { callbacks: {
        label: (ctx) => `${ctx.dataset.label}: ${ctx.parsed.y == null ? "–" : ctx.parsed.y.toFixed(1)}%`,
        afterLabel: (ctx) => {
          const g = groups[names[ctx.dataIndex]];
          return ctx.datasetIndex === 0 ? `${g.first_pass_passed} of ${g.boards} boards` : `${g.reinspection_passed} of ${g.reinspected_boards} re-inspected`;
        },
      } } },
      scales: { y: { min: 0, max: 100, title: { display: true, text: "%" } } },
    },
  };
  if (charts[id]) {
    charts[id].data = config.data;
    charts[id].options = config.options;
    charts[id].update();
  } else {
    charts[id] = new Chart(document.getElementById(id), config);
  }
}

function drawTable(figures) {
  const rows = [
    ...Object.entries(figures.by_product).map(([name, g]) => [`Product ${name}`, "product", name, g]),
    ...Object.entries(figures.by_line).map(([name, g]) => [`Line ${name}`, "line", name, g]),
  ];
  document.querySelector("#yield-table tbody").innerHTML = rows.length ? rows.map(([label, kind, name, g]) => `
    <tr data-${kind}="${escapeHtml(name)}"><th scope="row" class="fw-normal">${escapeHtml(label)}</th>
      <td class="text-end">${g.boards}</td><td class="text-end" data-first-pass>${percent(g.first_pass_yield)}</td>
      <td class="text-end">${g.reinspected_boards}</td><td class="text-end" data-reinspection>${percent(g.reinspection_yield)}</td></tr>`).join("")
    : '<tr><td colspan="5" class="text-muted">No board with a serial in the range.</td></tr>';
}

async function load() {
  document.body.dataset.boardYield = "loading";
  errorBox.innerHTML = "";
  try {
    await fillPickers();
    const figures = await api(`/api/dashboard/board-yield?${dashboardQuery(form)}`, { headers: readerHeaders() });
    drawTotals(figures.total);
    drawGroups("chart-yield-product", figures.by_product);
    drawGroups("chart-yield-line", figures.by_line);
    drawTable(figures);
  } catch (err) {
    showAlert(errorText(err), "warning", errorBox);
  }
  document.body.dataset.boardYield = "ready";
}

// A picker applies at once: the whole dashboard reloads with it, as with Apply.
form.querySelectorAll("[data-context-picker]").forEach((picker) => picker.addEventListener("change", () => form.requestSubmit()));
onRangeChange(form, load);
load();
