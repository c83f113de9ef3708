// Review mode of the result viewer: a verdict per defect (real, false call, unsure), a
// disposition per board (pass, repair, scrap), the next board of the review queue, undo,
// and the progress of the batch or filter — keyboard first, every key also a button.
//
// The current defect is the viewer's one selection (region_state.js): `[`/`]`, J/K, a click
// on a box, a pin, a table row or a chip all move it, and a verdict key stores its verdict
// on exactly the defect the screen highlights at the moment the key is pressed. Defects are
// numbered in the model's order, as on the pins and the toolbar. With the queue's class
// filter, stepping keeps to the regions of that class.
//
// Verdicts and dispositions show at once and are saved in the background, in order
// (review_saves.js); the next board of the queue is fetched while this one is reviewed
// (`onNextKnown`) and `N` swaps it in without a page load (`onNextBoard`, result_page.js).
import { api, errorText, escapeHtml } from "./common.js";
import { saves } from "./review_saves.js";

const VERDICT_KEYS = { r: "real", f: "false_call", u: "unsure" };
const DISPOSITION_KEYS = { p: "pass", 1: "pass", e: "repair", 2: "repair", s: "scrap", 3: "scrap" };
const LABELS = {
  real: "Real", false_call: "False call", unsure: "Unsure",
  pass: "Pass", repair: "Repair", scrap: "Scrap",
};
// Bootstrap colours whose outline buttons keep a 4.5:1 contrast on white (not "warning").
const VERDICT_STYLE = { real: "danger", false_call: "success", unsure: "secondary" };
const DISPOSITION_STYLE = { pass: "success", repair: "primary", scrap: "danger" };
const FILTERS = ["batch_id", "class_name", "start_date", "end_date", "model_version", "disagreement"];
const NAME_KEY = "aoi.reviewer";
const NAME_PATTERN = /^[^\u0000-\u001f\u007f]{1,64}$/;
// The boards this page has shown in review mode: `N` never trusts a preloaded "next" that
// is one of them (its verdicts may still be on their way), it asks the agent again.
const visited = new Set();

/** The reviewer: the signed-in key's name when the agent requires keys (the server takes
 * it from the session anyway), else the name this browser was given once. */
function reviewerName() {
  if (document.body.dataset.auth === "required") {
    const shown = document.getElementById("signed-in-as")?.textContent || "";
    return shown.replace(/^key:\s*/, "") || "signed-in key";
  }
  return localStorage.getItem(NAME_KEY) || "";
}

