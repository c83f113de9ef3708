// The result viewer: tabs of the four images, boxes of every region in its class colour
// (hover for properties, zoom and pan, a toggle per class), a sortable region table whose
// rows highlight their box, the defect summary, downloads and delete.
// Used by the viewer page and, inline, by the upload page.
// Defects too small to see get numbered pins; `[`/`,` and `]`/`.` step through the defects
// (also through `window.aoiViewer`, which the review mode drives); a minimap shows where a
// zoomed view is.
import {
  api, classBadges, classColor, downloadUrl, errorText, escapeHtml, formatNumber, formatTime,
  KNOWN_CLASSES, messageFromBody, readerHeaders, showAlert, textColorOn, withAlpha,
} from "./common.js";
import { RegionSelection } from "./region_state.js";

const TABS = [
  ["input", "Input"],
  ["combined", "Combined"],
  ["mask", "Mask"],
  ["overlay", "Overlay"],
];
const DOWNLOADS = [
  ["input", "Input"], ["combined", "Combined"], ["mask", "Mask"], ["overlay", "Overlay"],
  ["json", "JSON"],
];
const COLUMNS = [
  ["class_name", "Class"], ["region_id", "#"], ["area_pixels", "Area (px)"],
  ["centroid", "Centroid (x, y)"], ["bbox", "BBox (x, y, w×h)"], ["perimeter", "Perimeter (px)"],
  ["circularity", "Circularity"], ["aspect_ratio", "Aspect ratio"],
];
const MAX_ZOOM = 16;
const SVG_NS = "http://www.w3.org/2000/svg";
// A region whose box is smaller than this on screen (pixels) also gets a numbered pin.
const MIN_MARKER_PX = 12;
// Markers are drawn on screen, outside the region's box: this many screen pixels of the
// image stay clear between the box and the inner edge of its outline, at any zoom.
const MARKER_GAP_PX = 2;
const MARKER_STROKE_PX = { normal: 1.5, selected: 2.5 };
// Keys that step through the defects (previous / next), wherever the focus is but in a field.
const PREV_DEFECT_KEYS = new Set(["[", ","]);
const NEXT_DEFECT_KEYS = new Set(["]", "."]);

function classOrder(name) {
  const i = KNOWN_CLASSES.indexOf(name);
  return i < 0 ? KNOWN_CLASSES.length : i;
}

function flattenRegions(regionsAnswer) {
  const rows = [];
  for (const group of regionsAnswer.classes) {
    for (const r of group.regions) {
      rows.push({
        ...r,
        class_name: group.class_name,
        key: `${group.class_name}:${r.region_id}`,
        color: classColor(group.class_name),
      });
    }
  }
  return rows;
}

/** The defects of a regions answer (GET /api/images/{id}/regions) in the one defect order
 * of the viewer (class in the model's order, then region id): rows with `key`,
 * `class_name`, `color` and the region's fields. */
export function defectOrder(regionsAnswer) {
  return flattenRegions(regionsAnswer)
    .sort((a, b) => compare(sortValue(a, "class_name"), sortValue(b, "class_name")));
}

function sortValue(row, column) {
  switch (column) {
    case "class_name": return [classOrder(row.class_name), row.class_name, row.region_id];
    case "centroid": return [row.centroid.y, row.centroid.x];
    case "bbox": return [row.bounding_box.y, row.bounding_box.x];
    default: return [row[column]];
  }
}

function compare(a, b) {
  for (let i = 0; i < a.length; i += 1) {
    if (a[i] < b[i]) return -1;
    if (a[i] > b[i]) return 1;
  }
  return 0;
}

function tooltipHtml(r) {
  const b = r.bounding_box;
  return `<div class="fw-semibold"><span class="swatch" data-style="background:${r.color}"></span>
      ${escapeHtml(r.class_name)} #${r.region_id}</div>
    <table class="tooltip-table">
      <tr><th>Area</th><td>${r.area_pixels} px</td></tr>
      <tr><th>Centroid</th><td>${formatNumber(r.centroid.x, 1)}, ${formatNumber(r.centroid.y, 1)}</td></tr>
      <tr><th>BBox</th><td>${b.x}, ${b.y}, ${b.width}×${b.height}</td></tr>
      <tr><th>Perimeter</th><td>${formatNumber(r.perimeter)} px</td></tr>
      <tr><th>Axes</th><td>${formatNumber(r.major_axis)} / ${formatNumber(r.minor_axis)} px</td></tr>
      <tr><th>Circularity</th><td>${formatNumber(r.circularity, 3)}</td></tr>
      <tr><th>Aspect ratio</th><td>${formatNumber(r.aspect_ratio)}</td></tr>
    </table>`;
}

/** Renders the result of inspection `id` into `root`.
 * Options: `onDeleted()` after a confirmed delete; `headingLevel` for the title. */
export async function renderResult(root, id, { onDeleted = null, compact = false, preloaded = null } = {}) {
  if (preloaded) return showResult(root, preloaded.detail, preloaded.regions, { onDeleted, compact });
  root.innerHTML = `<div class="d-flex align-items-center gap-2 text-muted py-4">
      <div class="spinner-border spinner-border-sm" role="status"></div> Loading result ${escapeHtml(id)}…</div>`;
  const [detailAnswer, regionsResult] = await Promise.allSettled([
    // Who asks: a board's blind second reviewer gets neither first verdicts nor disposition.
    api(`/api/images/${encodeURIComponent(id)}`, { headers: readerHeaders() }),
    api(`/api/images/${encodeURIComponent(id)}/regions`, { headers: readerHeaders() }),
  ]);
  if (detailAnswer.status === "fulfilled" && detailAnswer.value.status !== "succeeded") {
    renderState(root, detailAnswer.value, () => renderResult(root, id, { onDeleted, compact }));
    return null;
  }
  const failure = [detailAnswer, regionsResult].find((r) => r.status === "rejected");
  if (failure) {
    root.innerHTML = "";
    showAlert(errorText(failure.reason), "danger", root);
    return null;
  }
  return showResult(root, detailAnswer.value, regionsResult.value, { onDeleted, compact });
}

