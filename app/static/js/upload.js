// Upload page: pick or drop one image, check it, upload with a progress bar, then show the
// result inline with the same viewer as /results/{id}.
import { checkFile, errorText, formatBytes, showAlert, uploadLimits, uploadWithProgress } from "./common.js";
import { renderResult } from "./viewer.js";

const limits = uploadLimits();
const zone = document.getElementById("drop-zone");
const input = document.getElementById("file-input");
const statusCard = document.getElementById("upload-status");
const bar = document.querySelector("#upload-progress .progress-bar");
const barBox = document.getElementById("upload-progress");
const stateText = document.getElementById("upload-state");
const errorBox = document.getElementById("upload-error");
const resultBox = document.getElementById("result");
let busy = false;

function setProgress(fraction, { striped = false, kind = "" } = {}) {
  const pct = Math.round(fraction * 100);
  bar.style.width = `${pct}%`;
  barBox.setAttribute("aria-valuenow", String(pct));
  bar.className = `progress-bar${striped ? " progress-bar-striped progress-bar-animated" : ""}${kind ? ` bg-${kind}` : ""}`;
}

async function send(file, note = "") {
  if (busy) {
    showAlert("An image is still being inspected; wait for its result.", "warning", errorBox);
    return;
  }
  errorBox.innerHTML = "";
  if (note) showAlert(note, "warning", errorBox);
  const problem = checkFile(file, limits);
  if (problem) {
    showAlert(problem, "danger", errorBox);
    return;
  }
  busy = true;
  zone.setAttribute("aria-busy", "true");
  resultBox.innerHTML = "";
  statusCard.hidden = false;
  document.getElementById("upload-file").textContent = file.name;
  document.getElementById("upload-bytes").textContent = `0 / ${formatBytes(file.size)}`;
  stateText.textContent = "Uploading…";
  setProgress(0);
  const form = new FormData();
  form.append("image", file, file.name);
  try {
    const answer = await uploadWithProgress("/api/upload", form, {
      onProgress: (sent, total) => {
        setProgress(sent / total);
        document.getElementById("upload-bytes").textContent =
          `${formatBytes(Math.min(sent, file.size))} / ${formatBytes(file.size)}`;
      },
      onSent: () => {
        setProgress(1, { striped: true });
        stateText.innerHTML = `<span class="spinner-border spinner-border-sm me-1" role="status"></span>
          Analysing… the model service is inspecting the image.`;
        stateText.dataset.state = "analysing";
      },
    });
    setProgress(1, { kind: "success" });
    stateText.dataset.state = "done";
    stateText.textContent = `Done: ${answer.total_defects} defect${answer.total_defects === 1 ? "" : "s"} found in ` +
      `${answer.processing_time_seconds.toFixed(2)} s.`;
    await renderResult(resultBox, answer.img_unique_id, {
      onDeleted: () => { statusCard.hidden = true; },
    });
    history.replaceState(null, "", `/?id=${encodeURIComponent(answer.img_unique_id)}`);
  } catch (err) {
    setProgress(1, { kind: "danger" });
    stateText.dataset.state = "failed";
    stateText.textContent = "Failed.";
    showAlert(errorText(err), "danger", errorBox);
  } finally {
    busy = false;
    zone.removeAttribute("aria-busy");
    input.value = "";
  }
}

input.addEventListener("change", () => { if (input.files.length) send(input.files[0]); });
zone.addEventListener("click", () => input.click());
document.getElementById("choose-file").addEventListener("click", () => input.click());
zone.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
});
for (const type of ["dragenter", "dragover"]) {
  zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragover"); });
}
for (const type of ["dragleave", "drop"]) {
  zone.addEventListener(type, () => zone.classList.remove("dragover"));
}
zone.addEventListener("drop", (e) => {
  e.preventDefault();
  const files = [...e.dataTransfer.files];
  const note = files.length > 1
    ? `${files.length} files dropped: this page inspects one image, so only "${files[0].name}" is sent. ` +
      "Use the Batch page for many."
    : "";
  if (files.length) send(files[0], note);
});
// A dropped file outside the zone would make the browser navigate away from the page.
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());

// Coming back to /?id=... shows that result again.
const shown = new URLSearchParams(location.search).get("id");
if (shown) renderResult(resultBox, shown).catch((err) => showAlert(errorText(err), "danger", errorBox));
