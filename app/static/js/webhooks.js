// The Webhooks page, /admin/webhooks: the endpoints (GET /api/webhooks), the deliveries of
// one with every attempt (GET /api/webhooks/{id}/deliveries), and a Redeliver button per
// delivery (POST /api/webhooks/deliveries/{id}/redeliver).
import { api, errorText, escapeHtml, formatTime, showAlert } from "./common.js";

const endpointsBox = document.getElementById("webhook-endpoints");
const deliveriesBox = document.getElementById("webhook-deliveries");
const deliveriesBody = document.getElementById("deliveries-body");
const heading = document.getElementById("deliveries-heading");
let shown = null;

const STATUS_BADGE = { pending: "text-bg-warning", delivered: "text-bg-success", parked: "text-bg-danger" };

function statusBadge(status) {
  return `<span class="badge ${STATUS_BADGE[status] || "text-bg-secondary"} delivery-status">${escapeHtml(status)}</span>`;
}

function endpointRow(e) {
  return `<tr class="endpoint-row" data-endpoint-id="${e.id}">
    <td>${e.id}</td>
    <td class="text-break"><code>${escapeHtml(e.url)}</code>${e.description ? `<div class="small text-muted">${escapeHtml(e.description)}</div>` : ""}</td>
    <td class="small">${e.events.map(escapeHtml).join(", ")}</td>
    <td>${e.pending}</td><td>${e.delivered}</td><td>${e.parked}</td>
    <td class="small">${escapeHtml(formatTime(e.created_at))}</td>
    <td><button type="button" class="btn btn-sm btn-outline-primary show-deliveries" data-endpoint-id="${e.id}">Deliveries<span class="visually-hidden"> of endpoint ${e.id}</span></button></td>
  </tr>`;
}

function attemptsList(d) {
  if (!d.attempt_log.length) return '<span class="small text-muted">not tried yet</span>';
  const items = d.attempt_log.map((a) => `<li>${escapeHtml(formatTime(a.attempted_at))}:
    ${a.status_code === null ? "no answer" : `HTTP ${a.status_code}`} in ${(a.duration_s * 1000).toFixed(0)} ms${a.error ? ` — <span class="text-danger">${escapeHtml(a.error)}</span>` : ""}</li>`);
  return `<details><summary class="small">${d.attempts} attempt${d.attempts === 1 ? "" : "s"}</summary>
    <ol class="small mb-0">${items.join("")}</ol></details>`;
}

function deliveryRow(d) {
  return `<tr class="delivery-row" data-delivery-id="${d.id}" data-status="${escapeHtml(d.status)}">
    <td>${d.id}</td>
    <td><code>${escapeHtml(d.event_type)}</code><div class="small text-muted text-break">${escapeHtml(d.event_id)}</div></td>
    <td>${statusBadge(d.status)}</td>
    <td class="small">${escapeHtml(formatTime(d.created_at))}</td>
    <td>${attemptsList(d)}</td>
    <td><button type="button" class="btn btn-sm btn-outline-secondary redeliver" data-delivery-id="${d.id}">Redeliver<span class="visually-hidden"> delivery ${d.id}</span></button></td>
  </tr>`;
}

async function loadEndpoints() {
  try {
    const endpoints = await api("/api/webhooks");
    endpointsBox.innerHTML = `<h2 class="h6" id="endpoints-heading">Endpoints</h2>` + (endpoints.length
      ? `<div class="table-responsive"><table class="table table-sm align-middle" id="endpoints-table">
          <thead class="table-light"><tr><th scope="col">#</th><th scope="col">URL</th><th scope="col">Events</th>
          <th scope="col">Pending</th><th scope="col">Delivered</th><th scope="col">Parked</th><th scope="col">Added</th>
          <th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
          <tbody>${endpoints.map(endpointRow).join("")}</tbody></table></div>`
      : `<p class="text-muted">No endpoints yet: <code>aoi-agent webhooks add URL --events inspection.completed</code>.</p>`);
  } catch (err) {
    endpointsBox.innerHTML = `<h2 class="h6" id="endpoints-heading">Endpoints</h2>
      <div class="alert alert-warning" role="alert">${escapeHtml(errorText(err))}</div>`;
  }
}

async function loadDeliveries(endpointId) {
  shown = endpointId;
  deliveriesBox.hidden = false;
  heading.textContent = `Deliveries of endpoint ${endpointId}`;
  try {
    const deliveries = await api(`/api/webhooks/${encodeURIComponent(endpointId)}/deliveries?limit=100`);
    deliveriesBody.innerHTML = deliveries.length
      ? `<div class="table-responsive"><table class="table table-sm align-middle" id="deliveries-table">
          <thead class="table-light"><tr><th scope="col">#</th><th scope="col">Event</th><th scope="col">Status</th>
          <th scope="col">Created</th><th scope="col">Attempts</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
          <tbody>${deliveries.map(deliveryRow).join("")}</tbody></table></div>`
      : '<p class="text-muted">No deliveries yet.</p>';
  } catch (err) {
    deliveriesBody.innerHTML = `<div class="alert alert-warning" role="alert">${escapeHtml(errorText(err))}</div>`;
  }
}

endpointsBox.addEventListener("click", (e) => {
  const button = e.target.closest(".show-deliveries");
  if (button) loadDeliveries(button.dataset.endpointId);
});

deliveriesBody.addEventListener("click", async (e) => {
  const button = e.target.closest(".redeliver");
  if (!button) return;
  button.disabled = true;
  try {
    await api(`/api/webhooks/deliveries/${encodeURIComponent(button.dataset.deliveryId)}/redeliver`, { method: "POST" });
    showAlert(`Delivery ${button.dataset.deliveryId} queued again.`, "success");
    await Promise.all([loadEndpoints(), loadDeliveries(shown)]);
  } catch (err) {
    showAlert(`Redeliver failed: ${errorText(err)}`, "danger");
    button.disabled = false;
  }
});

await loadEndpoints();