/** Draws the result of an inspection whose answers are at hand (`detail`: GET
 * /api/images/{id}, `regionsAnswer`: GET /api/images/{id}/regions) into `root`, at once
 * (no request but the image's); the `ResultView`. The review mode opens the next board so,
 * from the answers it fetched while the board before was reviewed. */
export function showResult(root, detail, regionsAnswer, { onDeleted = null, compact = false } = {}) {
  const view = new ResultView(root, detail, regionsAnswer, { onDeleted, compact });
  view.render();
  return view;
}

/** An image with no result (pending, processing, failed): its status, error and, when it
 * failed, a Retry button; `reload()` renders the result once the retry succeeds. */
function renderState(root, state, reload) {
  const waiting = state.next_attempt_at
    ? `<p class="mb-1">Waiting for the ${state.waiting_for === "storage" ? "object store" : "model service"}; next attempt at ${escapeHtml(formatTime(state.next_attempt_at))}.</p>`
    : "";
  root.innerHTML = `<div class="card state-panel" data-status="${escapeHtml(state.status)}"><div class="card-body">
      <h2 class="h5">${escapeHtml(state.original_filename)} <span class="badge text-bg-${state.status === "failed" ? "danger" : "secondary"}">${escapeHtml(state.status)}</span></h2>
      <p class="small text-muted mb-1"><code>${escapeHtml(state.img_unique_id)}</code> · accepted ${escapeHtml(formatTime(state.timestamp))} · attempts: ${state.attempts}</p>
      ${state.error ? `<p class="text-danger mb-1 row-error">${escapeHtml(state.error)}</p>` : ""}
      ${waiting}
      ${state.status === "failed" ? '<button type="button" class="btn btn-sm btn-danger retry-btn mt-2">Retry</button>' : ""}
      <div class="retry-result small mt-2"></div>
    </div></div>`;
  const btn = root.querySelector(".retry-btn");
  if (!btn) return;
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    btn.textContent = "Retrying…";
    try {
      await api(`/api/images/${encodeURIComponent(state.img_unique_id)}/retry`, { method: "POST" });
      reload();
    } catch (err) {
      btn.disabled = false;
      btn.textContent = "Retry";
      root.querySelector(".retry-result").innerHTML = `<span class="text-danger">${escapeHtml(errorText(err))}</span>`;
    }
  });
}


/** "Board SN… · product … · line …" from an image answer's `context` (docs/boards.md),
 * the serial linking to the board's page; "" without one. */
function boardLine(ctx) {
  if (!ctx) return "";
  const parts = ["product", "line", "station", "side", "lot"]
    .filter((k) => ctx[k])
    .map((k) => `${k} ${escapeHtml(ctx[k])}`);
  const serial = ctx.board_serial
    ? `Board <a class="board-link" href="/board/${encodeURIComponent(ctx.board_serial)}">${escapeHtml(ctx.board_serial)}</a>`
    : "";
  return `<div class="small board-context">${[serial, ...parts].filter(Boolean).join(" · ")}</div>`;
}

/** "Model: name version · service URL · agent x" from an image answer's `provenance`
 * (absent on upload answers, null fields for results stored before it was recorded). */
function modelLine(p) {
  if (!p || !(p.model_name || p.model_version || p.model_service_url)) return "";
  const model = [p.model_name, p.model_version].filter(Boolean).join(" ") || "not reported";
  const service = p.model_service_url ? ` · service ${escapeHtml(p.model_service_url)}` : "";
  const agent = p.agent_version ? ` · agent ${escapeHtml(p.agent_version)}` : "";
  return `<div class="text-muted small model-line">Model: <span class="model-version">${escapeHtml(model)}</span>${service}${agent}</div>`;
}

class ResultView {
  constructor(root, detail, regionsAnswer, options) {
    this.root = root;
    this.detail = detail;
    this.id = detail.img_unique_id;
    this.width = regionsAnswer.image_width;
    this.height = regionsAnswer.image_height;
    // The defect order of pins and of next/previous: class (model order), then region id.
    this.rows = defectOrder(regionsAnswer);
    this.classes = regionsAnswer.classes
      .map((c) => ({ ...c, color: classColor(c.class_name) }))
      .sort((a, b) => classOrder(a.class_name) - classOrder(b.class_name));
    this.hidden = new Set();
    this.sort = { column: "class_name", dir: 1 };
    // The one current defect; every way of moving goes through it (region_state.js).
    this.selection = new RegionSelection(this.rows);
    this.selection.addEventListener("change", (e) => this.showSelection(e.detail));
    this.zoom = { scale: 1, tx: 0, ty: 0, fit: 1 };
    this.tab = "input";
    this.options = options;
  }

