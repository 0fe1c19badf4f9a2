// Small DOM and formatting helpers shared by the pages. Text always goes in through textContent; the
// only HTML inserted anywhere is the search API's `snippet_html` (escaped by the server, <mark> only).

/** el("p", {className: "x", text: "hi"}, child, …): an element with properties, attributes and children. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) node.append(child);
  }
  return node;
}

/** Seconds as mm:ss (h:mm:ss from an hour on); "" when unknown. */
export function clock(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "";
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${String(m).padStart(2, "0")}:${s}`;
}

/** A duration for people: "1.2 s", "3 min 4 s". */
export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  return m < 60 ? `${m} min ${Math.round(seconds % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fileName(path) {
  if (!path) return "";
  const parts = String(path).split("/");
  return parts[parts.length - 1] || String(path);
}

/** A snippet into `node`: the server's escaped HTML with <mark>s when given, else plain text. */
export function setSnippet(node, hit) {
  if (typeof hit.snippet_html === "string" && hit.snippet_html) node.innerHTML = hit.snippet_html;
  else node.textContent = hit.snippet || "";
}

/** A user-facing message for an error thrown by the Api (or anything else). */
export function message(error) {
  if (error && error.unauthorized) return "This server needs an API key: enter it above, then try again.";
  return error && error.message ? error.message : String(error);
}

export function isTimed(hit) {
  return (hit.media_type === "video" || hit.media_type === "audio") && typeof hit.start_s === "number";
}
