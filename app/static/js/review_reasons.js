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
    const shown = review.panel.querySelector(".review-reason-shown");
    if (shown) {
      const label = r && WITH_REASON.has(verdictOf(r)) ? current : state.armed;
      shown.textContent = label ? `: ${label}` : "";
    }
    if (!note) return;
    note.dataset.currentReason = current || "";
    note.dataset.armed = state.armed || "";
    const parts = [];
    if (r && WITH_REASON.has(verdictOf(r))) parts.push(`reason: ${current || "none"}`);
    if (state.armed) parts.push(`reason of the next verdict: ${state.armed}`);
    note.textContent = parts.join(" · ");
  }

  // The picker: a compact "Reason" button in the panel's one line (its own flex item, so
  // the line's ellipsis never cuts it) that opens the reason list over the image, wrapped
  // in rows: every code readable at 1366×768 without a line more or a scroll.
  const menuOpen = () => {
    const menu = review.panel?.querySelector(".review-reason-menu");
    return Boolean(menu && !menu.hidden);
  };
  function showMenu(open, focus = false) {
    const menu = review.panel?.querySelector(".review-reason-menu");
    const toggle = review.panel?.querySelector(".review-reason-toggle");
    if (!menu || !toggle) return;
    menu.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open && focus) menu.querySelector("button[data-reason]")?.focus();
    if (!open && focus) toggle.focus();
  }

  function mountUi() {
    review.panel.querySelectorAll(".review-reasons, .review-reason-now, .review-reason-key")
      .forEach((el) => el.remove());
    const line = review.panel.querySelector(".review-line");
    const actions = review.panel.querySelector(".review-actions");
    if (!line && !actions) return;
    const box = document.createElement("div");
    box.className = "review-reasons small";
    box.innerHTML = !state.loaded ? "" : state.codes.length
      ? `<button type="button" class="btn btn-outline-secondary btn-sm review-reason-toggle" aria-expanded="false"
          aria-controls="review-reason-menu" aria-haspopup="true">Reason<span class="review-reason-shown"></span> ▾</button>
        <div class="review-reason-menu card shadow-sm p-1" id="review-reason-menu" role="group"
          aria-label="Reason of the verdict (Shift+digit)" hidden>
          ${state.codes.map((code, i) => `<button type="button" class="btn btn-light btn-sm review-reason-btn"
            data-reason="${escapeHtml(code)}" aria-pressed="false" aria-keyshortcuts="Shift+${i + 1}"><kbd>⇧${i + 1}</kbd> ${escapeHtml(code)}</button>`).join("")}
        </div>`
      : '<span class="text-muted">No reason codes (REVIEW_REASONS is empty).</span>';
    if (line && actions?.parentElement === line) line.insertBefore(box, actions);
    else (actions || line).append(box);
    // The current defect's reason and the armed one, on the line of the current defect.
    const note = document.createElement("span");
    note.className = "review-reason-now small text-muted";
    note.setAttribute("aria-live", "polite");
    const current = review.panel.querySelector(".review-current")?.parentElement;
    if (current) current.append(note);
    else box.append(note);
    box.querySelector(".review-reason-toggle")?.addEventListener("click", () => showMenu(!menuOpen()));
    box.querySelectorAll("button[data-reason]").forEach((b) =>
      b.addEventListener("click", () => {
        reasonKey(b.dataset.reason);
        showMenu(false);
      }));
    // The key map (`?`) lists the reason keys too.
    const keys = review.panel.querySelector(".review-keymap tbody");
    keys?.insertAdjacentHTML("beforeend", state.codes.map((code, i) =>
      `<tr class="review-reason-key"><th scope="row"><kbd>Shift+${i + 1}</kbd></th>
        <td>reason: ${escapeHtml(code)} (on the current real / false-call verdict, else with the next R or F)</td></tr>`).join(""));
    draw();
  }

  // A click anywhere else closes the open list.
  const onOutside = (e) => {
    if (menuOpen() && !e.target.closest?.(".review-reasons")) showMenu(false);
  };
  document.addEventListener("click", onOutside);

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
      document.removeEventListener("click", onOutside);
      destroy();
    };
  }

  // Shift+1 ... Shift+9, taken before review.js's keys (registered first, capture phase):
  // by the physical key, so Shift+1 is reason 1 whatever character the layout types.
  const onKey = (e) => {
    if (!review.active || typingIn(e.target) || review.keymap?.open) return;
    if (e.key === "Escape" && menuOpen()) {
      e.preventDefault();
      e.stopImmediatePropagation();
      showMenu(false, true);
      return;
    }
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