  render() {
    const d = this.detail;
    const id = escapeHtml(this.id);
    const totalArea = this.classes.reduce((s, c) => s + c.total_area_pixels, 0);
    this.root.innerHTML = `
    <div class="result-view" data-img-id="${id}">
      <div class="d-flex flex-wrap justify-content-between align-items-start gap-2 mb-3">
        <div>
          <h2 class="h5 mb-1">Inspection <code class="result-id">${id}</code></h2>
          <div class="text-muted small">
            ${escapeHtml(formatTime(d.timestamp))}
            ${d.original_filename ? ` · <span title="original file name">${escapeHtml(d.original_filename)}</span>` : ""}
            · ${d.image_width}×${d.image_height} px
            · inference ${formatNumber(d.processing_time_seconds)} s
            ${d.batch_id ? ` · batch <a href="/batch?batch=${encodeURIComponent(d.batch_id)}">${escapeHtml(d.batch_id)}</a>` : ""}
          </div>
          ${modelLine(d.provenance)}
          ${boardLine(d.context)}
          <div class="mt-2 result-summary">
            <span class="badge text-bg-dark total-defects">${d.total_defects} defect${d.total_defects === 1 ? "" : "s"}</span>
            ${classBadges(d.defect_classes)}
          </div>
        </div>
        <div class="d-flex flex-wrap gap-1 downloads" role="group" aria-label="Downloads">
          ${DOWNLOADS.map(([kind, label]) => `<a class="btn btn-sm btn-outline-primary" data-download="${kind}"
              href="${downloadUrl(this.id, kind)}" download>⤓ ${label}</a>`).join("")}
          <button type="button" class="btn btn-sm btn-outline-danger delete-btn">Delete…</button>
        </div>
      </div>
      <div class="row g-3">
        <div class="col-lg-8">
          <ul class="nav nav-tabs image-tabs" role="tablist" aria-label="Image">
            ${TABS.map(([kind, label]) => `<li class="nav-item" role="presentation">
              <button type="button" class="nav-link${kind === this.tab ? " active" : ""}" role="tab"
                id="tab-${id}-${kind}" aria-controls="panel-${id}" tabindex="${kind === this.tab ? 0 : -1}"
                data-tab="${kind}" aria-selected="${kind === this.tab}">${label}</button></li>`).join("")}
          </ul>
          <div class="d-flex flex-wrap align-items-center gap-2 py-2 viewer-toolbar">
            <div class="btn-group btn-group-sm" role="group" aria-label="Zoom">
              <button type="button" class="btn btn-outline-secondary" data-zoom="out" title="Zoom out">−</button>
              <button type="button" class="btn btn-outline-secondary" data-zoom="fit" title="Fit the image">Fit</button>
              <button type="button" class="btn btn-outline-secondary" data-zoom="in" title="Zoom in">+</button>
            </div>
            <span class="small text-muted zoom-level" aria-live="polite">100%</span>
            <div class="btn-group btn-group-sm align-items-center" role="group" aria-label="Defects">
              <button type="button" class="btn btn-outline-secondary" data-defect="prev"
                aria-label="Previous defect" title="Previous defect ([ or ,)"${this.rows.length ? "" : " disabled"}>‹</button>
              <span class="small px-2 text-center defect-position" aria-live="polite">${this.rows.length ? `– / ${this.rows.length}` : "no defects"}</span>
              <button type="button" class="btn btn-outline-secondary" data-defect="next"
                aria-label="Next defect" title="Next defect (] or .)"${this.rows.length ? "" : " disabled"}>›</button>
            </div>
            <div class="form-check form-switch mb-0 ms-2">
              <input class="form-check-input" type="checkbox" id="boxes-${id}" checked data-toggle-boxes aria-keyshortcuts="H">
              <label class="form-check-label small" for="boxes-${id}">Boxes <kbd>H</kbd></label>
            </div>
            <div class="d-flex flex-wrap gap-1 class-toggles" aria-label="Show classes">
              ${this.classes.map((c) => `<label class="btn btn-sm class-toggle active" data-class="${escapeHtml(c.class_name)}"
                  data-style="--cls:${c.color};--cls-text:${textColorOn(c.color)}">
                <input type="checkbox" class="visually-hidden" checked data-class-toggle="${escapeHtml(c.class_name)}">
                ${escapeHtml(c.class_name)} (${c.total_regions})</label>`).join("")}
            </div>
          </div>
          <div class="stage-viewport" tabindex="0" role="tabpanel" id="panel-${id}" aria-labelledby="tab-${id}-${this.tab}"
               aria-description="Image with defect boxes; wheel or +/- to zoom, 0 to fit, drag or arrow keys to pan, [ and ] for the previous and next defect, H to hide the boxes">
            <div class="stage">
              <img class="stage-image" alt="${id} input" draggable="false">
            </div>
            <svg class="stage-boxes" xmlns="${SVG_NS}" aria-hidden="true"></svg>
            <div class="pin-layer" aria-hidden="true"></div>
            <div class="minimap" hidden aria-hidden="true"><img alt="" draggable="false"><div class="minimap-view"></div></div>
            <div class="region-tooltip" role="tooltip" hidden></div>
            <div class="stage-loading small text-muted">loading image…</div>
          </div>
          <div class="small text-muted mt-1 viewer-hint">Wheel or <kbd>−</kbd>/<kbd>+</kbd> to zoom, <kbd>0</kbd> to fit,
            drag to pan; hover a box for its properties, click a box, a pin or a table row to select it;
            <kbd>[</kbd> <kbd>]</kbd> previous / next defect; <kbd>H</kbd> hides the boxes.</div>
        </div>
        <div class="col-lg-4">
          <div class="card">
            <div class="card-header py-2">Defect summary <span class="text-muted small">(mask legend)</span></div>
            <div class="card-body p-0">
              <table class="table table-sm mb-0 class-summary">
                <thead><tr><th>Class</th><th class="text-end">Regions</th><th class="text-end">Area (px)</th><th class="text-end">Area %</th></tr></thead>
                <tbody>
                ${this.classes.length ? this.classes.map((c) => `<tr data-class="${escapeHtml(c.class_name)}">
                  <td><span class="swatch" data-style="background:${c.color}"></span>${escapeHtml(c.class_name)}</td>
                  <td class="text-end">${c.total_regions}</td>
                  <td class="text-end">${c.total_area_pixels}</td>
                  <td class="text-end">${totalArea ? ((100 * c.total_area_pixels) / totalArea).toFixed(1) : "0"}</td>
                </tr>`).join("") : `<tr><td colspan="4" class="text-muted">No defect found in this image.</td></tr>`}
                </tbody>
              </table>
            </div>
          </div>
        </div>
      </div>
      <h3 class="h6 mt-4">Regions <span class="text-muted">(${this.rows.length})</span></h3>
      <div class="table-responsive regions-scroll" tabindex="0" role="region" aria-label="Regions">
        <table class="table table-sm table-hover align-middle regions-table mb-0">
          <thead class="table-light"><tr>
            ${COLUMNS.map(([key, label]) => `<th scope="col" data-sort="${key}" aria-sort="none">
                <button type="button" class="sort-btn">${label} <span class="sort-mark" aria-hidden="true"></span></button></th>`).join("")}
          </tr></thead>
          <tbody></tbody>
        </table>
      </div>
    </div>`;
    this.q = (sel) => this.root.querySelector(sel);
    this.viewport = this.q(".stage-viewport");
    this.stage = this.q(".stage");
    this.img = this.q(".stage-image");
    this.svg = this.q(".stage-boxes");
    this.tooltip = this.q(".region-tooltip");
    this.pinLayer = this.q(".pin-layer");
    this.minimap = this.q(".minimap");
    this.drawBoxes();
    this.renderTable();
    this.bind();
    // The fitted size from the image's known size, before the image arrives: a defect
    // selected at once (review mode) is zoomed relative to the true fit, not to 1:1.
    this.fit();
    this.showTab("input");
    exposeViewer(this);
  }

