// Audit mode (`?review=1&audit=1`): the blind second review of the REVIEW_AUDIT_RATE
// sample (docs/review.md). The review panel and keys stay those of review.js; only where
// verdicts come from and go to changes: the viewer forgets the first verdicts and the
// board's disposition before the panel starts, the auditor's own second verdicts come
// from GET /api/review/audit/images/{id}, and a verdict key stores into
// PUT /api/review/audit/regions/{id}/verdict (never over the first verdict). The next
// board open to the auditor is preloaded as in review mode (review_preload.js): `N`
// swaps it in without a page load.
import { api, errorText, escapeHtml } from "./common.js";
import { headers, reviewUrl } from "./review.js";
import { saves } from "./review_saves.js";

/** Whether the page's URL asks for audit mode. */
export function isAudit() {
  return new URLSearchParams(location.search).get("audit") === "1";
}

/** Removes the first verdicts and the disposition from the viewer's data, so nothing on
 * screen (box colours, chips, labels) can show them to the auditor. */
export function blindView(view) {
  for (const row of view.rows) row.review = null;
  if (view.detail) view.detail.disposition = null;
}

/** The review filters of audit mode: its URLs carry `audit=1`. */
export const AUDIT = Object.freeze({ audit: "1" });
const auditUrl = (id) => reviewUrl(id, AUDIT);

/** Turns one ReviewMode (review.js) into the audit of its board, before it mounts. */
export function auditMode(review) {
  const id = review.id;
  review.verdicts = new Map(review.defects.map((r) => [r.region_unique_id, null]));
  review.comments = new Map(review.defects.map((r) => [r.region_unique_id, null]));
  review.disposition = null;
  review.takeComment = () => null;
  const render = review.render.bind(review);
  review.render = () => {
    render();
    review.panel.querySelector("h2").textContent = "Audit: blind second review";
    review.panel.querySelectorAll("[data-disposition], .review-comment-group input")
      .forEach((el) => { el.disabled = true; });
  };
  review.dispositionKey = () =>
    review.status("An audit gives verdicts only: the disposition stays the first review's.", true);
  review.putVerdict = async (region, verdict, comment, reason = null) => {
    const answer = await api(`/api/review/audit/regions/${region.region_unique_id}/verdict`, {
      method: "PUT", headers: headers(), body: JSON.stringify({ verdict, ...(reason ? { reason } : {}) }),
    });
    review.verdicts.set(region.region_unique_id, answer.verdict);
    return answer;
  };
  review.refreshProgress = async () => {
    try {
      const next = await api(`/api/review/audit/next?after=${encodeURIComponent(id)}`, { headers: headers(false) });
      if (review.nextKnown === undefined) {
        // The next board open to this auditor, known while this one is audited: the page
        // preloads it (result_page.js), so `N` shows it without a page load.
        review.nextKnown = next.img_unique_id || null;
        if (review.nextKnown && review.nextKnown !== id) review.onNextKnown?.(review.nextKnown);
      }
      if (!review.active) return;
      review.panel.querySelector(".review-progress").textContent =
        `${next.pending} board${next.pending === 1 ? "" : "s"} to audit open to you`;
    } catch (err) {
      review.status(errorText(err), true);
    }
  };
  review.nextImage = async () => {
    const open = review.defects.filter((r) => !review.verdicts.get(r.region_unique_id)).length;
    if (open && !review.askedToLeave) {
      review.askedToLeave = true;
      review.status(`${open} defect${open === 1 ? " has" : "s have"} no second verdict yet. Press N again to leave.`, true);
      return;
    }
    const next = await api(`/api/review/audit/next?after=${encodeURIComponent(id)}`, { headers: headers(false) });
    if (!next.img_unique_id || next.img_unique_id === id) {
      review.status("No other board to audit.");
      return;
    }
    if (review.onNextBoard) {
      // In this page, from the preloaded answers (the second verdicts still being saved
      // go on in the background; the next board asks for its own when it mounts).
      await review.onNextBoard(next.img_unique_id, AUDIT, { fresh: false });
      return;
    }
    review.active = false;
    await saves.drained(); // every second verdict stored before the page goes
    location.assign(auditUrl(next.img_unique_id));
  };
  // A verdict given before the answer below arrives wins over it (a slow answer must not
  // wipe a key already pressed off the screen).
  const touched = new Set();
  const setVerdict = review.setVerdict.bind(review);
  review.setVerdict = (region, ...rest) => {
    touched.add(region.region_unique_id);
    return setVerdict(region, ...rest);
  };
  // The auditor's own second verdicts (a reload keeps them); never the first ones.
  api(`/api/review/audit/images/${encodeURIComponent(id)}`, { headers: headers(false) })
    .then((board) => {
      for (const r of board.regions) {
        if (!touched.has(r.region_unique_id)) review.verdicts.set(r.region_unique_id, r.verdict);
      }
      if (review.active) review.paint();
    })
    .catch((err) => review.status(errorText(err), true));
}

/** The review queue page in audit mode (`/review?audit=1`): how many sampled boards are
 * open to this reviewer, and Start opens the oldest in audit mode. */
export async function showAuditQueue(state, begin) {
  const ask = () => api("/api/review/audit/next", { headers: headers(false) });
  const draw = (next) => {
    state.innerHTML = `<p class="mb-1"><strong class="queue-progress">Audit: ${next.pending} board${next.pending === 1 ? "" : "s"} open to you</strong>
      (a blind second review of the sampled boards; boards you reviewed first are not offered).</p>
      <p class="small text-muted">${next.img_unique_id ? `Next: <code>${escapeHtml(next.img_unique_id)}</code>` : "Nothing to audit."}</p>`;
  };
  try {
    draw(await ask());
  } catch (err) {
    state.textContent = `The audit queue needs your reviewer name: ${errorText(err)}`;
  }
  begin.textContent = "Start auditing";
  begin.addEventListener("click", async (e) => {
    e.stopImmediatePropagation();
    const next = await ask();
    draw(next);
    if (next.img_unique_id) location.assign(auditUrl(next.img_unique_id));
  }, { capture: true });
}
