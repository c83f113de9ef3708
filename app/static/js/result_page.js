// The result viewer page, /results/{img_unique_id}.
import { drawImageNav } from "./image_nav.js";
import { renderResult } from "./viewer.js";

const root = document.getElementById("viewer");
const imageNav = drawImageNav(document.getElementById("image-nav"), root.dataset.imgId);
renderResult(root, root.dataset.imgId, {
  onDeleted: () => {
    const back = document.createElement("p");
    back.innerHTML = '<a class="btn btn-primary" href="/history">Back to the history</a>';
    root.appendChild(back);
  },
}).then(() => {
  // The review mode (and anyone else) can walk the images of the History filter too.
  if (window.aoiViewer && imageNav) {
    window.aoiViewer.nextImage = imageNav.next;
    window.aoiViewer.previousImage = imageNav.previous;
  }
});