export function headers(json = true) {
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
  if (filters.disagreement) parts.push(`disagreements with ${filters.disagreement}`);
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
 * at once when the page's URL has `review=1`, else with the panel's button or `V`.
 * `setup(review)`, if given, adapts the panel before it mounts (audit mode). */
export function attachReview(root, view, setup = null) {
  const review = new ReviewMode(root, view);
  setup?.(review);
  review.mount();
  return review;
}

// The key map shown by `?` (and its button): [keys, what they do].
const KEY_MAP = [
  ["J / K", "next / previous defect (of the chosen class, with a class filter)"],
  ["] / [  (or . / ,)", "next / previous defect, as in the viewer"],
  ["R", "verdict: real"], ["F", "verdict: false call"], ["U", "verdict: unsure"],
  ["P or 1", "board: pass"], ["E or 2", "board: repair"], ["S or 3", "board: scrap"],
  ["Z or Ctrl+Z", "undo the last verdict or disposition"],
  ["C", "write a comment (Enter keeps it for the next verdict, Escape drops it)"],
  ["N", "next board (asks once while defects have no verdict)"],
  ["+ / − / 0", "zoom in / zoom out / fit the image"],
  ["H", "hide or show every box and pin"],
  ["G", "flick between the test crop and the golden board's crop (when the board has one)"],
  ["?", "this key map (Escape closes it)"],
];

class ReviewMode {
  constructor(root, view) {
    this.root = root;
    this.view = view;
    this.id = view.id;
    this.filters = queueFilters(view.detail);
    // The viewer's own order and selection: one numbering, one current defect.
    this.selection = view.selection;
    this.defects = view.rows;
    this.verdicts = new Map(this.defects.map((r) => [r.region_unique_id, r.review?.verdict || null]));
    this.comments = new Map(this.defects.map((r) => [r.region_unique_id, r.review?.comment || null]));
    this.disposition = view.detail.disposition?.disposition || null;
    this.dispositionComment = view.detail.disposition?.comment || null;
    this.undo = [];
    this.active = false;
    this.askedToLeave = false;
    this.busy = Promise.resolve();
    this.onKey = (e) => this.key(e);
    // Set by the page: `onNextKnown(id)` when the queue's next board is known (to preload
    // it), `onNextBoard(id, filters, {fresh})` to open it without a page load (else a page
    // load; `fresh`: the agent has just named it).
    this.onNextKnown = null;
    this.onNextBoard = null;
    this.nextKnown = undefined;
    this.onSaves = () => this.showSaves();
    this.selection.addEventListener("change", () => {
      if (this.active) this.paint();
    });
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
    visited.add(this.id);
    performance.mark("review:board-start");
    // The review layout (app.css): the image and a one-line panel fill the window; on a
    // phone the panel is a verdict bar fixed at the bottom.
    document.body.classList.add("review-mode");
    const params = new URLSearchParams(location.search);
    if (params.get("review") !== "1") {
      params.set("review", "1");
      history.replaceState(null, "", `${location.pathname}?${params}`);
    }
    // The queue's class filter: step through that class's regions only (if the board has any).
    const scoped = this.selection.setScope(this.filters.class_name || null);
    if (!scoped) this.selection.setScope(null);
    this.render();
    if (this.filters.class_name && !scoped) {
      this.status(`No ${this.filters.class_name} region on this board: every defect is stepped through.`);
    }
    window.addEventListener("keydown", this.onKey, true);
    saves.addEventListener("change", this.onSaves);
    this.showSaves();
    this.onResize = () => this.layout();
    window.addEventListener("resize", this.onResize);
    this.layout();
    if (window.ResizeObserver) {
      this.barObserver = new ResizeObserver(() => this.layout());
      this.barObserver.observe(this.panel);
    }
    const first = this.selection.findFrom((r) => !this.verdicts.get(r.region_unique_id));
    const steps = this.selection.steps();
    const to = first >= 0 ? first : (steps[0] ?? -1);
    if (to >= 0) this.selection.select(to, { center: true });
    if (!reviewerName()) this.askName();
    else this.panel.focus({ preventScroll: true });
    this.firstProgress = this.refreshProgress();
    performance.mark("review:board-ready");
    performance.measure("review:board-render", "review:board-start", "review:board-ready");
  }

  /** Sizes the image to the window: the viewport takes the height from its top to the
   * window's bottom (less the phone's verdict bar), so the image and the panel fit without
   * scrolling and a larger window shows a larger image. */
  layout() {
    const viewport = this.view.viewport;
    if (!this.active || !viewport?.isConnected) return;
    const bar = this.phoneBar() ? this.panel.offsetHeight : 0;
    document.body.style.setProperty("--review-bar-height", `${bar}px`);
    const top = viewport.getBoundingClientRect().top + window.scrollY;
    const height = Math.max(240, Math.floor(window.innerHeight - top - bar - 12));
    if (viewport.style.height === `${height}px`) return;
    viewport.style.height = `${height}px`;
    if (this.view.autoFit !== false) this.view.fit();
    else if (this.selection.current) this.selection.select(this.selection.index, { center: true, scroll: false });
  }

  /** Whether the panel is the phone's verdict bar (fixed at the bottom, app.css). */
  phoneBar() {
    return getComputedStyle(this.panel).position === "fixed";
  }

  /** Leaves the board: stops listening to keys, the window and the saves, and removes the
   * panel (the next board gets its own). */
  destroy() {
    this.active = false;
    window.removeEventListener("keydown", this.onKey, true);
    if (this.idleKey) window.removeEventListener("keydown", this.idleKey);
    if (this.onResize) window.removeEventListener("resize", this.onResize);
    this.barObserver?.disconnect();
    saves.removeEventListener("change", this.onSaves);
    if (this.keymap?.open) this.keymap.close();
    this.panel.remove();
  }

  /** The saves' state on the panel: an error with a Retry button while one has failed. */
  showSaves() {
    const box = this.panel.querySelector(".review-save-error");
    if (!box) return;
    const failed = saves.failed;
    box.hidden = !failed;
    if (!failed) return;
    box.querySelector(".review-save-text").textContent =
      `Not saved: ${failed.label} (${errorText(failed.err)}); ${saves.unsaved} waiting, kept on this page.`;
  }
  render() {
    const who = reviewerName();
    const canRename = document.body.dataset.auth !== "required";
    // One line: what is current and how far the board is, the chips, the buttons (each
    // a key too); below it only what is asked for now (a name, a comment, a failed save).
    this.panel.innerHTML = `<div class="card-body review-body">
      <div class="review-line">
        <div class="review-text">
          <div class="review-text-main"><h2 class="h6 mb-0 review-title">Review</h2>
            <span class="review-current small" aria-live="polite"></span>
            <span class="small text-muted board-progress"></span></div>
          <div class="review-text-sub small text-muted">
            <span class="review-status" role="status" aria-live="polite"></span>
            <span class="review-progress" aria-live="polite"></span>
            <span class="review-who">· reviewer <strong class="reviewer-name">${escapeHtml(who || "not named")}</strong>
            ${canRename ? '<button type="button" class="btn btn-link btn-sm p-0 align-baseline review-rename">change</button>' : ""}</span>
          </div>
        </div>
        <ol class="review-defects list-unstyled mb-0" aria-label="Defects of this board"></ol>
        <div class="review-actions">
          <div class="btn-group btn-group-sm" role="group" aria-label="Defect">
            <button type="button" class="btn btn-outline-secondary" data-move="-1" aria-keyshortcuts="K">◀ <span class="btn-label">Previous</span> <kbd>K</kbd></button>
            <button type="button" class="btn btn-outline-secondary" data-move="1" aria-keyshortcuts="J"><span class="btn-label">Next</span> <kbd>J</kbd> ▶</button>
          </div>
          <div class="btn-group btn-group-sm" role="group" aria-label="Verdict">
            ${Object.entries(VERDICT_KEYS).map(([k, v]) => `<button type="button" class="btn btn-outline-${VERDICT_STYLE[v]}"
              data-verdict="${v}" aria-pressed="false" aria-keyshortcuts="${k.toUpperCase()}"><span class="btn-label">${LABELS[v]}</span> <kbd>${k.toUpperCase()}</kbd></button>`).join("")}
          </div>
          <div class="btn-group btn-group-sm" role="group" aria-label="Disposition of the board">
            ${[["pass", "P"], ["repair", "E"], ["scrap", "S"]].map(([d, k], i) => `<button type="button"
              class="btn btn-outline-${DISPOSITION_STYLE[d]}" data-disposition="${d}" aria-pressed="false"
              aria-keyshortcuts="${k} ${i + 1}"><span class="btn-label">${LABELS[d]}</span> <kbd>${k}</kbd></button>`).join("")}
          </div>
          <div class="btn-group btn-group-sm" role="group" aria-label="Review">
            <button type="button" class="btn btn-outline-secondary review-undo" aria-keyshortcuts="Z Control+Z"><span class="btn-label">Undo</span> <kbd>Z</kbd></button>
            <button type="button" class="btn btn-outline-secondary review-comment-btn" aria-keyshortcuts="C"><span class="btn-label">Comment</span> <kbd>C</kbd></button>
            <button type="button" class="btn btn-outline-secondary review-keys-btn" aria-keyshortcuts="Shift+?"><span class="btn-label">Keys</span> <kbd>?</kbd></button>
            <button type="button" class="btn btn-primary review-next-image" aria-keyshortcuts="N"><span class="btn-label">Next board</span> <kbd>N</kbd></button>
          </div>
        </div>
      </div>
      <div class="review-save-error alert alert-danger d-flex flex-wrap align-items-center gap-2 py-1 px-2 mb-0 mt-1 small" role="alert" hidden>
        <span class="review-save-text"></span>
        <button type="button" class="btn btn-sm btn-danger review-save-retry">Retry</button>
      </div>
      <form class="review-name-form d-flex flex-wrap align-items-center gap-2 mt-1" hidden>
        <label class="small" for="review-name-input">Your name for the review record</label>
        <input class="form-control form-control-sm w-auto" id="review-name-input" maxlength="64" required autocomplete="name">
        <button type="submit" class="btn btn-sm btn-primary">Save</button>
      </form>
      <div class="input-group input-group-sm review-comment-group mt-1" hidden>
        <label class="input-group-text" for="review-comment">Comment <kbd class="ms-1">C</kbd></label>
        <input class="form-control" id="review-comment" maxlength="1000" placeholder="sent with the next verdict; Enter keeps it, Esc drops it">
      </div>
    </div>
    <dialog class="review-keymap" aria-labelledby="review-keymap-title">
      <h2 class="h6" id="review-keymap-title">Review keys</h2>
      <table class="table table-sm mb-2"><tbody>
        ${KEY_MAP.map(([keys, what]) => `<tr><th scope="row"><kbd>${escapeHtml(keys)}</kbd></th><td>${escapeHtml(what)}</td></tr>`).join("")}
      </tbody></table>
      <button type="button" class="btn btn-sm btn-primary review-keymap-close">Close <kbd>Esc</kbd></button>
    </dialog>`;
    const q = (sel) => this.panel.querySelector(sel);
    this.keymap = q(".review-keymap");
    this.keymap.addEventListener("close", () => this.panel.focus({ preventScroll: true }));
    q(".review-keys-btn").addEventListener("click", () => this.toggleKeymap());
    q(".review-keymap-close").addEventListener("click", () => this.keymap.close());
    this.panel.querySelectorAll("[data-move]").forEach((b) =>
      b.addEventListener("click", () => this.move(Number(b.dataset.move))));
    this.panel.querySelectorAll("[data-verdict]").forEach((b) =>
      b.addEventListener("click", () => this.verdictKey(b.dataset.verdict)));
    this.panel.querySelectorAll("[data-disposition]").forEach((b) =>
      b.addEventListener("click", () => this.dispositionKey(b.dataset.disposition)));
    q(".review-undo").addEventListener("click", () => this.undoLast());
    q(".review-next-image").addEventListener("click", () => this.queue(() => this.nextImage()));
    q(".review-rename")?.addEventListener("click", () => this.askName());
    q(".review-comment-btn").addEventListener("click", () => this.openComment());
    q(".review-save-retry").addEventListener("click", () => saves.retry());
    q("#review-comment").addEventListener("blur", (e) => {
      // The field stays out of the way unless it holds a comment for the next verdict.
      if (!e.target.value.trim()) q(".review-comment-group").hidden = true;
    });
    q(".review-name-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const name = q("#review-name-input").value.trim();
      if (!NAME_PATTERN.test(name)) return;
      localStorage.setItem(NAME_KEY, name);
      q(".review-name-form").hidden = true;
      q(".reviewer-name").textContent = name;
      this.panel.focus({ preventScroll: true });
    });
    q("#review-comment").addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === "Escape") {
        e.preventDefault();
        // Escape cancels the comment: it must not ride along with the next verdict.
        if (e.key === "Escape") {
          e.target.value = "";
          this.status("Comment dropped.");
        }
        this.panel.focus({ preventScroll: true });
      }
    });
    q(".review-defects").addEventListener("click", (e) => {
      const chip = e.target.closest("[data-index]");
      if (chip) this.selection.select(Number(chip.dataset.index), { center: true });
    });
    this.paint();
  }

  toggleKeymap() {
    if (this.keymap.open) this.keymap.close();
    else this.keymap.showModal();
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
    return this.selection.current;
  }

  /** The regions a verdict is asked for: those of the class filter, else all. */
  inScope() {
    return this.defects.filter((_, i) => this.selection.inScope(i));
  }

  /** Repaints the panel's state and the boxes' verdict colours from the selection. */
  paint() {
    const r = this.current();
    const q = (sel) => this.panel.querySelector(sel);
    const scope = this.selection.scope;
    const reviewed = (list) => list.filter((d) => this.verdicts.get(d.region_unique_id)).length;
    const inScope = this.inScope();
    q(".board-progress").textContent = (scope
      ? `this board: ${reviewed(inScope)} of ${inScope.length} ${scope} defects reviewed (${reviewed(this.defects)} of ${this.defects.length} in all)`
      : `this board: ${reviewed(this.defects)} of ${this.defects.length} defects reviewed`) +
      (this.disposition ? ` · disposition: ${LABELS[this.disposition]}` : "");
    const verdict = r ? this.verdicts.get(r.region_unique_id) : null;
    const index = this.selection.index;
    const ofScope = r && scope && r.class_name === scope
      ? ` (${inScope.indexOf(r) + 1} of ${inScope.length} ${escapeHtml(scope)})` : "";
    q(".review-current").innerHTML = r
      ? `Defect <strong>${index + 1}</strong> of ${this.defects.length}: ${escapeHtml(r.class_name)} #${r.region_id}${ofScope}
         — <span class="review-verdict">${verdict ? escapeHtml(LABELS[verdict]) : "no verdict yet"}</span>`
      : this.defects.length
        ? "No defect selected: J, ] or a click on a box selects one."
        : "No defect on this board: give its disposition (P, E, S) or go to the next board (N).";
    q(".review-current").dataset.regionUniqueId = r?.region_unique_id ?? "";
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
      const out = this.selection.inScope(i) ? "" : " out-of-scope";
      // The accessible name starts with the visible number (WCAG 2.5.3, label in name).
      const label = `${i + 1}: ${d.class_name} #${d.region_id}, ${v ? LABELS[v] : "no verdict"}`;
      return `<li><button type="button" class="badge ${style} review-chip${i === index ? " current" : ""}${out}"
        data-index="${i}" data-verdict="${v || ""}" data-region-unique-id="${escapeHtml(d.region_unique_id)}"
        aria-current="${i === index}" title="${escapeHtml(label)}"
        aria-label="${escapeHtml(label)}">${i + 1}</button></li>`;
    }).join("");
    for (const d of this.defects) {
      const rect = this.view.boxes?.get(d.key);
      if (!rect) continue;
      const v = this.verdicts.get(d.region_unique_id);
      rect.classList.toggle("verdict-real", v === "real");
      rect.classList.toggle("verdict-false_call", v === "false_call");
      rect.classList.toggle("verdict-unsure", v === "unsure");
    }
  }

  move(step) {
    this.selection.step(step, { center: true });
  }

  key(e) {
    if (!this.active || typingIn(e.target)) return;
    if (this.keymap?.open) {
      // The key map is modal: only `?` (and its own Escape) close it.
      if (e.key === "?") { e.preventDefault(); this.keymap.close(); }
      return;
    }
    const k = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && k === "z") {
      e.preventDefault();
      e.stopPropagation();
      this.undoLast();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    let handled = true;
    if (k === "j") this.move(1);
    else if (k === "k") this.move(-1);
    else if (VERDICT_KEYS[k]) this.verdictKey(VERDICT_KEYS[k]);
    else if (DISPOSITION_KEYS[k]) this.dispositionKey(DISPOSITION_KEYS[k]);
    else if (k === "z") this.undoLast();
    else if (k === "n") this.queue(() => this.nextImage());
    else if (k === "c") this.openComment();
    else if (k === "?") this.toggleKeymap();
    else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
    }
  }

  /** A verdict key or button: the defect highlighted *now* and the comment typed *now*
   * go with it, whatever moves while earlier requests are still on their way. */
  verdictKey(verdict) {
    const region = this.current();
    if (!region) {
      this.status("No defect selected: J, ] or a click on a box selects one.", true);
      return;
    }
    if (!reviewerName()) { this.askName(); return; }
    const comment = this.takeComment();
    performance.mark("review:verdict-key");
    this.setVerdict(region, verdict, comment);
  }

  dispositionKey(disposition) {
    if (!reviewerName()) { this.askName(); return; }
    const comment = this.takeComment();
    this.setDisposition(disposition, comment);
  }

  takeComment() {
    const input = this.panel.querySelector("#review-comment");
    const text = input.value.trim();
    input.value = "";
    if (document.activeElement !== input) this.panel.querySelector(".review-comment-group").hidden = true;
    return text || null;
  }

  /** Shows the comment field (under the panel's line) and puts the cursor in it. */
  openComment() {
    const group = this.panel.querySelector(".review-comment-group");
    group.hidden = false;
    group.querySelector("input").focus({ preventScroll: true });
  }

  /** Stores a verdict (PUT /api/regions/{id}/verdict); the API's answer. A keepalive
   * request: it completes even when the page is left meanwhile. */
  async putVerdict(region, verdict, comment, reason = null) {
    // `reason`: a reason code (review_reasons.js), sent only when given.
    const body = { verdict, comment, ...(reason ? { reason } : {}) };
    return api(`/api/regions/${region.region_unique_id}/verdict`, {
      method: "PUT", headers: headers(), body: JSON.stringify(body), keepalive: true,
    });
  }

  /** Queues a save of this board (review_saves.js); once the queue has nothing left, the
   * progress of the queue is asked again (it counts stored verdicts only). */
  save(label, run) {
    saves.push({
      label: `${label} on board ${this.id}`,
      run,
      done: () => { if (this.active && !saves.unsaved) this.refreshProgress(); },
    });
  }

  /** Gives `region` the verdict at once on screen and moves on; the save follows in the
   * background (in order with every other save of the page). `extra` (e.g. a reason code)
   * is taken now, at the key press, and handed to `putVerdict` when the save runs. */
  setVerdict(region, verdict, comment, extra = undefined) {
    const id = region.region_unique_id;
    const before = { verdict: this.verdicts.get(id), comment: this.comments.get(id) };
    this.verdicts.set(id, verdict);
    this.comments.set(id, comment);
    this.save(`${region.class_name} #${region.region_id}: ${LABELS[verdict]}`,
      () => this.putVerdict(region, verdict, comment, extra));
    this.undo.push({ kind: "verdict", key: region.key, ...before });
    this.status(`${region.class_name} #${region.region_id}: ${LABELS[verdict]}.`);
    const open = (r) => !this.verdicts.get(r.region_unique_id);
    if (this.selection.current === region) {
      // On to the next defect without a verdict (or stay on this one); the image is not
      // scrolled to (a tap on the phone's verdict bar leaves the page where it is).
      const next = this.selection.findFrom(open, { after: true });
      if (next >= 0) this.selection.select(next, { center: true, scroll: false });
      else this.paint();
    } else {
      this.paint();
    }
    if (!this.inScope().some(open)) {
      this.status("Every defect to review on this board has a verdict: give its disposition (P pass, E repair, S scrap), then N for the next board.");
    }
    performance.mark("review:verdict-shown");
    performance.measure("review:verdict", "review:verdict-key", "review:verdict-shown");
  }

  async putDisposition(disposition, comment) {
    return api(`/api/images/${encodeURIComponent(this.id)}/disposition`, {
      method: "PUT", headers: headers(), body: JSON.stringify({ disposition, comment }), keepalive: true,
    });
  }

  setDisposition(disposition, comment) {
    const before = { disposition: this.disposition, comment: this.dispositionComment };
    this.disposition = disposition;
    this.dispositionComment = comment;
    this.save(`disposition ${LABELS[disposition]}`, () => this.putDisposition(disposition, comment));
    this.undo.push({ kind: "disposition", ...before });
    this.status(`Board: ${LABELS[disposition]}. N for the next board.`);
    this.paint();
  }

  undoLast() {
    const last = this.undo.pop();
    if (!last) { this.status("Nothing to undo."); return; }
    if (last.kind === "verdict") {
      const r = this.defects[this.selection.indexOf(last.key)];
      const verdict = last.verdict || null;
      const comment = last.comment || null;
      this.verdicts.set(r.region_unique_id, verdict);
      this.comments.set(r.region_unique_id, comment);
      this.save(`undo of ${r.class_name} #${r.region_id}`, () => this.putVerdict(r, verdict, comment));
      this.status(`Undone: ${r.class_name} #${r.region_id} is ${verdict ? LABELS[verdict] : "without verdict"} again.`);
      this.selection.selectKey(last.key, { center: true });
    } else {
      const disposition = last.disposition || null;
      const comment = last.comment || null;
      this.disposition = disposition;
      this.dispositionComment = comment;
      this.save("undo of the disposition", () => this.putDisposition(disposition, comment));
      this.status(`Undone: the board is ${disposition ? LABELS[disposition] : "without disposition"} again.`);
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
      if (this.nextKnown === undefined) {
        // The queue's next board, known while this one is reviewed: preloaded now.
        this.nextKnown = next.img_unique_id || null;
        if (this.nextKnown && this.nextKnown !== this.id) this.onNextKnown?.(this.nextKnown);
      }
      if (asked !== this.progressAsked || !this.active) return;
      const p = next.progress;
      this.panel.querySelector(".review-progress").textContent =
        `${p.reviewed_images} of ${p.images} images reviewed (${filterText(this.filters)})`;
    } catch (err) {
      this.status(errorText(err), true);
    }
  }

  async nextImage() {
    const open = this.inScope().filter((r) => !this.verdicts.get(r.region_unique_id)).length;
    if (open && !this.askedToLeave) {
      // Asked once: a second N leaves the board half reviewed, on purpose.
      this.askedToLeave = true;
      this.status(`${open} defect${open === 1 ? " has" : "s have"} no verdict yet on this board. ` +
        "Press N again to leave it as it is.", true);
      return;
    }
    performance.mark("review:next-key");
    // A quick reviewer may be faster than the queue's first answer: wait for it rather
    // than ask again behind the saves.
    if (this.nextKnown === undefined) await this.firstProgress;
    let to = this.nextKnown;
    const fresh = !to || to === this.id || visited.has(to);
    if (fresh) {
      // No preloaded board to trust: the agent answers, once it has every verdict given.
      if (saves.unsaved) this.status("Saving the verdicts before asking for the next board…");
      await saves.drained();
      const next = await api(`/api/review/next?${this.nextQuery()}`);
      if (!next.img_unique_id || next.img_unique_id === this.id) {
        const p = next.progress;
        this.status(next.img_unique_id
          ? "This is the last board with defects to review."
          : `Nothing left to review: ${p.reviewed_images} of ${p.images} images reviewed (${filterText(this.filters)}).`);
        this.refreshProgress();
        return;
      }
      to = next.img_unique_id;
    }
    if (this.onNextBoard) {
      await this.onNextBoard(to, this.filters, { fresh });
      return;
    }
    this.active = false;
    await saves.drained();
    location.assign(reviewUrl(to, this.filters));
  }
}
