// The review queue page, /review: filters, progress, and the first board to review.
import { api, errorText, escapeHtml, fillClassPicker, formatTime, showAlert } from "./common.js";
import { reviewUrl } from "./review.js";
import { showAuditQueue } from "./review_audit.js";

const form = document.getElementById("review-filters");
const state = document.getElementById("review-queue-state");
const FIELDS = ["batch_id", "class_name", "start_date", "end_date", "disagreement"];

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

/** The batch picker: the newest batches (GET /api/review/batches), and the one in the URL
 * even when it is older. */
async function fillBatches(wanted) {
  const select = form.elements.batch_id;
  let batches = [];
  try {
    batches = (await api("/api/review/batches")).batches;
  } catch (err) {
    showAlert(`The batches could not be listed: ${errorText(err)}`, "warning", state);
  }
  if (wanted && !batches.some((b) => b.batch_id === wanted)) batches.unshift({ batch_id: wanted });
  select.innerHTML = `<option value="">Any</option>` + batches.map((b) => {
    const about = b.created_at ? ` (${b.total_images} image${b.total_images === 1 ? "" : "s"}, ${formatTime(b.created_at)})` : "";
    return `<option value="${escapeHtml(b.batch_id)}">${escapeHtml(b.batch_id + about)}</option>`;
  }).join("");
  select.value = wanted;
}

const preset = new URLSearchParams(location.search);
await fillBatches(preset.get("batch_id") || "");
await fillClassPicker(form.elements.class_name, preset.get("class_name") || "");
for (const name of FIELDS) if (preset.get(name)) form.elements[name].value = preset.get(name);
if (preset.get("disagreement")) {
  const note = document.getElementById("r-disagreement-note");
  note.textContent = `Only boards on which model version ${preset.get("disagreement")} disagrees with the primary answer.`;
  note.classList.remove("d-none");
}
if (preset.get("audit") === "1") {
  showAuditQueue(state, document.getElementById("review-begin"));
} else {
  show();
}
