// Review mode of the result viewer: a verdict per defect (real, false call, unsure), a
// disposition per board (pass, repair, scrap), the next board of the review queue, undo,
// and the progress of the batch or filter — keyboard first, every key also a button.
//
// The current defect is the viewer's one selection (region_state.js): `[`/`]`, J/K, a click
// on a box, a pin, a table row or a chip all move it, and a verdict key stores its verdict
// on exactly the defect the screen highlights at the moment the key is pressed. Defects are
// numbered in the model's order, as on the pins and the toolbar. With the queue's class
// filter, stepping keeps to the regions of that class.
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
    const first = this.selection.findFrom((r) => !this.verdicts.get(r.region_unique_id));
    const steps = this.selection.steps();
    const to = first >= 0 ? first : (steps[0] ?? -1);
    if (to >= 0) this.selection.select(to, { center: true });
    if (!reviewerName()) this.askName();
    else this.panel.focus({ preventScroll: true });
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
          <input class="form-control" id="review-comment" maxlength="1000" placeholder="sent with the next verdict; Esc drops it">
        </div>
        <button type="button" class="btn btn-sm btn-outline-secondary review-keys-btn" aria-keyshortcuts="Shift+?">Keys <kbd>?</kbd></button>
      </div>
      <ol class="review-defects list-unstyled d-flex flex-wrap gap-1 mb-1" aria-label="Defects of this board"></ol>
      <div class="small text-muted">Keys: <kbd>J</kbd>/<kbd>K</kbd> next/previous defect ·
        <kbd>R</kbd> real · <kbd>F</kbd> false call · <kbd>U</kbd> unsure ·
        <kbd>P</kbd>/<kbd>1</kbd> pass · <kbd>E</kbd>/<kbd>2</kbd> repair · <kbd>S</kbd>/<kbd>3</kbd> scrap ·
        <kbd>Z</kbd> or <kbd>Ctrl</kbd>+<kbd>Z</kbd> undo · <kbd>N</kbd> next board · <kbd>C</kbd> comment ·
        <kbd>−</kbd>/<kbd>0</kbd>/<kbd>+</kbd> zoom · <kbd>H</kbd> hide boxes · <kbd>?</kbd> all keys</div>
      <div class="review-status small mt-1" role="status" aria-live="polite"></div>
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
      this.queue(() => this.undoLast());
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    let handled = true;
    if (k === "j") this.move(1);
    else if (k === "k") this.move(-1);
    else if (VERDICT_KEYS[k]) this.verdictKey(VERDICT_KEYS[k]);
    else if (DISPOSITION_KEYS[k]) this.dispositionKey(DISPOSITION_KEYS[k]);
    else if (k === "z") this.queue(() => this.undoLast());
    else if (k === "n") this.queue(() => this.nextImage());
    else if (k === "c") this.panel.querySelector("#review-comment").focus();
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
    this.queue(() => this.setVerdict(region, verdict, comment));
  }

  dispositionKey(disposition) {
    if (!reviewerName()) { this.askName(); return; }
    const comment = this.takeComment();
    this.queue(() => this.setDisposition(disposition, comment));
  }

  takeComment() {
    const input = this.panel.querySelector("#review-comment");
    const text = input.value.trim();
    input.value = "";
    return text || null;
  }

  // `reason`: a reason code (review_reasons.js), sent only when given.
  async putVerdict(region, verdict, comment, reason = null) {
    const answer = await api(`/api/regions/${region.region_unique_id}/verdict`, {
      method: "PUT", headers: headers(), body: JSON.stringify({ verdict, comment, ...(reason ? { reason } : {}) }),
    });
    this.verdicts.set(region.region_unique_id, answer.review?.verdict || null);
    this.comments.set(region.region_unique_id, answer.review?.comment || null);
    return answer;
  }

  async setVerdict(region, verdict, comment) {
    const before = {
      verdict: this.verdicts.get(region.region_unique_id), comment: this.comments.get(region.region_unique_id),
    };
    await this.putVerdict(region, verdict, comment);
    this.undo.push({ kind: "verdict", key: region.key, ...before });
    this.status(`${region.class_name} #${region.region_id}: ${LABELS[verdict]}.`);
    const open = (r) => !this.verdicts.get(r.region_unique_id);
    if (this.selection.current === region) {
      // On to the next defect without a verdict (or stay on this one), unless the reviewer
      // has moved on already.
      const next = this.selection.findFrom(open, { after: true });
      if (next >= 0) this.selection.select(next, { center: true });
      else this.paint();
    } else {
      this.paint();
    }
    if (!this.inScope().some(open)) {
      this.status("Every defect to review on this board has a verdict: give its disposition (P pass, E repair, S scrap), then N for the next board.");
    }
    this.refreshProgress();
  }

  async putDisposition(disposition, comment) {
    const answer = await api(`/api/images/${encodeURIComponent(this.id)}/disposition`, {
      method: "PUT", headers: headers(), body: JSON.stringify({ disposition, comment }),
    });
    this.disposition = answer.review?.disposition || null;
    this.dispositionComment = answer.review?.comment || null;
  }

  async setDisposition(disposition, comment) {
    const before = { disposition: this.disposition, comment: this.dispositionComment };
    await this.putDisposition(disposition, comment);
    this.undo.push({ kind: "disposition", ...before });
    this.status(`Board: ${LABELS[disposition]}. N for the next board.`);
    this.paint();
  }

  async undoLast() {
    const last = this.undo.pop();
    if (!last) { this.status("Nothing to undo."); return; }
    if (last.kind === "verdict") {
      const r = this.defects[this.selection.indexOf(last.key)];
      await this.putVerdict(r, last.verdict || null, last.comment || null);
      this.status(`Undone: ${r.class_name} #${r.region_id} is ${last.verdict ? LABELS[last.verdict] : "without verdict"} again.`);
      this.selection.selectKey(last.key, { center: true });
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
    const open = this.inScope().filter((r) => !this.verdicts.get(r.region_unique_id)).length;
    if (open && !this.askedToLeave) {
      // Asked once: a second N leaves the board half reviewed, on purpose.
      this.askedToLeave = true;
      this.status(`${open} defect${open === 1 ? " has" : "s have"} no verdict yet on this board. ` +
        "Press N again to leave it as it is.", true);
      return;
    }
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