  /** One outline per region, in screen coordinates (`placeBoxes` puts them): drawn outside
   * the region's box with a constant screen width and no fill, so at any zoom the defect
   * itself stays in sight. */
  drawBoxes() {
    this.boxes = new Map();
    for (const r of this.rows) {
      const rect = document.createElementNS(SVG_NS, "rect");
      rect.setAttribute("stroke", r.color);
      rect.setAttribute("fill", "none");
      rect.setAttribute("class", "region-box");
      rect.dataset.key = r.key;
      rect.dataset.class = r.class_name;
      this.svg.appendChild(rect);
      this.boxes.set(r.key, rect);
    }
    this.ring = document.createElementNS(SVG_NS, "rect");
    this.ring.setAttribute("class", "selection-ring");
    this.ring.setAttribute("visibility", "hidden");
    this.svg.appendChild(this.ring);
    this.drawPins();
  }

  /** Puts every region's outline around its box as the image is on screen now. */
  placeBoxes() {
    const { scale, tx, ty } = this.zoom;
    for (const r of this.rows) {
      const rect = this.boxes.get(r.key);
      const b = r.bounding_box;
      const stroke = rect.classList.contains("selected") ? MARKER_STROKE_PX.selected : MARKER_STROKE_PX.normal;
      const out = MARKER_GAP_PX + stroke / 2; // from the box's edge to the stroke's centre line
      rect.setAttribute("x", (tx + b.x * scale - out).toFixed(1));
      rect.setAttribute("y", (ty + b.y * scale - out).toFixed(1));
      rect.setAttribute("width", (b.width * scale + 2 * out).toFixed(1));
      rect.setAttribute("height", (b.height * scale + 2 * out).toFixed(1));
      rect.setAttribute("stroke-width", String(stroke));
    }
    const current = this.selection.current;
    const rect = current && this.boxes.get(current.key);
    this.ring.setAttribute("visibility", rect && !rect.classList.contains("d-none") ? "visible" : "hidden");
    if (!rect) return;
    const grow = MARKER_STROKE_PX.selected / 2 + 0.5; // just outside the coloured line
    for (const [attr, by] of [["x", -grow], ["y", -grow], ["width", 2 * grow], ["height", 2 * grow]]) {
      this.ring.setAttribute(attr, (Number(rect.getAttribute(attr)) + by).toFixed(1));
    }
  }

  /** One numbered pin per region (its place in the defect order), shown by `placePins`
   * only while the region's box is smaller than MIN_MARKER_PX on screen. */
  drawPins() {
    this.pins = new Map();
    this.rows.forEach((r, i) => {
      const pin = document.createElement("span");
      pin.className = "region-pin";
      pin.dataset.key = r.key;
      pin.dataset.class = r.class_name;
      pin.textContent = String(i + 1);
      pin.dataset.style = `background:${r.color};color:${textColorOn(r.color)}`;
      pin.hidden = true;
      this.pinLayer.appendChild(pin);
      this.pins.set(r.key, pin);
    });
  }

