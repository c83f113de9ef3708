// The golden board beside the call: for the viewer's current defect, the test crop and the
// golden board's crop of the same spot side by side at the same scale, a difference view
// |test − golden|, and `G` flicks the first frame between test and golden (how a person
// tells a real short from dust). Shown only when the board has a golden image
// (GET /api/images/{id}/golden; 404: none). The test crop is drawn from the input image the
// browser already has; the golden crop comes from /golden/crop, aligned by the agent.
import { api, downloadUrl, errorText, escapeHtml } from "./common.js";

// Image pixels around the defect's box, and the smallest crop side.
const MARGIN_PX = 24;
const MIN_SIDE_PX = 64;

/** The square crop (image pixels) around `box`, inside a `width` x `height` image. */
export function cropBox(box, width, height) {
  const side = Math.max(Math.max(box.width, box.height) + 2 * MARGIN_PX, MIN_SIDE_PX);
  const w = Math.min(side, width);
  const h = Math.min(side, height);
  const clamp = (v, hi) => Math.max(0, Math.min(Math.round(v), hi));
  return {
    x: clamp(box.x + box.width / 2 - w / 2, width - w),
    y: clamp(box.y + box.height / 2 - h / 2, height - h),
    width: w,
    height: h,
  };
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the input image could not be loaded"));
    img.src = src;
  });
}

function typingIn(target) {
  return target instanceof Element
    && target.closest("input, textarea, select, [contenteditable='true']") !== null;
}

/** Adds the compare panel to a result view (`view` of viewer.js) when its board has a golden
 * image; returns the panel's controller, or null (no golden image, or it failed: the
 * viewer works on without it). */
export async function attachGoldenCompare(view, { preloaded = undefined } = {}) {
  // `preloaded`: the golden answer (or a promise of it) fetched ahead by the review mode.
  const golden = await (preloaded === undefined ? goldenOf(view.id) : preloaded);
  if (!golden || !view.root.contains(view.viewport)) return null; // none, or the view is gone
  const compare = new GoldenCompare(view, golden);
  compare.mount();
  return compare;
}

/** The board's golden answer (GET /api/images/{id}/golden), or null when it has none (or
 * it could not be read: the viewer works on without it). */
export async function goldenOf(id) {
  try {
    return await api(`/api/images/${encodeURIComponent(id)}/golden`);
  } catch (err) {
    if (err.status !== 404 && err.status !== 409) console.warn(errorText(err));
    return null;
  }
}

/** The golden crop URL of `box` (image pixels of the inspected board `id`). */
export function goldenCropUrl(id, box) {
  const query = new URLSearchParams({ x: box.x, y: box.y, width: box.width, height: box.height });
  return `/api/images/${encodeURIComponent(id)}/golden/crop?${query}`;
}

class GoldenCompare {
  constructor(view, golden) {
    this.view = view;
    this.golden = golden;
    this.asked = 0;
    this.flicked = false;
    this.test = null;
    this.goldenData = null;
  }

  mount() {
    const g = this.golden;
    const offset = `${g.offset.dx.toFixed(1)}, ${g.offset.dy.toFixed(1)} px`;
    const score = g.score === null ? "" : ` · match ${g.score.toFixed(2)}`;
    this.panel = document.createElement("section");
    this.panel.className = "card mb-3 golden-compare";
    this.panel.setAttribute("aria-label", "Golden board comparison");
    this.panel.innerHTML = `<div class="card-header py-2 d-flex flex-wrap align-items-center gap-2">
        <span>Golden board</span>
        <a class="small golden-link" href="${escapeHtml(g.image_url)}" target="_blank" rel="noopener">${escapeHtml(g.golden_id)}</a>
        <span class="small text-muted ms-auto" title="golden pixel (x, y) lies at (x + dx, y + dy) here; ${g.registration === "model" ? "registered by the model service" : "registered by the agent"}">offset ${offset}${score}</span>
      </div>
      <div class="card-body p-2">
        <div class="golden-views">
          <figure class="golden-view mb-0"><canvas class="golden-flick" role="img" aria-label="Test crop"></canvas>
            <figcaption class="small text-center golden-flick-label">Test</figcaption></figure>
          <figure class="golden-view mb-0"><canvas class="golden-crop" role="img" aria-label="Golden crop"></canvas>
            <figcaption class="small text-center">Golden</figcaption></figure>
          <figure class="golden-view mb-0"><canvas class="golden-diff" role="img" aria-label="Difference of test and golden"></canvas>
            <figcaption class="small text-center">Difference</figcaption></figure>
        </div>
        <div class="d-flex flex-wrap align-items-center gap-2 mt-1">
          <button type="button" class="btn btn-sm btn-outline-secondary golden-flick-btn" aria-pressed="false" aria-keyshortcuts="G">Flicker <kbd>G</kbd></button>
          <span class="small text-muted golden-status" aria-live="polite">Select a defect to compare it with the golden board.</span>
        </div>
      </div>`;
    const column = this.view.root.querySelector(".result-view .col-lg-4") || this.view.root;
    column.prepend(this.panel);
    this.q = (sel) => this.panel.querySelector(sel);
    this.q(".golden-flick-btn").addEventListener("click", () => this.flick());
    this.view.selection.addEventListener("change", (e) => this.show(e.detail.region));
    document.addEventListener("keydown", (e) => {
      if (e.key.toLowerCase() !== "g" || e.ctrlKey || e.metaKey || e.altKey || typingIn(e.target)) return;
      if (document.querySelector("dialog[open], .modal.show")) return;
      if (!document.contains(this.panel)) return;
      e.preventDefault();
      this.flick();
    });
    const input = `${downloadUrl(this.view.id, "input")}?inline=true&format=png`;
    this.input = loadImage(input);
    // The draw times of the page (kept over the boards review mode opens in it).
    window.aoiGolden = { golden: this.golden, timings: window.aoiGolden?.timings ?? [], flicked: () => this.flicked };
    if (this.view.selection.current) this.show(this.view.selection.current);
  }

