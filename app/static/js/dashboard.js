// Dashboard: totals, defects by class (bar), Pareto, defects per day (line) and a heat map
// of region centroids, all fed by /api/dashboard/* aggregates computed in SQL.
import { api, classColor, dashboardQuery, errorText, escapeHtml, formatNumber, KNOWN_CLASSES, showAlert, withAlpha } from "./common.js";

const Chart = window.Chart;
const form = document.getElementById("range");
const errorBox = document.getElementById("dashboard-error");
const charts = {};
const HEAT_STOPS = [[255, 255, 255], [255, 243, 176], [252, 166, 54], [226, 48, 40], [106, 13, 77]];

Chart.defaults.font.size = 12;
Chart.defaults.maintainAspectRatio = false;
// Only the duration: assigning a whole object would drop Chart.js's easing and break the
// tooltip animation ("this._fn is not a function" on the first hover).
Chart.defaults.animation.duration = 250;

function isoDay(d) { return d.toISOString().slice(0, 10); }

function setRange(days) {
  const end = new Date();
  const start = new Date(end.getTime() - (days - 1) * 86400000);
  form.elements.start_date.value = isoDay(start);
  form.elements.end_date.value = isoDay(end);
}

function rangeQuery() {
  return dashboardQuery(form);
}

function chart(id, config) {
  if (charts[id]) {
    charts[id].data = config.data;
    charts[id].options = config.options;
    charts[id].update();
  } else {
    charts[id] = new Chart(document.getElementById(id), config);
  }
  return charts[id];
}

function drawTotals(summary, stats) {
  const cards = [
    ["Images", summary.total_images, "in the range"],
    ["With defects", summary.images_with_defects,
      summary.total_images ? `${((100 * summary.images_with_defects) / summary.total_images).toFixed(1)}% of images` : ""],
    ["Defect regions", summary.total_defects, summary.total_images ? `${(summary.total_defects / summary.total_images).toFixed(2)} per image` : ""],
    ["Failed", stats.inspections_failed, "inspections, all time"],
    ["Pending", stats.inspections_pending, "queued or running now"],
    ["Mean inference", stats.mean_processing_time_seconds == null ? "–" : `${formatNumber(stats.mean_processing_time_seconds)} s`, "per image, all time"],
  ];
  document.getElementById("totals").innerHTML = cards.map(([label, value, note]) => `
    <div class="col"><div class="card stat-card h-100"><div class="card-body py-2">
      <div class="small text-muted">${label}</div>
      <div class="display-6 fw-semibold" data-stat="${escapeHtml(label)}">${escapeHtml(value)}</div>
      <div class="small text-muted">${escapeHtml(note)}</div></div></div></div>`).join("");
}

function drawClasses(summary) {
  const names = summary.classes.map((c) => c.class_name);
  const colors = names.map(classColor);
  chart("chart-classes", {
    type: "bar",
    data: {
      labels: names,
      datasets: [{ label: "Regions", data: summary.classes.map((c) => c.regions), backgroundColor: colors, borderColor: colors }],
    },
    options: {
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { afterLabel: (ctx) => {
          const c = summary.classes[ctx.dataIndex];
          return `in ${c.images} image(s), ${c.total_area_pixels} px total`;
        } } },
      },
      scales: { y: { beginAtZero: true, title: { display: true, text: "regions" }, ticks: { precision: 0 } } },
    },
  });
  chart("chart-pareto", {
    data: {
      labels: names,
      datasets: [
        { type: "bar", label: "Regions", data: summary.classes.map((c) => c.regions), backgroundColor: colors, yAxisID: "y", order: 2 },
        { type: "line", label: "Cumulative %", data: summary.classes.map((c) => +(100 * c.cumulative_share).toFixed(1)),
          borderColor: "#212529", backgroundColor: "#212529", yAxisID: "y2", tension: 0, order: 1 },
        { type: "line", label: "80%", data: names.map(() => 80), borderColor: "#adb5bd", borderDash: [6, 4],
          pointRadius: 0, yAxisID: "y2", order: 0 },
      ],
    },
    options: {
      plugins: { legend: { labels: { filter: (item) => item.text !== "Regions" } } },
      scales: {
        y: { beginAtZero: true, title: { display: true, text: "regions" }, ticks: { precision: 0 } },
        y2: { position: "right", min: 0, max: 100, title: { display: true, text: "cumulative %" }, grid: { drawOnChartArea: false } },
      },
    },
  });
}

