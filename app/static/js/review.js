// Review mode of the result viewer: a verdict per defect (real, false call, unsure), a
// disposition per board (pass, repair, scrap), the next board of the review queue, undo,
// and the progress of the batch or filter — keyboard first, every key also a button.
//
// It drives the viewer only through what `renderResult` returns (its `rows`, `boxes` and
// `select()`), and lives in a panel above it, so the viewer itself needs no change.
import { api, errorText, escapeHtml } from "./common.js";

const VERDICT_KEYS = { r: "real", f: "false_call", u: "unsure" };
const DISPOSITION_KEYS = { p: "pass", 1: "pass", e: "repair", 2: "repair", s: "scrap", 3: "scrap" };
const LABELS = {
  real: "Real", false_call: "False call", unsure: "Unsure",
  pass: "Pass", repair: "Repair", scrap: "Scrap",
};
// Bootstrap colours whose outline buttons keep a 4.5:1 contrast on white (not "warning").
const VERDICT_STYLE = { real: "danger", false_call: "success", unsure: "secondary" };
const DISPOSITION_STYLE = { pass: "success", repair: "primary", scrap: "danger" };
const FILTERS = ["batch_id", "class_name", "start_date", "end_date", "model_version"];
const NAME_KEY = "aoi.reviewer";
const NAME_PATTERN = /^[^\u0000-\u001f\u007f]{1,64}$/;

/** The reviewer: the signed-in key's name when the agent requires keys (the server takes
 * it from the session anyway), else the name this browser was given once. */
function reviewerName() {
  if (document.body.dataset.auth === "required") {
    const shown = document.getElementById("signed-in-as")?.textContent || "";
    return shown.replace(/^key:\s*/, "") || "signed-in key";
  }
  return localStorage.getItem(NAME_KEY) || "";
}

function headers(json = true) {
  const out = { Accept: "application/json" };
  if (json) out["Content-Type"] = "application/json";
  if (document.body.dataset.auth !== "required") {
    out["X-Reviewer"] = encodeURIComponent(localStorage.getItem(NAME_KEY) || "");
  }
  return out;
}

