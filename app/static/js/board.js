// The Board page, /boards/{board_serial}: every inspection of one board, oldest first
// (GET /api/boards/{board_serial}), with its pass/fail outcome and a link to each result.
import { api, classBadges, errorText, escapeHtml, formatTime } from "./common.js";

const root = document.getElementById("board");
const serial = root.dataset.serial;

const OUTCOME_BADGE = { pass: "text-bg-success", fail: "text-bg-danger" };

function outcomeBadge(outcome, label = "") {
  if (!outcome) return '<span class="badge text-bg-secondary">no result</span>';
  return `<span class="badge ${OUTCOME_BADGE[outcome]} outcome" data-outcome="${escapeHtml(outcome)}">${escapeHtml(label)}${escapeHtml(outcome)}</span>`;
}

function contextLine(ctx) {
  const parts = [
    ["product", ctx.product],
    ["revision", ctx.recipe_revision],
    ["line", ctx.line],
    ["station", ctx.station],
    ["lane", ctx.lane],
    ["side", ctx.side],
    ["lot", ctx.lot],
    ["panel", ctx.panel_id],
    ["position", ctx.panel_position],
  ].filter(([, v]) => v !== null && v !== undefined);
  return parts.map(([k, v]) => `${k} <strong>${escapeHtml(v)}</strong>`).join(" · ");
}

function row(entry) {
  const id = encodeURIComponent(entry.img_unique_id);
  const kind = entry.kind === "first_pass" ? "first pass" : entry.kind ? `re-inspection ${entry.pass_number - 1}` : entry.status;
  const verdicts = entry.regions
    ? entry.regions.classes.flatMap((c) => c.regions).filter((r) => r.review).length
    : 0;
  return `<li class="list-group-item board-inspection" data-img-id="${escapeHtml(entry.img_unique_id)}">
    <div class="d-flex flex-wrap gap-3 align-items-start">
      ${entry.status === "succeeded" ? `<img class="thumb rounded" width="96" height="96" loading="lazy" src="/api/images/${id}/thumbnail?size=128&kind=overlay" alt="Overlay of ${escapeHtml(entry.original_filename)}">` : ""}
      <div class="flex-grow-1">
        <div><span class="fw-semibold">${escapeHtml(kind)}</span> ${outcomeBadge(entry.outcome)}
          <a href="/results/${id}"><code>${escapeHtml(entry.img_unique_id)}</code></a></div>
        <div class="small text-muted">${escapeHtml(formatTime(entry.timestamp))} · ${escapeHtml(entry.original_filename)}</div>
        <div class="small">${contextLine(entry.context)}</div>
        ${entry.status === "succeeded" ? `<div class="mt-1">${classBadges(entry.defect_classes, { empty: "clean" })}
          <span class="small text-muted ms-2">${verdicts} verdict${verdicts === 1 ? "" : "s"}</span>
          ${entry.disposition ? `<span class="small ms-2">disposition <strong>${escapeHtml(entry.disposition.disposition)}</strong> by ${escapeHtml(entry.disposition.reviewer)}</span>` : ""}</div>` : ""}
        ${entry.error ? `<div class="small text-danger text-break">${escapeHtml(entry.error)}</div>` : ""}
      </div>
    </div></li>`;
}

try {
  const board = await api(`/api/boards/${encodeURIComponent(serial)}`);
  root.innerHTML = `
    <p class="mb-2">First pass: ${outcomeBadge(board.first_pass)} · latest: ${outcomeBadge(board.latest)}
      · ${board.inspections.length} inspection${board.inspections.length === 1 ? "" : "s"}${board.truncated ? " (the first 100)" : ""}</p>
    <ol class="list-group board-timeline">${board.inspections.map(row).join("")}</ol>`;
} catch (err) {
  root.innerHTML = `<div class="alert alert-warning" role="alert">${escapeHtml(errorText(err))}</div>`;
}
