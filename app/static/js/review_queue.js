// The review queue page, /review: filters, progress, and the first board to review.
import { api, errorText, escapeHtml, fillClassPicker, showAlert } from "./common.js";
import { reviewUrl } from "./review.js";

const form = document.getElementById("review-filters");
const state = document.getElementById("review-queue-state");
const FIELDS = ["batch_id", "class_name", "start_date", "end_date"];

function filters() {
  const out = {};
  for (const name of FIELDS) {
    const value = form.elements[name].value.trim();
    if (value) out[name] = value;
  }
  return out;
}

async function show() {
  state.innerHTML = "";
  try {
    const next = await api(`/api/review/next?${new URLSearchParams(filters())}`);
    const p = next.progress;
    state.innerHTML = `<p class="mb-1"><strong class="queue-progress">${p.reviewed_images} of ${p.images} images reviewed</strong>
      (${p.reviewed_regions} of ${p.regions} defects have a verdict).</p>
      <p class="small text-muted">${next.img_unique_id
        ? `Next: <code>${escapeHtml(next.img_unique_id)}</code>`
        : "Nothing left to review with these filters."}</p>`;
    return next;
  } catch (err) {
    showAlert(errorText(err), "danger", state);
    return null;
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  show();
});
document.getElementById("review-begin").addEventListener("click", async () => {
  const next = await show();
  if (next?.img_unique_id) location.assign(reviewUrl(next.img_unique_id, filters()));
});

const preset = new URLSearchParams(location.search);
await fillClassPicker(form.elements.class_name, preset.get("class_name") || "");
for (const name of FIELDS) if (preset.get(name)) form.elements[name].value = preset.get(name);
show();
