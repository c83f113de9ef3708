// The result viewer page, /results/{img_unique_id} (review mode with ?review=1).
import { attachReview } from "./review.js";
import { renderResult } from "./viewer.js";

const root = document.getElementById("viewer");
const view = await renderResult(root, root.dataset.imgId, {
  onDeleted: () => {
    const back = document.createElement("p");
    back.innerHTML = '<a class="btn btn-primary" href="/history">Back to the history</a>';
    root.appendChild(back);
  },
});
if (view) attachReview(root, view);
