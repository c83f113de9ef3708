// Shared helpers of every page: class colours, API calls with readable errors, formatting.

/** Class colours (RGB hex); the model service's mask uses exactly this table. */
export const CLASS_COLORS = Object.freeze({
  open: "#e6194b",
  short: "#f58231",
  mousebite: "#ffe119",
  spur: "#3cb44b",
  spurious_copper: "#4363d8",
  pin_hole: "#911eb4",
});

/** Known classes in the model's class-id order, for stable legends and filters. */
export const KNOWN_CLASSES = Object.keys(CLASS_COLORS);

function hslToHex(h, s, l) {
  s /= 100;
  l /= 100;
  const k = (n) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  const hex = (x) => Math.round(x * 255).toString(16).padStart(2, "0");
  return `#${hex(f(0))}${hex(f(8))}${hex(f(4))}`;
}

/** The colour of a defect class: the table above, else a hue from an FNV-1a hash of
 * the name, so an unknown class gets the same colour on every page and every visit. */
export function classColor(name) {
  if (Object.prototype.hasOwnProperty.call(CLASS_COLORS, name)) return CLASS_COLORS[name];
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(String(name))) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hslToHex(hash % 360, 55 + ((hash >>> 9) % 25), 42 + ((hash >>> 17) % 12));
}

/** WCAG 2.1 relative luminance of `hex` (sRGB; the formula of the WCAG 2.1 definition
 * "relative luminance"). */
function luminance(hex) {
  const n = parseInt(hex.slice(1), 16);
  const lin = (c) => {
    const v = c / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(n >> 16) + 0.7152 * lin((n >> 8) & 255) + 0.0722 * lin(n & 255);
}

/** Black or white, whichever has the higher WCAG contrast ratio on `hex` (white on the
 * spur green #3cb44b is only 2.68:1; black is 7.8:1). */
export function textColorOn(hex) {
  const l = luminance(hex);
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "#000" : "#fff";
}

/** `hex` with an alpha channel, for fills. */
export function withAlpha(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

export function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

/** The Content-Security-Policy refuses style attributes in markup, so generated markup
 * carries `data-style="prop:value;…"` and this applies it through the CSSOM (allowed). */
function applyDataStyles(node) {
  if (node.nodeType !== Node.ELEMENT_NODE) return;
  const found = node.matches("[data-style]") ? [node] : [];
  for (const el of [...found, ...node.querySelectorAll("[data-style]")]) {
    el.style.cssText = el.dataset.style;
  }
}

new MutationObserver((records) => {
  for (const record of records) record.addedNodes.forEach(applyDataStyles);
}).observe(document.documentElement, { childList: true, subtree: true });

/** An error answered by the API (`{"error", "detail"}`) or a network failure. */
export class ApiError extends Error {
  constructor(message, status = 0, code = "network_error") {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const STATUS_TEXT = {
  400: "The request was not accepted",
  404: "Not found",
  409: "Not possible right now",
  410: "A stored file is missing",
  413: "The file is too large",
  415: "Unsupported file type",
  422: "Invalid input",
  502: "The model service gave an unusable answer",
  503: "A service the agent needs is unavailable",
};

/** A readable message from an error answer's status and body text. */
export function messageFromBody(status, text) {
  let detail = "";
  try {
    const body = JSON.parse(text);
    detail = typeof body.detail === "string" ? body.detail : "";
    if (!detail && Array.isArray(body.detail)) detail = body.detail.map((d) => d.msg).join("; ");
    return new ApiError(
      `${STATUS_TEXT[status] || `Error ${status}`}: ${detail || body.error || "no details"}`,
      status, body.error || "http_error");
  } catch {
    const short = (text || "").replace(/<[^>]*>/g, " ").trim().slice(0, 200);
    return new ApiError(`${STATUS_TEXT[status] || `Error ${status}`}${short ? `: ${short}` : ""}`,
      status, "http_error");
  }
}

/** When the agent requires keys and the session has ended (401), go to the sign-in page
 * and come back here afterwards. */
function signInAgainIf(status) {
  if (status === 401 && document.body.dataset.auth === "required") {
    location.assign(`/signin?next=${encodeURIComponent(location.pathname + location.search)}`);
  }
}

/** fetch() that returns parsed JSON (or null for 204) and throws ApiError otherwise. */
export async function api(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, ...options });
  } catch (err) {
    throw new ApiError("Cannot reach the agent: check that it is running and the network is up.");
  }
  const text = await response.text();
  signInAgainIf(response.status);
  if (!response.ok) throw messageFromBody(response.status, text);
  if (response.status === 204 || !text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("The agent sent an answer that is not JSON.", response.status, "bad_json");
  }
}

/** POST `formData` with XMLHttpRequest (fetch cannot report upload progress).
 * `onProgress(sentBytes, totalBytes)`; `onSent()` once every byte is out.
 * Resolves with the parsed JSON; rejects with ApiError. */
export function uploadWithProgress(url, formData, { onProgress, onSent } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded, e.total);
    });
    xhr.upload.addEventListener("load", () => onSent && onSent());
    xhr.addEventListener("load", () => {
      signInAgainIf(xhr.status);
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          reject(new ApiError("The agent sent an answer that is not JSON.", xhr.status, "bad_json"));
        }
      } else {
        reject(messageFromBody(xhr.status, xhr.responseText));
      }
    });
    xhr.addEventListener("error", () => reject(
      new ApiError("The upload failed: the agent could not be reached (network error).")));
    xhr.addEventListener("abort", () => reject(new ApiError("The upload was cancelled.", 0, "aborted")));
    xhr.send(formData);
  });
}

