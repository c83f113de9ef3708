// Previous / next image on the viewer page, within the gallery the History page showed
// last (its filters, page and ids are kept in sessionStorage under "aoi.historyNav").
// At a page's edge the neighbouring page is asked from /api/images with the same filters.
import { api, escapeHtml, readerHeaders } from "./common.js";

const NAV_KEY = "aoi.historyNav";

function stored() {
  try {
    return JSON.parse(sessionStorage.getItem(NAV_KEY) || "null");
  } catch {
    return null;
  }
}

function save(nav) {
  try { sessionStorage.setItem(NAV_KEY, JSON.stringify(nav)); } catch { /* not kept */ }
}

/** The ids of History page `page` with the stored filters, or null when out of range. */
async function pageIds(nav, page) {
  if (page < 1 || (page - 1) * nav.limit >= nav.total) return null;
  const query = new URLSearchParams(nav.filters);
  query.set("page", String(page));
  query.set("limit", String(nav.limit));
  const answer = await api(`/api/images?${query}`, { headers: readerHeaders() });
  return answer.images.map((img) => img.img_unique_id);
}

/** The id `step` (±1) away from `id` in the stored gallery, following onto the next or
 * previous page; null at either end or when `id` is not in the stored gallery. */
async function neighbour(nav, id, step) {
  const at = nav.ids.indexOf(id);
  if (at < 0) return null;
  const to = at + step;
  if (to >= 0 && to < nav.ids.length) return { id: nav.ids[to], nav };
  const page = nav.page + step;
  const ids = await pageIds(nav, page);
  if (!ids || !ids.length) return null;
  const next = { ...nav, page, ids };
  return { id: step > 0 ? ids[0] : ids[ids.length - 1], nav: next };
}

/** Draws "‹ Previous image · n of N · Next image ›" into `container` when `id` is in the
 * gallery History showed last; returns {previous(), next()} (null otherwise). */
export function drawImageNav(container, id) {
  const nav = stored();
  if (!nav || !Array.isArray(nav.ids) || !nav.ids.includes(id)) return null;
  const position = (nav.page - 1) * nav.limit + nav.ids.indexOf(id) + 1;
  const label = new URLSearchParams(nav.filters).toString() ? "in the filtered history" : "in the history";
  container.innerHTML = `<nav class="d-flex flex-wrap align-items-center gap-2 small" aria-label="Images ${escapeHtml(label)}">
    <button type="button" class="btn btn-sm btn-outline-secondary" data-image-step="-1" ${position <= 1 ? "disabled" : ""}>‹ Previous image</button>
    <span class="text-muted image-position">${position} of ${nav.total} ${escapeHtml(label)}</span>
    <button type="button" class="btn btn-sm btn-outline-secondary" data-image-step="1" ${position >= nav.total ? "disabled" : ""}>Next image ›</button>
  </nav>`;
  const go = async (step) => {
    const found = await neighbour(stored() || nav, id, step);
    if (!found) return;
    save(found.nav);
    location.assign(`/results/${encodeURIComponent(found.id)}`);
  };
  container.querySelectorAll("[data-image-step]").forEach((btn) =>
    btn.addEventListener("click", () => go(Number(btn.dataset.imageStep))));
  return { previous: () => go(-1), next: () => go(1) };
}