  placePins() {
    const { scale, tx, ty } = this.zoom;
    for (const r of this.rows) {
      const pin = this.pins.get(r.key);
      const b = r.bounding_box;
      const small = Math.max(b.width, b.height) * scale < MIN_MARKER_PX;
      pin.hidden = !small;
      if (!small) continue;
      const x = tx + (b.x + b.width / 2) * scale;
      const y = ty + (b.y + b.height / 2) * scale;
      pin.style.transform = `translate(calc(${x}px - 50%), calc(${y}px - 50%))`;
    }
  }

  /** The small whole image with a frame around the part on screen; shown when zoomed in. */
  drawMinimap() {
    const { scale, tx, ty, fit } = this.zoom;
    const zoomed = scale > fit * 1.05 && this.stageW > 0;
    this.minimap.hidden = !zoomed;
    if (!zoomed) return;
    const mw = this.minimap.clientWidth;
    const k = mw / this.stageW; // minimap pixels per image pixel
    const vw = this.viewport.clientWidth;
    const vh = this.viewport.clientHeight;
    const x0 = Math.max(0, -tx / scale);
    const y0 = Math.max(0, -ty / scale);
    const x1 = Math.min(this.stageW, (vw - tx) / scale);
    const y1 = Math.min(this.stageH, (vh - ty) / scale);
    const frame = this.minimap.querySelector(".minimap-view");
    frame.style.transform = `translate(${x0 * k}px, ${y0 * k}px)`;
    frame.style.width = `${Math.max(2, (x1 - x0) * k)}px`;
    frame.style.height = `${Math.max(2, (y1 - y0) * k)}px`;
  }

  // -- defect navigation (also used by the review mode through window.aoiViewer) ------

  /** Select defect `index` (0-based, in the defect order), zoomed to and highlighted. */
  selectRegion(index) {
    return this.selection.select(index, { center: true, scrollRow: true });
  }

  /** The next (`step` 1) or previous (-1) defect after the selected one (within the
   * selection's class scope, when it has one). */
  stepRegion(step) {
    return this.selection.step(step, { center: true, scrollRow: true });
  }

  selectedIndex() {
    return this.selection.index;
  }

  /** The key of the current defect, or null. */
  get selected() {
    return this.selection.current?.key ?? null;
  }

  /** Shows or hides every box and pin (the Boxes switch, key H). */
  toggleMarkers(show = null) {
    const input = this.q("[data-toggle-boxes]");
    input.checked = show ?? !input.checked;
    input.dispatchEvent(new Event("change"));
  }

  renderTable() {
    const { column, dir } = this.sort;
    const rows = [...this.rows].sort((a, b) => dir * compare(sortValue(a, column), sortValue(b, column)));
    const body = this.q(".regions-table tbody");
    if (!rows.length) {
      body.innerHTML = `<tr><td colspan="${COLUMNS.length}" class="text-muted">No regions.</td></tr>`;
    } else {
      body.innerHTML = rows.map((r) => {
        const b = r.bounding_box;
        const muted = this.hidden.has(r.class_name) ? " hidden-class" : "";
        const sel = this.selected === r.key ? " table-primary selected" : "";
        return `<tr data-key="${escapeHtml(r.key)}" class="region-row${muted}${sel}" tabindex="0">
          <td><span class="swatch" data-style="background:${r.color}"></span>${escapeHtml(r.class_name)}</td>
          <td>${r.region_id}</td>
          <td class="text-end">${r.area_pixels}</td>
          <td>${formatNumber(r.centroid.x, 1)}, ${formatNumber(r.centroid.y, 1)}</td>
          <td>${b.x}, ${b.y}, ${b.width}×${b.height}</td>
          <td class="text-end">${formatNumber(r.perimeter)}</td>
          <td class="text-end">${formatNumber(r.circularity, 3)}</td>
          <td class="text-end">${formatNumber(r.aspect_ratio)}</td>
        </tr>`;
      }).join("");
    }
    for (const th of this.root.querySelectorAll(".regions-table th[data-sort]")) {
      const active = th.dataset.sort === column;
      th.setAttribute("aria-sort", active ? (dir > 0 ? "ascending" : "descending") : "none");
      th.querySelector(".sort-mark").textContent = active ? (dir > 0 ? "▲" : "▼") : "";
    }
  }

