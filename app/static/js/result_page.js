// The result viewer page, /results/{img_unique_id} (review mode with ?review=1).
// In review mode `N` opens the queue's next board in this page (its answers fetched while
// the board before was reviewed, review_preload.js): no page load between two boards.
import { attachAnswerOverlay, compareIds } from "./answer_overlay.js";
import { api } from "./common.js";
import { attachGoldenCompare } from "./golden_compare.js";
import { drawImageNav } from "./image_nav.js";
import { attachReview, reviewUrl } from "./review.js";
import { auditMode, blindView, isAudit } from "./review_audit.js";
import { attachReasons } from "./review_reasons.js";
import { prefetchCrops, preloadBoard, takePreloaded } from "./review_preload.js";
import { renderResult } from "./viewer.js";

const root = document.getElementById("viewer");
let current = null; // {view, review} of the board on screen
const aheadOf = new Map(); // img_unique_id -> the queue's board after it, as the agent said

/** Shows board `id` in `root` (from `preloaded` answers when given) with its review panel
 * and golden comparison; `{view, review}` or null when it has no result to show. */
async function mountBoard(id, preloaded = null) {
  const imageNav = drawImageNav(document.getElementById("image-nav"), id);
  const view = await renderResult(root, id, {
    preloaded,
    onDeleted: () => {
      const back = document.createElement("p");
      back.innerHTML = '<a class="btn btn-primary" href="/history">Back to the history</a>';
      root.appendChild(back);
    },
  });
  // The review mode (and anyone else) can walk the images of the History filter too.
  if (window.aoiViewer && imageNav) {
    window.aoiViewer.nextImage = imageNav.next;
    window.aoiViewer.previousImage = imageNav.previous;
  }
  if (!view) return null;
  const golden = preloaded ? { preloaded: preloaded.golden } : {};
  if (isAudit()) {
    // Blind second review: the first verdicts never reach the screen.
    blindView(view);
    const review = attachReview(root, view, (r) => {
      auditMode(r);
      attachReasons(r);
    });
    // The next board open to this auditor, preloaded; `N` swaps it in (openNext). Its
    // answers were asked with the auditor's name: no first verdict or disposition.
    review.onNextKnown = (next) => preloadBoard(next).catch(() => null);
    review.onNextBoard = openNext;
    attachGoldenCompare(view, golden).then((compare) => {
      if (compare && !preloaded) prefetchCrops(id, view.rows, view.width, view.height);
    });
    return { view, review };
  }
  // Reason codes (Shift+1 ... Shift+9) with the verdicts.
  const review = attachReview(root, view, attachReasons);
  // The next board, then the one after it (the agent's answer for "after the next"), so
  // a slow answer for one board is hidden behind the review of two.
  review.onNextKnown = (next) => preloadBoard(next)
    .then(() => preloadAfter(next, review.filters, id)).catch(() => null);
  const known = aheadOf.get(id);
  if (known) {
    // Named already while the board before was reviewed: preloaded, or on its way.
    review.nextKnown = known;
    review.onNextKnown(known);
  }
  review.onNextBoard = openNext;
  // The golden board beside the current defect, when the board has one; on the page's
  // first board its crops are fetched ahead here (the next boards' come preloaded).
  attachGoldenCompare(view, golden).then((compare) => {
    if (compare && !preloaded) prefetchCrops(id, view.rows, view.width, view.height);
  });
  // `?compare=<answer ids>`: shadow/replay answers overlaid (the Models page's links).
  attachAnswerOverlay(view, compareIds());
  return { view, review };
}

/** `N` in review mode: board `id` replaces the one on screen, in one go (the old panel
 * and view are gone in the same task that draws the new ones, the URL follows), from its
 * preloaded answers (fetched now when there are none); a page load if it cannot be. */
async function openNext(id, filters, { fresh = false } = {}) {
  // `fresh`: the agent has just named this board; what was fetched of it before may be old.
  if (fresh) await takePreloaded(id);
  const preloaded = await takePreloaded(id) || await preloadBoard(id).then(() => takePreloaded(id), () => null);
  if (!preloaded) {
    location.assign(reviewUrl(id, filters));
    return;
  }
  performance.mark("review:swap-start");
  current?.review?.destroy();
  current?.view?.destroy();
  root.dataset.imgId = id;
  document.title = document.title.replace(/^Result \S+/, `Result ${id}`);
  document.querySelector("main h1").textContent = `Inspection result ${id}`;
  document.querySelector(".breadcrumb-item.active").textContent = id;
  history.pushState({ img: id }, "", reviewUrl(id, filters));
  // With answers at hand the board is drawn without waiting (renderResult resolves at once).
  current = await mountBoard(id, preloaded);
  performance.mark("review:swap-end");
  performance.measure("review:swap", "review:swap-start", "review:swap-end");
}

/** Preloads the queue's board after `next` (not `current`, the one on screen). */
async function preloadAfter(next, filters, current) {
  const answer = await api(`/api/review/next?${new URLSearchParams({ ...filters, after: next })}`);
  const after = answer.img_unique_id;
  if (after && after !== next && after !== current) {
    aheadOf.set(next, after);
    await preloadBoard(after);
  }
}

// Back and forward between boards opened in the page: load what the URL says.
window.addEventListener("popstate", () => location.reload());

current = await mountBoard(root.dataset.imgId);
