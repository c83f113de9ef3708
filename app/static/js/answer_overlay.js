// A second answer over the viewer: `?compare=<answer ids>` on /results/{id} draws the
// regions of stored shadow/replay answers (GET /api/models/answers/{answer_id}) as dashed
// boxes over the primary answer's solid ones, and lists them in a panel: each region says
// which primary defect it matches, and one only that answer has can be judged here
// (PUT /api/models/answer-regions/{id}/verdict), so the comparison can count what the
// primary model missed (docs/models.md). A `real` or `false_call` verdict may carry a code
// of the reason list (GET /api/review/reasons), chosen beside the buttons, as in review
// mode; the change is in the board's review history like a primary verdict.
import { api, classColor, errorText, escapeHtml, showAlert } from "./common.js";
import { headers } from "./review.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const GAP_PX = 5; // outside the primary boxes' outline, so both stay visible
const LABELS = { real: "Real", false_call: "False call", unsure: "Unsure" };
const WITH_REASON = new Set(["real", "false_call"]);

/** The answer ids named by `?compare=` (comma-separated, repeatable). */
export function compareIds(search = location.search) {
  const ids = new URLSearchParams(search).getAll("compare").flatMap((v) => v.split(","));
  return [...new Set(ids.map((v) => v.trim()).filter((v) => /^[0-9]{1,18}$/.test(v)))];
}

/** Overlays the answers `ids` on `view` (a ResultView of viewer.js); returns the overlay
 * or null when there is nothing to show. */
export async function attachAnswerOverlay(view, ids) {
  if (!ids.length) return null;
  const answers = [];
  for (const id of ids) {
    try {
      answers.push(await api(`/api/models/answers/${encodeURIComponent(id)}`));
    } catch (err) {
      showAlert(`Answer ${escapeHtml(id)} could not be loaded: ${errorText(err)}`, "warning");
    }
  }
  if (!answers.length) return null;
  let reasons = [];
  try {
    reasons = (await api("/api/review/reasons")).reasons.map((r) => r.code);
  } catch {
    // Without the list, verdicts go without a reason (the picker is not shown).
  }
  const overlay = new AnswerOverlay(view, answers, reasons);
  overlay.mount();
  return overlay;
}

class AnswerOverlay {
  constructor(view, answers, reasons = []) {
    this.view = view;
    this.answers = answers;
    this.reasons = reasons;
    this.regionNumber = new Map(view.rows.map((r, i) => [r.region_unique_id, i + 1]));
  }

  mount() {
    this.svg = document.createElementNS(SVG_NS, "svg");
    this.svg.setAttribute("class", "stage-boxes answer-boxes");
    this.svg.setAttribute("aria-hidden", "true");
    this.view.viewport.appendChild(this.svg);
    this.rects = [];
    this.answers.forEach((answer, n) => {
      for (const region of answer.regions) {
        const rect = document.createElementNS(SVG_NS, "rect");
        rect.setAttribute("fill", "none");
        rect.setAttribute("stroke", classColor(region.class_name));
        rect.setAttribute("class", `answer-box answer-box-${n % 2}${region.matched_region_unique_id ? " matched" : ""}`);
        this.svg.appendChild(rect);
        this.rects.push([rect, region, n]);
      }
    });
    const place = this.view.placeBoxes.bind(this.view);
    this.view.placeBoxes = () => {
      place();
      this.place();
    };
    this.place();
    this.panel = document.createElement("section");
    this.panel.className = "card mt-3 answer-panel";
    this.panel.setAttribute("aria-label", "Compared answers");
    this.view.root.appendChild(this.panel);
    this.render();
  }

  place() {
    const { scale, tx, ty } = this.view.zoom;
    for (const [rect, region, n] of this.rects) {
      const [x, y, w, h] = region.bbox;
      const out = GAP_PX * (n + 1);
      rect.setAttribute("x", (tx + x * scale - out).toFixed(1));
      rect.setAttribute("y", (ty + y * scale - out).toFixed(1));
      rect.setAttribute("width", (w * scale + 2 * out).toFixed(1));
      rect.setAttribute("height", (h * scale + 2 * out).toFixed(1));
    }
  }

