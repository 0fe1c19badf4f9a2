// The orchestrator's HTTP API as the page uses it: JSON over fetch(), the API key as X-API-Key.
//
// The key lives in sessionStorage (this browser tab only; gone when the tab closes). <img> and <video>
// cannot send headers: the search API signs the media URLs it returns (`sig`, `exp`) when a key is set,
// and those are used exactly as given; an unsigned image URL is fetched here with the key instead
// (imageSource), while an unsigned stream cannot be (the player says so when it fails).

const KEY_NAME = "archivist.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }

  get unauthorized() {
    return this.status === 401;
  }
}

/** FastAPI's `detail`: a string, an object with its own `detail`, or a list of validation errors. */
function describe(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((e) => `${(e.loc || []).filter((p) => p !== "query" && p !== "body").join(".")}: ${e.msg}`)
      .join("; ");
  }
  if (detail && typeof detail === "object" && "detail" in detail) return describe(detail.detail);
  return JSON.stringify(detail);
}

export class Api {
  /** @param {Storage} storage where the key is kept (sessionStorage) */
  constructor(storage) {
    this.storage = storage;
    this.listeners = new Set();
  }

  get key() {
    return this.storage.getItem(KEY_NAME) || "";
  }

  set key(value) {
    if (value) this.storage.setItem(KEY_NAME, value);
    else this.storage.removeItem(KEY_NAME);
  }

  /** `listener(error)` is called for every 401, whoever made the call. */
  onUnauthorized(listener) {
    this.listeners.add(listener);
  }

  url(path, params = {}) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "" && value !== false) {
        url.searchParams.set(name, String(value));
      }
    }
    return url;
  }

  headers(extra = {}) {
    const headers = { ...extra };
    if (this.key) headers["X-API-Key"] = this.key;
    return headers;
  }

  /** fetch() with the key; a non-2xx answer throws an ApiError carrying the server's reason. */
  async fetch(path, { method = "GET", params, body, signal, accept = "application/json" } = {}) {
    const init = { method, signal, cache: "no-store", headers: this.headers({ Accept: accept }) };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(this.url(path, params), init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, `cannot reach the server (${error.message})`);
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        message = describe((await response.json()).detail) || message;
      } catch {
        // not JSON: the status line says enough
      }
      const error = new ApiError(response.status, message);
      if (error.unauthorized) for (const listener of this.listeners) listener(error);
      throw error;
    }
    return response;
  }

  async get(path, params, signal) {
    return (await this.fetch(path, { params, signal })).json();
  }

  /** POST `body` as JSON (undefined: no body at all); `params`: the query string. */
  async post(path, body, params) {
    return (await this.fetch(path, { method: "POST", body, params })).json();
  }

  async patch(path, body, params) {
    return (await this.fetch(path, { method: "PATCH", body, params })).json();
  }

  /**
   * An <img> source for `url`: the URL itself when no key is needed or it is signed; otherwise the image
   * fetched with the key, as a blob: URL (revoked once the image has loaded).
   */
  async imageSource(url) {
    const parsed = new URL(url, window.location.origin);
    if (!this.key || parsed.searchParams.has("sig")) return parsed.href;
    const response = await this.fetch(parsed.pathname + parsed.search, { accept: "image/*" });
    return URL.createObjectURL(await response.blob());
  }

  /** Set `img`'s source (see imageSource); a failure leaves the image empty (its alt text stays). */
  showImage(img, url) {
    if (!url) return;
    this.imageSource(url).then(
      (src) => {
        if (src.startsWith("blob:")) {
          img.addEventListener("load", () => URL.revokeObjectURL(src), { once: true });
        }
        img.src = src;
      },
      () => img.classList.add("broken"),
    );
  }
}
