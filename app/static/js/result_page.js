// The result viewer page, /results/{img_unique_id}.
import { renderResult } from "./viewer.js";

const root = document.getElementById("viewer");
renderResult(root, root.dataset.imgId, {
  onDeleted: () => {
    const back = document.createElement("p");
    back.innerHTML = '<a class="btn btn-primary" href="/history">Back to the history</a>';
    root.appendChild(back);
  },
});
