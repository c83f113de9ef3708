// The next board of the review queue, fetched while the current one is reviewed: its image
// answer, its regions, its golden answer, its input image (decoded) and the golden crop of
// its first defect without a verdict, so `N` shows it at once (no page load, no request
// to wait for). Only the browser's cache and this page's memory keep them.
import { api, downloadUrl, readerHeaders } from "./common.js";
import { cropBox, goldenCropUrl, goldenOf } from "./golden_compare.js";
import { defectOrder } from "./viewer.js";

const boards = new Map(); // img_unique_id -> Promise of the board's answers

/** Starts fetching board `id` (once); a promise of {detail, regions, golden, input} (the
 * answers of GET /api/images/{id}, …/regions, …/golden or null, and the decoded input
 * <img>), rejected when the board cannot be shown without a page load (no result). */
export function preloadBoard(id) {
  if (!boards.has(id)) {
    const loading = load(id);
    loading.catch(() => boards.delete(id));
    boards.set(id, loading);
  }
  return boards.get(id);
}

/** The preloaded answers of board `id` (waiting for them if they are still on their way),
 * then forgotten; null when nothing was preloaded or it failed. */
export async function takePreloaded(id) {
  const loading = boards.get(id);
  boards.delete(id);
  if (!loading) return null;
  try {
    return await loading;
  } catch {
    return null;
  }
}

async function load(id) {
  performance.mark(`review:preload-start:${id}`);
  const path = `/api/images/${encodeURIComponent(id)}`;
  // Who asks: a board's blind second reviewer gets neither first verdicts nor disposition.
  const asked = { headers: readerHeaders() };
  const [detail, regions] = await Promise.all([api(path, asked), api(`${path}/regions`, asked)]);
  if (detail.status !== "succeeded") throw new Error(`board ${id} has no result`);
  // The same URL as the viewer's <img> and the compare panel's: then from the cache.
  const input = new Image();
  input.src = `${downloadUrl(id, "input")}?inline=true&format=png`;
  await input.decode().catch(() => null);
  performance.mark(`review:preload-end:${id}`);
  performance.measure("review:preload", `review:preload-start:${id}`, `review:preload-end:${id}`);
  // Only then the golden answer (its first request registers the board: the agent's
  // heaviest request here), so it never holds the board back: the compare panel joins
  // when it arrives.
  const golden = goldenOf(id);
  // Then the golden crops of its defects, the first without a verdict first.
  golden.then((g) => g && prefetchCrops(id, defectOrder(regions), regions.image_width, regions.image_height))
    .catch(() => null);
  return { detail, regions, golden, input };
}

/** Fetches the golden crop of every defect `rows` of board `id` (a `width` x `height`
 * image; the viewer's defect order, those without a verdict first), one after the other,
 * into the browser's cache (the crop answers may be cached for 60 s): moving to a defect
 * then draws its crop without waiting for the agent. */
export async function prefetchCrops(id, rows, width, height) {
  const ordered = [...rows.filter((r) => !r.review?.verdict), ...rows.filter((r) => r.review?.verdict)];
  for (const r of ordered) {
    const box = cropBox(r.bounding_box, width, height);
    try {
      await (await fetch(goldenCropUrl(id, box))).blob();
    } catch {
      return; // the compare panel will say what is wrong when it asks itself
    }
  }
}