function typingIn(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

/** The queue filters of this page (from its URL), or the board's batch, or its day. */
function queueFilters(detail) {
  const params = new URLSearchParams(location.search);
  const filters = {};
  for (const key of FILTERS) if (params.get(key)) filters[key] = params.get(key);
  if (!Object.keys(filters).length) {
    if (detail.batch_id) filters.batch_id = detail.batch_id;
    else filters.start_date = filters.end_date = String(detail.timestamp).slice(0, 10);
  }
  return filters;
}

function filterText(filters) {
  if (filters.batch_id) return `batch ${filters.batch_id}`;
  const parts = [];
  if (filters.class_name) parts.push(`class ${filters.class_name}`);
  if (filters.start_date || filters.end_date) {
    parts.push(filters.start_date === filters.end_date
      ? filters.start_date : `${filters.start_date || "…"} to ${filters.end_date || "…"}`);
  }
  return parts.join(", ") || "all images";
}

/** The viewer of image `id` in review mode, keeping the queue's filters. */
export function reviewUrl(id, filters) {
  const query = new URLSearchParams({ review: "1", ...filters });
  return `/results/${encodeURIComponent(id)}?${query}`;
}

/** Adds the review panel above the viewer in `root` (a `ResultView`); review mode starts
 * at once when the page's URL has `review=1`, else with the panel's button or `V`. */
export function attachReview(root, view) {
  const review = new ReviewMode(root, view);
  review.mount();
  return review;
}

class ReviewMode {
  constructor(root, view) {
    this.root = root;
    this.view = view;
    this.id = view.id;
    this.filters = queueFilters(view.detail);
    this.defects = [...view.rows].sort((a, b) =>
      a.class_name.localeCompare(b.class_name) || a.region_id - b.region_id);
    this.verdicts = new Map(this.defects.map((r) => [r.region_unique_id, r.review?.verdict || null]));
    this.comments = new Map(this.defects.map((r) => [r.region_unique_id, r.review?.comment || null]));
    this.disposition = view.detail.disposition?.disposition || null;
    this.dispositionComment = view.detail.disposition?.comment || null;
    this.index = 0;
    this.undo = [];
    this.active = false;
    this.busy = Promise.resolve();
    this.onKey = (e) => this.key(e);
  }

  mount() {
    this.panel = document.createElement("section");
    this.panel.className = "review-panel card mb-3";
    this.panel.setAttribute("aria-label", "Review");
    this.panel.tabIndex = -1;
    this.root.before(this.panel);
    if (new URLSearchParams(location.search).get("review") === "1") this.start();
    else this.renderIdle();
  }

  renderIdle() {
    this.panel.innerHTML = `<div class="card-body py-2 d-flex flex-wrap align-items-center gap-2">
      <span class="small text-muted">${this.defects.length} defect${this.defects.length === 1 ? "" : "s"} to review on this board.</span>
      <button type="button" class="btn btn-sm btn-primary review-start">Review this board (V)</button></div>`;
    this.panel.querySelector(".review-start").addEventListener("click", () => this.start());
    this.idleKey = (e) => {
      if (e.key.toLowerCase() === "v" && !typingIn(e.target) && !e.ctrlKey && !e.metaKey && !e.altKey) {
        e.preventDefault();
        this.start();
      }
    };
    window.addEventListener("keydown", this.idleKey);
  }

  start() {
    if (this.idleKey) window.removeEventListener("keydown", this.idleKey);
    this.active = true;
    const params = new URLSearchParams(location.search);
    if (params.get("review") !== "1") {
      params.set("review", "1");
      history.replaceState(null, "", `${location.pathname}?${params}`);
    }
    const first = this.defects.findIndex((r) => !this.verdicts.get(r.region_unique_id));
    this.index = first < 0 ? 0 : first;
    this.render();
    window.addEventListener("keydown", this.onKey, true);
    if (!reviewerName()) {
      this.askName();
    } else {
      this.panel.focus({ preventScroll: true });
      this.focusDefect();
    }
    this.refreshProgress();
  }

  render() {
    const who = reviewerName();
    const canRename = document.body.dataset.auth !== "required";
    this.panel.innerHTML = `<div class="card-body py-2">
      <div class="d-flex flex-wrap align-items-center gap-2 mb-2">
        <h2 class="h6 mb-0">Review</h2>
        <span class="small text-muted">reviewer: <strong class="reviewer-name">${escapeHtml(who || "not named")}</strong></span>
        ${canRename ? '<button type="button" class="btn btn-link btn-sm p-0 review-rename">change name</button>' : ""}
        <span class="small ms-auto review-progress" aria-live="polite"></span>
      </div>
      <form class="review-name-form d-flex flex-wrap align-items-center gap-2 mb-2" hidden>
        <label class="small" for="review-name-input">Your name for the review record</label>
        <input class="form-control form-control-sm w-auto" id="review-name-input" maxlength="64" required autocomplete="name">
        <button type="submit" class="btn btn-sm btn-primary">Save</button>
      </form>
      <div class="d-flex flex-wrap align-items-center gap-2 mb-2">
        <span class="review-current small" aria-live="polite"></span>
        <span class="small text-muted board-progress"></span>
      </div>
      <div class="d-flex flex-wrap gap-2 mb-2 review-actions">
        <div class="btn-group btn-group-sm" role="group" aria-label="Defect">
          <button type="button" class="btn btn-outline-secondary" data-move="-1" aria-keyshortcuts="K">◀ Previous <kbd>K</kbd></button>
          <button type="button" class="btn btn-outline-secondary" data-move="1" aria-keyshortcuts="J">Next <kbd>J</kbd> ▶</button>
        </div>
        <div class="btn-group btn-group-sm" role="group" aria-label="Verdict">
          ${Object.entries(VERDICT_KEYS).map(([k, v]) => `<button type="button" class="btn btn-outline-${VERDICT_STYLE[v]}"
            data-verdict="${v}" aria-pressed="false" aria-keyshortcuts="${k.toUpperCase()}">${LABELS[v]} <kbd>${k.toUpperCase()}</kbd></button>`).join("")}
        </div>
        <div class="btn-group btn-group-sm" role="group" aria-label="Disposition of the board">
          ${[["pass", "P"], ["repair", "E"], ["scrap", "S"]].map(([d, k], i) => `<button type="button"
            class="btn btn-outline-${DISPOSITION_STYLE[d]}" data-disposition="${d}" aria-pressed="false"
            aria-keyshortcuts="${k} ${i + 1}">${LABELS[d]} <kbd>${k}</kbd></button>`).join("")}
        </div>
        <div class="btn-group btn-group-sm" role="group" aria-label="Review">
          <button type="button" class="btn btn-outline-secondary review-undo" aria-keyshortcuts="Z Control+Z">Undo <kbd>Z</kbd></button>
          <button type="button" class="btn btn-primary review-next-image" aria-keyshortcuts="N">Next board <kbd>N</kbd></button>
        </div>
        <div class="input-group input-group-sm review-comment-group">
          <label class="input-group-text" for="review-comment">Comment <kbd class="ms-1">C</kbd></label>
          <input class="form-control" id="review-comment" maxlength="1000" placeholder="optional, sent with the next verdict">
        </div>
      </div>
      <ol class="review-defects list-unstyled d-flex flex-wrap gap-1 mb-1" aria-label="Defects of this board"></ol>
      <div class="small text-muted">Keys: <kbd>J</kbd>/<kbd>K</kbd> next/previous defect ·
        <kbd>R</kbd> real · <kbd>F</kbd> false call · <kbd>U</kbd> unsure ·
        <kbd>P</kbd>/<kbd>1</kbd> pass · <kbd>E</kbd>/<kbd>2</kbd> repair · <kbd>S</kbd>/<kbd>3</kbd> scrap ·
        <kbd>Z</kbd> or <kbd>Ctrl</kbd>+<kbd>Z</kbd> undo · <kbd>N</kbd> next board · <kbd>C</kbd> comment</div>
      <div class="review-status small mt-1" role="status" aria-live="polite"></div>
    </div>`;
    const q = (sel) => this.panel.querySelector(sel);
    this.panel.querySelectorAll("[data-move]").forEach((b) =>
      b.addEventListener("click", () => this.move(Number(b.dataset.move))));
    this.panel.querySelectorAll("[data-verdict]").forEach((b) =>
      b.addEventListener("click", () => this.queue(() => this.setVerdict(b.dataset.verdict))));
    this.panel.querySelectorAll("[data-disposition]").forEach((b) =>
      b.addEventListener("click", () => this.queue(() => this.setDisposition(b.dataset.disposition))));
    q(".review-undo").addEventListener("click", () => this.queue(() => this.undoLast()));
    q(".review-next-image").addEventListener("click", () => this.queue(() => this.nextImage()));
    q(".review-rename")?.addEventListener("click", () => this.askName());
    q(".review-name-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const name = q("#review-name-input").value.trim();
      if (!NAME_PATTERN.test(name)) return;
      localStorage.setItem(NAME_KEY, name);
      q(".review-name-form").hidden = true;
      q(".reviewer-name").textContent = name;
      this.panel.focus({ preventScroll: true });
      this.focusDefect();
    });
    q("#review-comment").addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === "Escape") {
        e.preventDefault();
        this.panel.focus({ preventScroll: true });
      }
    });
    q(".review-defects").addEventListener("click", (e) => {
      const chip = e.target.closest("[data-index]");
      if (chip) { this.index = Number(chip.dataset.index); this.focusDefect(); }
    });
    this.paint();
  }

  askName() {
    const form = this.panel.querySelector(".review-name-form");
    form.hidden = false;
    const input = form.querySelector("input");
    input.value = localStorage.getItem(NAME_KEY) || "";
    input.focus();
  }

  /** Runs review actions one after the other (a fast typist must not race the API). */
  queue(action) {
    this.busy = this.busy.then(action).catch((err) => this.status(errorText(err), true));
    return this.busy;
  }

  status(message, error = false) {
    const box = this.panel.querySelector(".review-status");
    box.textContent = message;
    box.classList.toggle("text-danger", error);
  }

  current() {
    return this.defects[this.index] || null;
  }

  /** Repaints the panel's state and the boxes' verdict colours. */
  paint() {
    const r = this.current();
    const q = (sel) => this.panel.querySelector(sel);
    const reviewed = this.defects.filter((d) => this.verdicts.get(d.region_unique_id)).length;
    q(".board-progress").textContent = `this board: ${reviewed} of ${this.defects.length} defects reviewed` +
      (this.disposition ? ` · disposition: ${LABELS[this.disposition]}` : "");
    const verdict = r ? this.verdicts.get(r.region_unique_id) : null;
    q(".review-current").innerHTML = r
      ? `Defect <strong>${this.index + 1}</strong> of ${this.defects.length}: ${escapeHtml(r.class_name)} #${r.region_id}
         — <span class="review-verdict">${verdict ? escapeHtml(LABELS[verdict]) : "no verdict yet"}</span>`
      : "No defect on this board: give its disposition (P, E, S) or go to the next board (N).";
    this.panel.querySelectorAll("[data-verdict]").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.verdict === verdict));
      b.classList.toggle("active", b.dataset.verdict === verdict);
      b.disabled = !r;
    });
    this.panel.querySelectorAll("[data-disposition]").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.disposition === this.disposition));
      b.classList.toggle("active", b.dataset.disposition === this.disposition);
    });
    q(".review-defects").innerHTML = this.defects.map((d, i) => {
      const v = this.verdicts.get(d.region_unique_id);
      const style = v ? `text-bg-${VERDICT_STYLE[v]}` : "text-bg-light border";
      // The accessible name starts with the visible number (WCAG 2.5.3, label in name).
      const label = `${i + 1}: ${d.class_name} #${d.region_id}, ${v ? LABELS[v] : "no verdict"}`;
      return `<li><button type="button" class="badge ${style} review-chip${i === this.index ? " current" : ""}"
        data-index="${i}" data-verdict="${v || ""}" aria-current="${i === this.index}" title="${escapeHtml(label)}"
        aria-label="${escapeHtml(label)}">${i + 1}</button></li>`;
    }).join("");
    for (const d of this.defects) {
      const rect = this.view.boxes?.get(d.key);
      if (!rect) continue;
      const v = this.verdicts.get(d.region_unique_id);
      rect.classList.toggle("verdict-real", v === "real");
      rect.classList.toggle("verdict-false_call", v === "false_call");
      rect.classList.toggle("verdict-unsure", v === "unsure");
      rect.classList.toggle("review-current-box", d === r);
    }
  }

  /** Zooms to the current defect and highlights it in the image and the table. */
  focusDefect() {
    const r = this.current();
    if (r) this.view.select(r.key, { center: true, scrollRow: false });
    this.paint();
  }

  move(step) {
    if (!this.defects.length) return;
    this.index = (this.index + step + this.defects.length) % this.defects.length;
    this.focusDefect();
  }

  key(e) {
    if (!this.active || typingIn(e.target)) return;
    const k = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && k === "z") {
      e.preventDefault();
      e.stopPropagation();
      this.queue(() => this.undoLast());
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    let handled = true;
    if (k === "j") this.move(1);
    else if (k === "k") this.move(-1);
    else if (VERDICT_KEYS[k]) this.queue(() => this.setVerdict(VERDICT_KEYS[k]));
    else if (DISPOSITION_KEYS[k]) this.queue(() => this.setDisposition(DISPOSITION_KEYS[k]));
    else if (k === "z") this.queue(() => this.undoLast());
    else if (k === "n") this.queue(() => this.nextImage());
    else if (k === "c") this.panel.querySelector("#review-comment").focus();
    else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
    }
  }

  takeComment() {
    const input = this.panel.querySelector("#review-comment");
    const text = input.value.trim();
    input.value = "";
    return text || null;
  }

  async putVerdict(region, verdict, comment) {
    const answer = await api(`/api/regions/${region.region_unique_id}/verdict`, {
      method: "PUT", headers: headers(), body: JSON.stringify({ verdict, comment }),
    });
    this.verdicts.set(region.region_unique_id, answer.review?.verdict || null);
    this.comments.set(region.region_unique_id, answer.review?.comment || null);
    return answer;
  }

  async setVerdict(verdict) {
    const r = this.current();
    if (!r) return;
    if (!reviewerName()) { this.askName(); return; }
    const before = { verdict: this.verdicts.get(r.region_unique_id), comment: this.comments.get(r.region_unique_id) };
    await this.putVerdict(r, verdict, this.takeComment());
    this.undo.push({ kind: "verdict", index: this.index, ...before });
    this.status(`${r.class_name} #${r.region_id}: ${LABELS[verdict]}.`);
    // On to the next defect without a verdict (or stay on the last one).
    const n = this.defects.length;
    for (let step = 1; step <= n; step += 1) {
      const i = (this.index + step) % n;
      if (!this.verdicts.get(this.defects[i].region_unique_id)) { this.index = i; break; }
    }
    if (this.defects.every((d) => this.verdicts.get(d.region_unique_id))) {
      this.status("Every defect of this board has a verdict: give its disposition (P pass, E repair, S scrap), then N for the next board.");
    }
    this.focusDefect();
    this.refreshProgress();
  }

  async putDisposition(disposition, comment) {
    const answer = await api(`/api/images/${encodeURIComponent(this.id)}/disposition`, {
      method: "PUT", headers: headers(), body: JSON.stringify({ disposition, comment }),
    });
    this.disposition = answer.review?.disposition || null;
    this.dispositionComment = answer.review?.comment || null;
  }

  async setDisposition(disposition) {
    if (!reviewerName()) { this.askName(); return; }
    const before = { disposition: this.disposition, comment: this.dispositionComment };
    await this.putDisposition(disposition, this.takeComment());
    this.undo.push({ kind: "disposition", ...before });
    this.status(`Board: ${LABELS[disposition]}. N for the next board.`);
    this.paint();
  }

  async undoLast() {
    const last = this.undo.pop();
    if (!last) { this.status("Nothing to undo."); return; }
    if (last.kind === "verdict") {
      this.index = last.index;
      const r = this.current();
      await this.putVerdict(r, last.verdict || null, last.comment || null);
      this.status(`Undone: ${r.class_name} #${r.region_id} is ${last.verdict ? LABELS[last.verdict] : "without verdict"} again.`);
      this.focusDefect();
      this.refreshProgress();
    } else {
      await this.putDisposition(last.disposition || null, last.comment || null);
      this.status(`Undone: the board is ${last.disposition ? LABELS[last.disposition] : "without disposition"} again.`);
      this.paint();
    }
  }

  nextQuery() {
    return new URLSearchParams({ ...this.filters, after: this.id });
  }

  async refreshProgress() {
    // Answers may come back out of order: only the newest request's is shown.
    this.progressAsked = (this.progressAsked || 0) + 1;
    const asked = this.progressAsked;
    try {
      const next = await api(`/api/review/next?${this.nextQuery()}`);
      if (asked !== this.progressAsked) return;
      const p = next.progress;
      this.panel.querySelector(".review-progress").textContent =
        `${p.reviewed_images} of ${p.images} images reviewed (${filterText(this.filters)})`;
    } catch (err) {
      this.status(errorText(err), true);
    }
  }

  async nextImage() {
    const next = await api(`/api/review/next?${this.nextQuery()}`);
    if (!next.img_unique_id || next.img_unique_id === this.id) {
      const p = next.progress;
      this.status(next.img_unique_id
        ? "This is the last board with defects to review."
        : `Nothing left to review: ${p.reviewed_images} of ${p.images} images reviewed (${filterText(this.filters)}).`);
      return;
    }
    this.active = false;
    location.assign(reviewUrl(next.img_unique_id, this.filters));
  }
}
