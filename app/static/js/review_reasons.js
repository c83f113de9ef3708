// Reason codes in review mode (docs/review.md): a `real` or `false_call` verdict may carry
// a code of the reason list (GET /api/review/reasons: REVIEW_REASONS or the admin's list),
// one key each: Shift+1 ... Shift+9 (the digits alone are the disposition keys).
//
// A reason key acts on the defect the screen highlights when it is pressed: if that defect
// has a real or false-call verdict, the reason is stored on it at once (the same key again
// takes it off); otherwise the reason is armed and goes with the next R or F (the same key
// again disarms it). Undo restores the reason a verdict had before.
//
// Self-contained: it adapts one ReviewMode (review.js) before it mounts, as audit mode
// does, by wrapping its render, paint, setVerdict, putVerdict, undoLast and destroy.
import { api, errorText, escapeHtml } from "./common.js";
import { headers } from "./review.js";

const WITH_REASON = new Set(["real", "false_call"]);

function typingIn(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

/** Adds reason codes to one ReviewMode (call it as `attachReview`'s setup, before mount). */
export function attachReasons(review) {
  const state = {
    codes: [],
    loaded: false,
    armed: null, // the reason for the next R / F
    reasons: new Map(review.defects.map((r) => [r.region_unique_id, r.review?.reason || null])),
  };
  review.reasons = state;

  const verdictOf = (region) => review.verdicts.get(region.region_unique_id) || null;

  function draw() {
    const box = review.panel?.querySelector(".review-reasons");
    if (!box) return;
    const r = review.current();
    const current = r ? state.reasons.get(r.region_unique_id) : null;
    box.querySelectorAll("button[data-reason]").forEach((b) => {
      const on = b.dataset.reason === (r && WITH_REASON.has(verdictOf(r)) ? current : state.armed);
      b.setAttribute("aria-pressed", String(on));
      b.classList.toggle("fw-bold", on);
    });
    const note = review.panel.querySelector(".review-reason-now");
    if (!note) return;
    note.dataset.currentReason = current || "";
    note.dataset.armed = state.armed || "";
    const parts = [];
    if (r && WITH_REASON.has(verdictOf(r))) parts.push(`reason: ${current || "none"}`);
    if (state.armed) parts.push(`reason of the next verdict: ${state.armed}`);
    note.textContent = parts.join(" · ");
  }

  function mountUi() {
    // In the row of the action buttons (no new line: the panel keeps its height), else
    // above the status line.
    review.panel.querySelectorAll(".review-reasons, .review-reason-now, .review-reason-key")
      .forEach((el) => el.remove());
    const sub = review.panel.querySelector(".review-text-sub");
    const actions = review.panel.querySelector(".review-actions");
    if (!sub && !actions) return;
    const box = document.createElement("span");
    box.className = "review-reasons small";
    box.innerHTML = !state.loaded ? "" : state.codes.length
      ? `· <span id="review-reasons-label">reason</span>
        <span role="group" aria-labelledby="review-reasons-label">
          ${state.codes.map((code, i) => `<button type="button" class="btn btn-link btn-sm p-0 align-baseline review-reason-btn"
            data-reason="${escapeHtml(code)}" aria-pressed="false" aria-keyshortcuts="Shift+${i + 1}"><kbd>⇧${i + 1}</kbd> ${escapeHtml(code)}</button>`).join(" ")}
        </span>`
      : '<span class="text-muted">No reason codes (REVIEW_REASONS is empty).</span>';
    if (sub) sub.append(box);
    else actions.append(box);
    // The current defect's reason and the armed one, on the line of the current defect.
    const note = document.createElement("span");
    note.className = "review-reason-now small text-muted";
    note.setAttribute("aria-live", "polite");
    const line = review.panel.querySelector(".review-current")?.parentElement;
    if (line) line.append(note);
    else box.append(note);
    box.querySelectorAll("button[data-reason]").forEach((b) =>
      b.addEventListener("click", () => reasonKey(b.dataset.reason)));
    // The key map (`?`) lists the reason keys too.
    const keys = review.panel.querySelector(".review-keymap tbody");
    keys?.insertAdjacentHTML("beforeend", state.codes.map((code, i) =>
      `<tr class="review-reason-key"><th scope="row"><kbd>Shift+${i + 1}</kbd></th>
        <td>reason: ${escapeHtml(code)} (on the current real / false-call verdict, else with the next R or F)</td></tr>`).join(""));
    draw();
  }

  /** A reason key or button, on the defect highlighted now. */
  function reasonKey(code) {
    const region = review.current();
    if (region && WITH_REASON.has(verdictOf(region))) {
      const id = region.region_unique_id;
      const before = state.reasons.get(id) || null;
      const reason = before === code ? null : code;
      const verdict = verdictOf(region);
      const comment = review.comments.get(id) || null;
      state.reasons.set(id, reason);
      const label = `${region.class_name} #${region.region_id}: ${reason ? `reason ${reason}` : "no reason"}`;
      review.save(label, () => putVerdict(region, verdict, comment, reason));
      review.undo.push({ kind: "verdict", key: region.key, verdict, comment, reason: before });
      review.status(`${label}.`);
      review.paint();
      return;
    }
    state.armed = state.armed === code ? null : code;
    review.status(state.armed ? `Reason ${code} goes with the next R or F.` : "Reason dropped.");
    draw();
  }

  const render = review.render.bind(review);
  review.render = () => {
    render();
    mountUi();
  };
  const paint = review.paint.bind(review);
  review.paint = () => {
    paint();
    draw();
  };

  // A verdict key: the armed reason is taken now, at the key press (setVerdict runs then;
  // its save, later, hands `extra` to putVerdict). The reason before goes on the undo entry.
  const setVerdict = review.setVerdict.bind(review);
  review.setVerdict = (region, verdict, comment, extra = undefined) => {
    const id = region.region_unique_id;
    const before = state.reasons.get(id) || null;
    let reason = extra;
    if (reason === undefined) {
      reason = WITH_REASON.has(verdict) ? state.armed : null;
      if (reason) state.armed = null;
    }
    if (!WITH_REASON.has(verdict)) reason = null;
    state.reasons.set(id, reason || null);
    const depth = review.undo.length;
    setVerdict(region, verdict, comment, reason || null);
    if (review.undo.length > depth) review.undo[review.undo.length - 1].reason = before;
    draw();
  };

  // Undo: the verdict's reason before comes back with it (kept for the save that follows).
  const stash = new Map(); // region_unique_id -> the reason the undo's save sends
  const undoLast = review.undoLast.bind(review);
  review.undoLast = () => {
    const last = review.undo[review.undo.length - 1];
    if (last?.kind === "verdict") {
      const r = review.defects[review.selection.indexOf(last.key)];
      const reason = last.verdict ? last.reason || null : null;
      if (r) {
        stash.set(r.region_unique_id, reason);
        state.reasons.set(r.region_unique_id, reason);
      }
    }
    undoLast();
    draw();
  };
  const putVerdict = review.putVerdict.bind(review);
  review.putVerdict = (region, verdict, comment, reason = undefined) => {
    const id = region.region_unique_id;
    let why = reason;
    if (why === undefined && stash.has(id)) why = stash.get(id);
    stash.delete(id);
    return putVerdict(region, verdict, comment, WITH_REASON.has(verdict) ? why || null : null);
  };

  const destroy = review.destroy?.bind(review);
  if (destroy) {
    review.destroy = () => {
      window.removeEventListener("keydown", onKey, true);
      destroy();
    };
  }

  // Shift+1 ... Shift+9, taken before review.js's keys (registered first, capture phase):
  // by the physical key, so Shift+1 is reason 1 whatever character the layout types.
  const onKey = (e) => {
    if (!review.active || typingIn(e.target) || review.keymap?.open) return;
    if (!e.shiftKey || e.ctrlKey || e.metaKey || e.altKey) return;
    const digit = /^(?:Digit|Numpad)([1-9])$/.exec(e.code);
    if (!digit) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    const code = state.codes[Number(digit[1]) - 1];
    if (code) reasonKey(code);
    else review.status(`No reason on Shift+${digit[1]}: the list has ${state.codes.length}.`, true);
  };
  window.addEventListener("keydown", onKey, true);

  api("/api/review/reasons", { headers: headers(false) })
    .then((answer) => {
      state.codes = answer.reasons.map((r) => r.code);
      state.loaded = true;
      if (review.active && review.panel) mountUi();
    })
    .catch((err) => review.active && review.status(errorText(err), true));
}
