// The result viewer page, /results/{img_unique_id} (review mode with ?review=1).
import { attachGoldenCompare } from "./golden_compare.js";
import { drawImageNav } from "./image_nav.js";
import { attachReview } from "./review.js";
import { auditMode, blindView, isAudit } from "./review_audit.js";
import { attachReasons } from "./review_reasons.js";
import { renderResult } from "./viewer.js";

const root = document.getElementById("viewer");
const imageNav = drawImageNav(document.getElementById("image-nav"), root.dataset.imgId);
const view = await renderResult(root, root.dataset.imgId, {
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
if (view && isAudit()) {
  // Blind second review: the first verdicts never reach the screen.
  blindView(view);
  attachReview(root, view, (review) => {
    auditMode(review);
    attachReasons(review);
  });
  attachGoldenCompare(view);
} else if (view) {
  // Reason codes (Shift+1 ... Shift+9) with the verdicts.
  attachReview(root, view, attachReasons);
  // The golden board beside the current defect, when the board has one.
  attachGoldenCompare(view);
}