  bind() {
    this.root.querySelectorAll("[data-tab]").forEach((btn) =>
      btn.addEventListener("click", () => this.showTab(btn.dataset.tab)));
    // The ARIA tabs pattern: arrows, Home and End move between the tabs and show theirs.
    this.q(".image-tabs").addEventListener("keydown", (e) => {
      const tabs = [...this.root.querySelectorAll("[data-tab]")];
      const at = tabs.indexOf(e.target.closest("[data-tab]"));
      if (at < 0) return;
      const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      const tab = tabs[(to + tabs.length) % tabs.length];
      tab.focus();
      this.showTab(tab.dataset.tab);
    });
    this.root.querySelectorAll("[data-defect]").forEach((btn) =>
      btn.addEventListener("click", () => this.stepRegion(btn.dataset.defect === "next" ? 1 : -1)));
    this.minimap.addEventListener("pointerdown", (e) => {
      // Centre the view on the clicked point of the whole image.
      e.stopPropagation();
      const box = this.minimap.getBoundingClientRect();
      const x = ((e.clientX - box.left) / box.width) * this.stageW;
      const y = ((e.clientY - box.top) / box.height) * this.stageH;
      this.zoom.tx = this.viewport.clientWidth / 2 - x * this.zoom.scale;
      this.zoom.ty = this.viewport.clientHeight / 2 - y * this.zoom.scale;
      this.applyTransform();
    });
    this.root.querySelectorAll("[data-zoom]").forEach((btn) =>
      btn.addEventListener("click", () => {
        const how = btn.dataset.zoom;
        if (how === "fit") this.fit();
        else this.zoomAt(how === "in" ? 1.5 : 1 / 1.5);
      }));
    this.q("[data-toggle-boxes]").addEventListener("change", (e) => {
      this.svg.classList.toggle("d-none", !e.target.checked);
      this.pinLayer.classList.toggle("d-none", !e.target.checked);
    });
    this.root.querySelectorAll("[data-class-toggle]").forEach((input) =>
      input.addEventListener("change", () => {
        const name = input.dataset.classToggle;
        if (input.checked) this.hidden.delete(name);
        else this.hidden.add(name);
        input.closest("label").classList.toggle("active", input.checked);
        for (const rect of this.boxes.values()) {
          rect.classList.toggle("d-none", this.hidden.has(rect.dataset.class));
        }
        for (const pin of this.pins.values()) {
          pin.classList.toggle("hidden-class", this.hidden.has(pin.dataset.class));
        }
        this.placeBoxes();
        this.renderTable();
      }));
    this.root.querySelectorAll(".regions-table th[data-sort]").forEach((th) => {
      const sortBy = () => {
        const column = th.dataset.sort;
        this.sort = { column, dir: this.sort.column === column ? -this.sort.dir : 1 };
        this.renderTable();
      };
      th.querySelector(".sort-btn").addEventListener("click", sortBy);
    });
    const tbody = this.q(".regions-table tbody");
    tbody.addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-key]");
      if (tr) this.select(tr.dataset.key, { center: true });
    });
    tbody.addEventListener("keydown", (e) => {
      const tr = e.target.closest("tr[data-key]");
      if (tr && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); this.select(tr.dataset.key, { center: true }); }
    });
    tbody.addEventListener("mouseover", (e) => {
      const tr = e.target.closest("tr[data-key]");
      for (const rect of this.boxes.values()) rect.classList.toggle("hovered", !!tr && rect.dataset.key === tr.dataset.key);
    });
    tbody.addEventListener("mouseleave", () => {
      for (const rect of this.boxes.values()) rect.classList.remove("hovered");
    });
    this.bindBoxes();
    this.bindPanZoom();
    this.q(".delete-btn").addEventListener("click", () => this.confirmDelete());
    this.onResize = () => { if (this.autoFit) this.fit(); };
    window.addEventListener("resize", this.onResize);
  }

  /** Stops listening to the window (the review mode replaces the view by the next board's). */
  destroy() {
    window.removeEventListener("resize", this.onResize);
    this.img.onload = null;
    this.img.onerror = null;
  }

  bindBoxes() {
    this.svg.addEventListener("mouseover", (e) => {
      const rect = e.target.closest(".region-box");
      if (!rect) return;
      const row = this.rows.find((r) => r.key === rect.dataset.key);
      this.tooltip.innerHTML = tooltipHtml(row);
      this.tooltip.hidden = false;
      this.root.querySelectorAll(".region-row.hovered").forEach((tr) => tr.classList.remove("hovered"));
      this.root.querySelector(`.region-row[data-key="${CSS.escape(rect.dataset.key)}"]`)?.classList.add("hovered");
    });
    this.svg.addEventListener("mousemove", (e) => {
      if (this.tooltip.hidden) return;
      const box = this.viewport.getBoundingClientRect();
      const tw = this.tooltip.offsetWidth;
      const th = this.tooltip.offsetHeight;
      let x = e.clientX - box.left + 14;
      let y = e.clientY - box.top + 14;
      if (x + tw > box.width) x = Math.max(0, e.clientX - box.left - tw - 14);
      if (y + th > box.height) y = Math.max(0, e.clientY - box.top - th - 14);
      this.tooltip.style.transform = `translate(${x}px, ${y}px)`;
    });
    this.svg.addEventListener("mouseout", (e) => {
      if (e.target.closest(".region-box") && !e.relatedTarget?.closest?.(".region-box")) {
        this.tooltip.hidden = true;
        this.root.querySelectorAll(".region-row.hovered").forEach((tr) => tr.classList.remove("hovered"));
      }
    });
  }

  bindPanZoom() {
    const vp = this.viewport;
    vp.addEventListener("wheel", (e) => {
      e.preventDefault();
      const box = vp.getBoundingClientRect();
      this.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - box.left, e.clientY - box.top);
    }, { passive: false });
    let drag = null;
    vp.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, tx: this.zoom.tx, ty: this.zoom.ty, moved: false, target: e.target };
    });
    vp.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) {
        drag.moved = true;
        vp.setPointerCapture(e.pointerId);
        vp.classList.add("panning");
        this.tooltip.hidden = true;
      }
      this.zoom.tx = drag.tx + dx;
      this.zoom.ty = drag.ty + dy;
      this.autoFit = false;
      this.applyTransform();
    });
    const end = (e) => {
      if (!drag) return;
      if (!drag.moved) {
        const rect = drag.target.closest?.(".region-box, .region-pin");
        if (rect) this.select(rect.dataset.key, { scrollRow: true });
      }
      if (vp.hasPointerCapture(e.pointerId)) vp.releasePointerCapture(e.pointerId);
      vp.classList.remove("panning");
      drag = null;
    };
    vp.addEventListener("pointerup", end);
    vp.addEventListener("pointercancel", end);
    vp.addEventListener("keydown", (e) => {
      const step = 40;
      const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
      if (moves[e.key]) {
        e.preventDefault();
        this.zoom.tx += moves[e.key][0];
        this.zoom.ty += moves[e.key][1];
        this.applyTransform();
      }
    });
  }

  showTab(kind) {
    this.tab = kind;
    this.root.querySelectorAll("[data-tab]").forEach((btn) => {
      const active = btn.dataset.tab === kind;
      btn.classList.toggle("active", active);
      btn.setAttribute("aria-selected", String(active));
      btn.tabIndex = active ? 0 : -1;
      if (active) this.viewport.setAttribute("aria-labelledby", btn.id);
    });
    const loading = this.q(".stage-loading");
    loading.hidden = false;
    loading.textContent = "loading image…";
    this.img.onload = () => {
      loading.hidden = true;
      const w = this.img.naturalWidth;
      const h = this.img.naturalHeight;
      // A defect chosen before the first image arrived keeps its zoom (same pixel grid).
      const resized = this.stageW !== undefined && (w !== this.stageW || h !== this.stageH);
      this.stageW = w;
      this.stageH = h;
      this.stage.style.width = `${w}px`;
      this.stage.style.height = `${h}px`;
      this.minimap.querySelector("img").src = this.img.currentSrc || this.img.src;
      if (resized || this.autoFit !== false) this.fit();
      else this.applyTransform();
    };
    this.img.onerror = async () => {
      // An <img> cannot read the error body: fetch the same URL to show the API's message.
      try {
        const response = await fetch(src, { headers: { Accept: "application/json" } });
        loading.textContent = response.ok
          ? `The browser cannot show the ${kind} image (${response.headers.get("content-type") || "unknown type"}); use its download.`
          : `The ${kind} image could not be loaded: ${messageFromBody(response.status, await response.text()).message}`;
      } catch {
        loading.textContent = `The ${kind} image could not be loaded: the agent cannot be reached.`;
      }
    };
    this.img.alt = `${this.id} ${kind} image`;
    // The input may be a TIFF or BMP, which browsers do not show: ask for a PNG rendition
    // (JPEG and PNG inputs are answered as they are).
    const src = `${downloadUrl(this.id, kind)}?inline=true${kind === "input" ? "&format=png" : ""}`;
    this.img.src = src;
  }

  fit() {
    const vw = this.viewport.clientWidth;
    const vh = this.viewport.clientHeight;
    const w = this.stageW || this.width;
    const h = this.stageH || this.height;
    const scale = Math.min(vw / w, vh / h);
    if (!(scale > 0) || !Number.isFinite(scale)) return; // not laid out (yet)
    this.zoom = { scale, fit: scale, tx: (vw - w * scale) / 2, ty: (vh - h * scale) / 2 };
    this.autoFit = true;
    this.applyTransform();
  }

  zoomAt(factor, cx = null, cy = null) {
    const vw = this.viewport.clientWidth;
    const vh = this.viewport.clientHeight;
    const x = cx ?? vw / 2;
    const y = cy ?? vh / 2;
    const { scale, tx, ty, fit } = this.zoom;
    const next = Math.min(Math.max(scale * factor, fit * 0.5), fit * MAX_ZOOM);
    this.zoom.tx = x - ((x - tx) * next) / scale;
    this.zoom.ty = y - ((y - ty) * next) / scale;
    this.zoom.scale = next;
    this.autoFit = false;
    this.applyTransform();
  }

  applyTransform() {
    const { scale, tx, ty, fit } = this.zoom;
    if (!(scale > 0) || !Number.isFinite(scale)) return; // no image size known yet
    this.stage.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
    this.stage.classList.toggle("pixelated", scale >= 3);
    this.q(".zoom-level").textContent = fit > 0 ? `${Math.round((scale / fit) * 100)}%` : "–";
    this.placeBoxes();
    this.placePins();
    this.drawMinimap();
  }

  /** Makes region `key` the current defect (through the selection, which repaints). */
  select(key, how = {}) {
    return this.selection.selectKey(key, how);
  }

  /** Paints the selection's current defect in the image, the pins, the table and the
   * toolbar; `how.center` zooms to it (and scrolls the image into view unless `how.scroll` is
   * false), `how.scrollRow` brings its table row into view. */
  showSelection({ index, region: row, how: { center = false, scrollRow = false, scroll = true } = {} }) {
    const key = row.key;
    for (const rect of this.boxes.values()) rect.classList.toggle("selected", rect.dataset.key === key);
    for (const pin of this.pins.values()) pin.classList.toggle("selected", pin.dataset.key === key);
    this.q(".defect-position").textContent = `${index + 1} / ${this.rows.length}`;
    const rect = this.boxes.get(key);
    if (rect) this.svg.insertBefore(rect, this.ring); // on top of its neighbours, under its ring
    this.root.querySelectorAll(".region-row").forEach((tr) => {
      const on = tr.dataset.key === key;
      tr.classList.toggle("table-primary", on);
      tr.classList.toggle("selected", on);
      if (on && scrollRow) this.scrollRowIntoBox(tr);
    });
    if (this.hidden.has(row.class_name)) {
      this.root.querySelector(`[data-class-toggle="${CSS.escape(row.class_name)}"]`)?.click();
    }
    if (!center) this.placeBoxes();
    if (center) {
      const b = row.bounding_box;
      const vw = this.viewport.clientWidth;
      const vh = this.viewport.clientHeight;
      const { fit } = this.zoom;
      // Zoom in until the region is at least ~60 screen pixels (a 9 px defect on a 3900 px board
      // needs far more than the fitted size), up to the zoom limit.
      const wanted = Math.min(Math.max(this.zoom.scale, 60 / Math.max(b.width, b.height, 1)), fit * MAX_ZOOM);
      this.zoom.scale = Math.max(wanted, this.zoom.scale);
      this.zoom.tx = vw / 2 - (b.x + b.width / 2) * this.zoom.scale;
      this.zoom.ty = vh / 2 - (b.y + b.height / 2) * this.zoom.scale;
      this.autoFit = false;
      this.applyTransform();
      // Not after a verdict (`scroll` false): a tap on the phone's verdict bar must not
      // scroll the page back to the image.
      if (scroll) this.viewport.scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
    this.root.dispatchEvent(new CustomEvent("aoi:region-selected", {
      bubbles: true, detail: { index, region: row },
    }));
  }

  /** Scrolls the Regions table's own box (not the page: the image stays where it is) so
   * that row `tr` is in sight below the sticky header. */
  scrollRowIntoBox(tr) {
    const box = this.q(".regions-scroll");
    const head = box.querySelector("thead")?.offsetHeight || 0;
    const top = tr.offsetTop;
    if (top - head < box.scrollTop) box.scrollTop = top - head;
    else if (top + tr.offsetHeight > box.scrollTop + box.clientHeight) {
      box.scrollTop = top + tr.offsetHeight - box.clientHeight;
    }
  }

  confirmDelete() {
    const modalEl = document.createElement("div");
    modalEl.className = "modal fade";
    modalEl.tabIndex = -1;
    modalEl.setAttribute("aria-labelledby", `delete-title-${this.id}`);
    modalEl.innerHTML = `<div class="modal-dialog"><div class="modal-content">
      <div class="modal-header"><h2 class="modal-title h5" id="delete-title-${escapeHtml(this.id)}">Delete inspection?</h2>
        <button type="button" class="btn-close" data-bs-dismiss="modal" aria-label="Close"></button></div>
      <div class="modal-body">Inspection <code>${escapeHtml(this.id)}</code>, its input, result images,
        analysis and regions will be deleted. This cannot be undone.<div class="modal-error mt-2"></div></div>
      <div class="modal-footer">
        <button type="button" class="btn btn-secondary" data-bs-dismiss="modal">Cancel</button>
        <button type="button" class="btn btn-danger confirm-delete">Delete</button>
      </div></div></div>`;
    document.body.appendChild(modalEl);
    const modal = new window.bootstrap.Modal(modalEl);
    const opener = this.q(".delete-btn");
    modalEl.addEventListener("hidden.bs.modal", () => {
      modalEl.remove();
      // Bootstrap gives the focus back only to a data-bs-toggle opener: back to Delete…, or
      // after a delete to the note that says so, never lost on <body>.
      const back = opener?.isConnected ? opener : this.root.querySelector(".alert");
      if (back && back !== opener) back.tabIndex = -1;
      back?.focus();
    });
    modalEl.querySelector(".confirm-delete").addEventListener("click", async (e) => {
      e.target.disabled = true;
      try {
        await api(`/api/images/${encodeURIComponent(this.id)}`, { method: "DELETE" });
        modal.hide();
        this.root.innerHTML = "";
        showAlert(`Inspection ${this.id} was deleted.`, "success", this.root);
        if (this.options.onDeleted) this.options.onDeleted(this.id);
      } catch (err) {
        e.target.disabled = false;
        modalEl.querySelector(".modal-error").innerHTML =
          `<div class="alert alert-danger mb-0">${escapeHtml(errorText(err))}</div>`;
      }
    });
    modal.show();
  }
}