function drawDays(perDay) {
  const labels = perDay.days.map((d) => d.day);
  const names = [...new Set(perDay.days.flatMap((d) => Object.keys(d.by_class)))]
    .sort((a, b) => (KNOWN_CLASSES.indexOf(a) + 99) % 99 - (KNOWN_CLASSES.indexOf(b) + 99) % 99 || a.localeCompare(b));
  const datasets = names.map((name) => ({
    label: name, data: perDay.days.map((d) => d.by_class[name] || 0),
    borderColor: classColor(name), backgroundColor: withAlpha(classColor(name), 0.3), tension: 0.2, pointRadius: 2,
  }));
  if (!perDay.class_name) {
    datasets.unshift({ label: "All defects", data: perDay.days.map((d) => d.defects), borderColor: "#212529",
      backgroundColor: "#212529", borderWidth: 3, tension: 0.2, pointRadius: 2 });
  }
  datasets.push({ label: "Images", data: perDay.days.map((d) => d.images), borderColor: "#6c757d", borderDash: [5, 4],
    backgroundColor: "#6c757d", tension: 0.2, pointRadius: 0, yAxisID: "y2" });
  chart("chart-days", {
    type: "line",
    data: { labels, datasets },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: {
        y: { beginAtZero: true, title: { display: true, text: "defect regions" }, ticks: { precision: 0 } },
        y2: { beginAtZero: true, position: "right", title: { display: true, text: "images" }, ticks: { precision: 0 }, grid: { drawOnChartArea: false } },
        x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 12 } },
      },
    },
  });
}