  render() {
    this.panel.innerHTML = `<div class="card-header py-2">Compared with
      <span class="small text-muted">(dashed boxes: the other answer; solid: the primary answer)</span></div>
      <div class="card-body">${this.answers.map((a) => this.answerHtml(a)).join("")}</div>`;
    for (const button of this.panel.querySelectorAll("button[data-verdict]")) {
      button.addEventListener("click", () => this.judge(button));
    }
    for (const select of this.panel.querySelectorAll("select.answer-reason")) {
      select.addEventListener("change", () => this.giveReason(select));
    }
  }

  answerHtml(answer) {
    const head = `<h2 class="h6">${escapeHtml(answer.model_name || "model")} ${escapeHtml(answer.model_version || "")}
      <span class="badge text-bg-secondary">${escapeHtml(answer.role)}</span></h2>`;
    if (answer.status !== "succeeded") {
      return `${head}<p class="text-danger small">Failed: ${escapeHtml(answer.error)}</p>`;
    }
    const matched = new Set(answer.regions.map((r) => r.matched_region_unique_id).filter(Boolean));
    const missing = this.view.rows.filter((r) => !matched.has(r.region_unique_id));
    const rows = answer.regions.map((r) => {
      const number = r.matched_region_unique_id ? this.regionNumber.get(r.matched_region_unique_id) : null;
      const where = r.matched_region_unique_id
        ? `matches defect ${number ?? "?"} (IoU ${Number(r.match_iou).toFixed(2)})`
        : `<strong>only in this answer</strong>`;
      const judge = r.matched_region_unique_id ? "" : `<span class="btn-group btn-group-sm ms-2" role="group"
          aria-label="Verdict on ${escapeHtml(r.class_name)} #${r.region_id}">
          ${Object.entries(LABELS).map(([v, label]) => `<button type="button" class="btn btn-outline-secondary${r.verdict === v ? " active" : ""}"
            data-verdict="${v}" data-region="${r.answer_region_id}" aria-pressed="${r.verdict === v}">${label}</button>`).join("")}
        </span>${this.reasonPicker(r)}`;
      return `<li class="mb-1"><span class="swatch" data-style="background:${classColor(r.class_name)}"></span>
        ${escapeHtml(r.class_name)} #${r.region_id}, box ${r.bbox.join(", ")}: ${where}${judge}</li>`;
    }).join("");
    const missed = missing.length
      ? `<p class="small mb-0">Primary defects this answer does not have: ${missing.map((r) => `${escapeHtml(r.class_name)} #${r.region_id}`).join(", ")}</p>`
      : "";
    return `${head}<ul class="list-unstyled small answer-regions">${rows || "<li>No region.</li>"}</ul>${missed}`;
  }

  /** The reason picker of an unmatched region (none without a reason list). */
  reasonPicker(r) {
    if (r.matched_region_unique_id || !this.reasons.length) return "";
    const options = ["", ...this.reasons].map((code) => `<option value="${escapeHtml(code)}"${(r.reason || "") === code ? " selected" : ""}>${code ? escapeHtml(code) : "no reason"}</option>`).join("");
    return `<select class="form-select form-select-sm d-inline-block w-auto ms-2 answer-reason"
      data-region="${r.answer_region_id}" aria-label="Reason for ${escapeHtml(r.class_name)} #${r.region_id}">${options}</select>`;
  }

  region(id) {
    for (const answer of this.answers) {
      const found = answer.regions.find((r) => String(r.answer_region_id) === id);
      if (found) return found;
    }
    return null;
  }

  async judge(button) {
    const id = button.dataset.region;
    const verdict = button.getAttribute("aria-pressed") === "true" ? null : button.dataset.verdict;
    const picked = this.panel.querySelector(`select.answer-reason[data-region="${id}"]`)?.value || null;
    await this.send(id, verdict, WITH_REASON.has(verdict) ? picked : null);
  }

  /** A new reason for a region judged real or false call is stored at once; otherwise it
   * goes with the next verdict given. */
  async giveReason(select) {
    const region = this.region(select.dataset.region);
    if (region && WITH_REASON.has(region.verdict)) {
      await this.send(select.dataset.region, region.verdict, select.value || null);
    }
  }

  async send(id, verdict, reason) {
    try {
      const region = await api(`/api/models/answer-regions/${encodeURIComponent(id)}/verdict`, {
        method: "PUT",
        headers: headers(),
        body: JSON.stringify({ verdict, reason }),
      });
      const found = this.region(id);
      if (found) {
        found.verdict = region.verdict;
        found.reason = region.reason;
      }
      this.render();
    } catch (err) {
      showAlert(errorText(err), "danger");
    }
  }
}