// -- the page-wide handle of the viewer ---------------------------------------------------

/** `window.aoiViewer`: the viewer shown now, for keys and for the review mode.
 * `regions`: the defects in the model's order (class id, then region id), each with `key`,
 * `class_name`, `region_id`, `region_unique_id`, `bounding_box`…; `selection`: the one
 * current defect (a `RegionSelection`, region_state.js); `selectRegion(i)` zooms to
 * and highlights defect i (0-based; wraps); `nextRegion()`, `prevRegion()`; `selectedIndex()`
 * (-1 when none). Every selection dispatches `aoi:region-selected` ({index, region}) on
 * the viewer's root, bubbling. */
function exposeViewer(view) {
  window.aoiViewer = {
    view,
    imgUniqueId: view.id,
    regions: view.rows,
    selection: view.selection,
    selectRegion: (i) => view.selectRegion(i),
    nextRegion: () => view.stepRegion(1),
    prevRegion: () => view.stepRegion(-1),
    selectedIndex: () => view.selectedIndex(),
  };
}

function typingIn(target) {
  return target instanceof Element
    && (target.closest("input, textarea, select, [contenteditable='true']") !== null);
}

document.addEventListener("keydown", (e) => {
  const viewer = window.aoiViewer;
  if (!viewer || e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || typingIn(e.target)) return;
  if (!document.contains(viewer.view.root) || !viewer.view.root.querySelector(".result-view")) return;
  const view = viewer.view;
  if (PREV_DEFECT_KEYS.has(e.key)) viewer.prevRegion();
  else if (NEXT_DEFECT_KEYS.has(e.key)) viewer.nextRegion();
  else if (e.key === "+" || e.key === "=") view.zoomAt(1.5);
  else if (e.key === "-") view.zoomAt(1 / 1.5);
  else if (e.key === "0") view.fit();
  else if (e.key.toLowerCase() === "h") view.toggleMarkers();
  else return;
  e.preventDefault();
});