  status(text) {
    this.q(".golden-status").textContent = text;
  }

  /** Draws the current defect's test, golden and difference crops. */
  async show(region) {
    if (!region) return;
    const started = performance.now();
    const asked = ++this.asked;
    const box = cropBox(region.bounding_box, this.view.width, this.view.height);
    this.panel.dataset.state = "loading";
    try {
      const [response, input] = await Promise.all([
        fetch(goldenCropUrl(this.view.id, box)),
        this.input,
      ]);
      if (!response.ok) throw new Error(`the golden crop could not be loaded (HTTP ${response.status})`);
      const bitmap = await createImageBitmap(await response.blob());
      if (asked !== this.asked) return; // the reviewer has moved on
      this.test = this.pixels((ctx) => ctx.drawImage(input, box.x, box.y, box.width, box.height, 0, 0, box.width, box.height), box);
      this.goldenData = this.pixels((ctx) => ctx.drawImage(bitmap, 0, 0), box);
      this.paint();
      this.paintDiff(box);
      const ms = performance.now() - started;
      this.panel.dataset.state = "drawn";
      this.panel.dataset.regionKey = region.key;
      this.panel.dataset.drawnMs = ms.toFixed(1);
      window.aoiGolden.timings.push({ key: region.key, ms });
      this.status(`${region.class_name} #${region.region_id}: ${box.width}×${box.height} px around the box; G flicks.`);
    } catch (err) {
      if (asked !== this.asked) return;
      this.panel.dataset.state = "error";
      this.status(err.message || String(err));
    }
  }

  /** The ImageData of a `box`-sized drawing. */
  pixels(draw, box) {
    const canvas = document.createElement("canvas");
    canvas.width = box.width;
    canvas.height = box.height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    draw(ctx);
    return ctx.getImageData(0, 0, box.width, box.height);
  }

  put(selector, data) {
    const canvas = this.q(selector);
    canvas.width = data.width;
    canvas.height = data.height;
    canvas.getContext("2d").putImageData(data, 0, 0);
  }

  /** The first frame shows the test crop, or the golden one while flicked. */
  paint() {
    if (!this.test) return;
    this.put(".golden-flick", this.flicked ? this.goldenData : this.test);
    this.put(".golden-crop", this.goldenData);
    const label = this.flicked ? "Golden (flicked)" : "Test";
    this.q(".golden-flick-label").textContent = label;
    this.q(".golden-flick").setAttribute("aria-label", `${label} crop`);
    this.q(".golden-flick").dataset.showing = this.flicked ? "golden" : "test";
  }

  /** |test − golden| of the grey levels (BT.601 luma), white = no difference. */
  paintDiff(box) {
    const out = new ImageData(box.width, box.height);
    const a = this.test.data;
    const b = this.goldenData.data;
    for (let i = 0; i < a.length; i += 4) {
      const ga = 0.299 * a[i] + 0.587 * a[i + 1] + 0.114 * a[i + 2];
      const gb = 0.299 * b[i] + 0.587 * b[i + 1] + 0.114 * b[i + 2];
      const v = 255 - Math.abs(ga - gb);
      out.data[i] = 255;
      out.data[i + 1] = v;
      out.data[i + 2] = v;
      out.data[i + 3] = 255;
    }
    this.put(".golden-diff", out);
  }

  flick() {
    this.flicked = !this.flicked;
    const btn = this.q(".golden-flick-btn");
    btn.setAttribute("aria-pressed", String(this.flicked));
    btn.classList.toggle("active", this.flicked);
    this.paint();
  }
}