function heatColor(t) {
  const x = Math.min(1, Math.max(0, t)) * (HEAT_STOPS.length - 1);
  const i = Math.min(Math.floor(x), HEAT_STOPS.length - 2);
  const f = x - i;
  const c = HEAT_STOPS[i].map((v, k) => Math.round(v + f * (HEAT_STOPS[i + 1][k] - v)));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

let heat = null;

function drawHeatmap(map) {
  heat = map;
  const canvas = document.getElementById("heatmap");
  const ctx = canvas.getContext("2d");
  const size = canvas.width;
  const cell = size / map.bins;
  ctx.clearRect(0, 0, size, size);
  for (let r = 0; r < map.bins; r += 1) {
    for (let c = 0; c < map.bins; c += 1) {
      const n = map.counts[r][c];
      // Square-root scale: a few hot spots would otherwise wash out every other cell.
      ctx.fillStyle = n ? heatColor(0.12 + 0.88 * Math.sqrt(n / map.max_count)) : "#ffffff";
      ctx.fillRect(c * cell, r * cell, Math.ceil(cell), Math.ceil(cell));
    }
  }
  ctx.strokeStyle = "rgba(0,0,0,0.12)";
  ctx.lineWidth = 1;
  for (let i = 1; i < 4; i += 1) {
    ctx.beginPath();
    ctx.moveTo((i * size) / 4, 0); ctx.lineTo((i * size) / 4, size);
    ctx.moveTo(0, (i * size) / 4); ctx.lineTo(size, (i * size) / 4);
    ctx.stroke();
  }
  document.getElementById("heat-max").textContent = `${map.max_count} (√ scale)`;
  document.getElementById("heat-info").innerHTML = map.total_regions
    ? `${map.total_regions} region${map.total_regions === 1 ? "" : "s"}${map.class_name ? ` of class <b>${escapeHtml(map.class_name)}</b>` : ""};
       the square is the image area (top-left = image origin), each cell ${(100 / map.bins).toFixed(1)}% of width and height.
       Hover a cell for its count.`
    : "No regions in this range.";
  canvas.dataset.totalRegions = String(map.total_regions);
}

const heatCanvas = document.getElementById("heatmap");
const heatTip = document.getElementById("heat-tip");
heatCanvas.addEventListener("mousemove", (e) => {
  if (!heat) return;
  const box = heatCanvas.getBoundingClientRect();
  const c = Math.min(heat.bins - 1, Math.floor(((e.clientX - box.left) / box.width) * heat.bins));
  const r = Math.min(heat.bins - 1, Math.floor(((e.clientY - box.top) / box.height) * heat.bins));
  const pct = (i) => `${((100 * i) / heat.bins).toFixed(0)}–${((100 * (i + 1)) / heat.bins).toFixed(0)}%`;
  heatTip.hidden = false;
  heatTip.innerHTML = `<b>${heat.counts[r][c]}</b> region(s)<br>x ${pct(c)}, y ${pct(r)}`;
  heatTip.style.transform = `translate(${e.clientX - box.left + 12}px, ${e.clientY - box.top + 12}px)`;
});
heatCanvas.addEventListener("mouseleave", () => { heatTip.hidden = true; });

function fillClassSelects(summary) {
  const names = [...KNOWN_CLASSES];
  for (const c of summary.classes) if (!names.includes(c.class_name)) names.push(c.class_name);
  for (const id of ["day-class", "heat-class"]) {
    const select = document.getElementById(id);
    const keep = select.value;
    select.innerHTML = `<option value="">All classes</option>` + names.map((n) => `<option value="${escapeHtml(n)}">${escapeHtml(n)}</option>`).join("");
    select.value = names.includes(keep) ? keep : "";
  }
}

async function loadDays() {
  const q = rangeQuery();
  const cls = document.getElementById("day-class").value;
  if (cls) q.set("class_name", cls);
  drawDays(await api(`/api/dashboard/defects-per-day?${q}`));
}

async function loadHeatmap() {
  const q = rangeQuery();
  const cls = document.getElementById("heat-class").value;
  if (cls) q.set("class_name", cls);
  q.set("bins", document.getElementById("heat-bins").value);
  drawHeatmap(await api(`/api/dashboard/heatmap?${q}`));
}

async function guarded(task) {
  try {
    await task();
  } catch (err) {
    showAlert(errorText(err), "danger", errorBox);
  }
}

async function loadAll() {
  errorBox.innerHTML = "";
  document.body.dataset.dashboard = "loading";
  await guarded(async () => {
    const [summary, stats] = await Promise.all([api(`/api/dashboard/summary?${rangeQuery()}`), api("/api/stats")]);
    drawTotals(summary, stats);
    fillClassSelects(summary);
    drawClasses(summary);
  });
  await Promise.all([guarded(loadDays), guarded(loadHeatmap)]);
  document.body.dataset.dashboard = "ready";
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const { start_date: s, end_date: t } = form.elements;
  if (s.value && t.value && s.value > t.value) {
    errorBox.innerHTML = "";
    showAlert("The start date is after the end date.", "warning", errorBox);
    return;
  }
  loadAll();
});
form.querySelectorAll("[data-days]").forEach((btn) => btn.addEventListener("click", () => {
  setRange(Number(btn.dataset.days));
  loadAll();
}));
document.getElementById("day-class").addEventListener("change", () => guarded(loadDays));
document.getElementById("heat-class").addEventListener("change", () => guarded(loadHeatmap));
document.getElementById("heat-bins").addEventListener("change", () => guarded(loadHeatmap));

setRange(30);
loadAll();