/** Upload limits the server put in the page: sizes in bytes, batch size in files. */
export function uploadLimits() {
  return JSON.parse(document.getElementById("upload-limits").textContent);
}

/** Why `file` would be refused (type or size), or null when it looks acceptable. */
export function checkFile(file, limits) {
  const name = file.name.toLowerCase();
  const types = limits.accepted_types;
  const byType = Object.prototype.hasOwnProperty.call(types, file.type);
  const byExt = Object.values(types).some((exts) => exts.some((ext) => name.endsWith(ext)));
  if (!byType && !byExt) {
    return `"${file.name}" is not a JPEG, PNG, TIFF or BMP image` +
      (file.type ? ` (it is ${file.type})` : "") + ".";
  }
  if (file.size === 0) return `"${file.name}" is empty.`;
  if (file.size > limits.max_file_size_bytes) {
    return `"${file.name}" is ${formatBytes(file.size)}; the limit is ${limits.max_file_size_mb} MiB.`;
  }
  return null;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function formatTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function formatNumber(value, digits = 2) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : Number(value).toFixed(digits);
}

/** Coloured badges "class: count" for a {class: count} map, most first. */
export function classBadges(counts, { empty = "no defects" } = {}) {
  const entries = Object.entries(counts || {}).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  if (!entries.length) return `<span class="badge text-bg-light border">${escapeHtml(empty)}</span>`;
  return entries.map(([name, n]) => {
    const bg = classColor(name);
    return `<span class="badge class-badge" data-class="${escapeHtml(name)}"
      data-style="background:${bg};color:${textColorOn(bg)}">${escapeHtml(name)}: ${n}</span>`;
  }).join(" ");
}

/** Show a dismissible alert in `container` (default: the page's alert area). */
export function showAlert(message, kind = "danger", container = null) {
  const box = container || document.getElementById("page-alerts");
  const div = document.createElement("div");
  div.className = `alert alert-${kind} alert-dismissible fade show`;
  div.setAttribute("role", "alert");
  div.innerHTML = `<span class="alert-text"></span>
    <button type="button" class="btn-close" data-bs-dismiss="alert" aria-label="Close"></button>`;
  div.querySelector(".alert-text").textContent = message;
  box.appendChild(div);
  return div;
}

/** The message of any error, for the user. */
export function errorText(err) {
  if (err instanceof ApiError) return err.message;
  return `Unexpected error in the page: ${err && err.message ? err.message : err}`;
}

/** The JSON body of a 'download' link for one inspection's files. */
export function downloadUrl(id, kind) {
  return kind === "json"
    ? `/api/download/json/${encodeURIComponent(id)}`
    : `/api/download/image/${encodeURIComponent(id)}/${kind}`;
}

/** Unhandled promise errors become a visible alert instead of a silent failure. */
window.addEventListener("unhandledrejection", (event) => {
  showAlert(errorText(event.reason));
});

/** Fills `select` with the defect classes a filter can offer ("Any" first, then the
 * model's known classes in class-id order, then any other class the stored results have,
 * from /api/dashboard/summary, then `wanted` if it is none of them) and selects `wanted`.
 * A picker, not free text: a typed "pinhole" for pin_hole would silently find nothing. */
export async function fillClassPicker(select, wanted = "") {
  const names = [...KNOWN_CLASSES];
  try {
    const stats = await api("/api/dashboard/summary");
    for (const c of stats.classes) if (!names.includes(c.class_name)) names.push(c.class_name);
  } catch { /* the known classes still work as filters */ }
  if (wanted && !names.includes(wanted)) names.push(wanted);
  select.innerHTML = `<option value="">Any</option>` +
    names.map((n) => `<option value="${escapeHtml(n)}">${escapeHtml(n)}</option>`).join("");
  select.value = wanted;
}

/** Calls `load()` whenever the dashboard's date-range `form` is submitted with a valid
 * range (start not after end) or one of its `[data-days]` shortcuts is clicked. */
/** The board-context pickers of the dashboard's range form (docs/boards.md#filters). */
export const CONTEXT_PICKERS = Object.freeze(["product", "line", "side", "lot"]);

/** The dashboard's query: the range form's dates, model version and board-context
 * pickers, as the /api/dashboard/* and /api/spc/* routes take them. */
export function dashboardQuery(form) {
  const q = new URLSearchParams();
  if (form.elements.start_date.value) q.set("start_date", form.elements.start_date.value);
  if (form.elements.end_date.value) q.set("end_date", form.elements.end_date.value);
  if (form.elements.model_version.value.trim()) q.set("model_version", form.elements.model_version.value.trim());
  for (const name of CONTEXT_PICKERS) {
    const picker = form.elements[name];
    if (picker && picker.value) q.set(name, picker.value);
  }
  return q;
}

export function onRangeChange(form, load) {
  form.addEventListener("submit", (e) => {
    const { start_date: s, end_date: t } = form.elements;
    if (!(s.value && t.value && s.value > t.value)) load();
    e.preventDefault();
  });
  form.querySelectorAll("[data-days]").forEach((btn) => btn.addEventListener("click", load));
}

/** Headers of a read that says who asks: with keys off, the reviewer name this browser
 * was given (`X-Reviewer`), so the agent withholds a board's first review from its blind
 * second reviewer (docs/review.md); with keys required the session says it already. */
export function readerHeaders() {
  const out = { Accept: "application/json" };
  const name = localStorage.getItem("aoi.reviewer");
  if (document.body.dataset.auth !== "required" && name) out["X-Reviewer"] = encodeURIComponent(name);
  return out;
}
