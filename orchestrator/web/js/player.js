// The player: a modal <dialog> (Escape closes it) with a <video>/<audio> that starts at the hit's start_s,
// and a timeline under it marking the file's other matching moments (buttons that seek).

import { clock, el, fileName, isTimed, setSnippet } from "./dom.js";

/** Where the original file is served: the hit's own (signed) URL, else the route it lives at. */
export function streamUrl(hit, collection) {
  if (hit.stream_url) return hit.stream_url;
  const query = collection ? `?collection=${encodeURIComponent(collection)}` : "";
  return `/media/${encodeURIComponent(hit.id)}/stream${query}`;
}

export class Player {
  /** @param {HTMLDialogElement} dialog @param {import("./api.js").Api} api */
  constructor(dialog, api) {
    this.dialog = dialog;
    this.api = api;
    this.title = dialog.querySelector("#player-title");
    this.stage = dialog.querySelector("#player-media");
    this.error = dialog.querySelector("#player-error");
    this.timeline = dialog.querySelector("#timeline");
    this.track = this.timeline.querySelector(".track");
    this.snippet = dialog.querySelector("#player-snippet");
    this.path = dialog.querySelector("#player-path");
    this.media = null;
    dialog.querySelector("#player-close").addEventListener("click", () => dialog.close());
    // A click on the backdrop (the dialog element itself, outside its content box) closes it too.
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
    dialog.addEventListener("close", () => this.stop());
  }

  /**
   * Show `hit`. `moments`: the same file's other matches ({start_s, end_s, snippet_html|snippet}), shown
   * on the timeline with the hit itself; `collection`: the collection the hit came from.
   */
  open(hit, moments, collection) {
    this.stop();
    const playable = hit.media_type === "video" || hit.media_type === "audio";
    this.title.textContent = isTimed(hit) ? `${fileName(hit.path)} at ${clock(hit.start_s)}` : fileName(hit.path);
    this.path.textContent = hit.path || "";
    setSnippet(this.snippet, hit);
    this.error.hidden = true;
    const src = streamUrl(hit, collection);
    if (playable) this.play({ ...hit, start_s: isTimed(hit) ? hit.start_s : 0 }, moments, src);
    else if (hit.media_type === "document") this.page(hit, src);
    else this.picture(hit, src);
    if (!this.dialog.open) this.dialog.showModal();
  }

  play(hit, moments, src) {
    const media = el(hit.media_type === "audio" ? "audio" : "video", {
      controls: true,
      preload: "metadata",
      playsinline: true,
      "aria-label": `${hit.media_type} ${fileName(hit.path)}`,
    });
    media.addEventListener(
      "loadedmetadata",
      () => {
        media.currentTime = hit.start_s; // the moment the words are spoken (or the chunk starts)
        this.drawTimeline(media, hit, moments);
        media.play().catch(() => {}); // autoplay may be refused; the controls are there
      },
      { once: true },
    );
    media.addEventListener("error", () => {
      const signed = new URL(src, window.location.origin).searchParams.has("sig");
      this.fail(
        this.api.key && !signed
          ? "This file cannot be played: the server did not give a signed link for it (API key set)."
          : "This file cannot be played (it may be gone, or its format is not one this browser plays).",
      );
    });
    media.src = src;
    this.media = media;
    this.stage.replaceChildren(media);
  }

  picture(hit, src) {
    const img = el("img", { alt: hit.path || "image", className: "full" });
    // The original when the browser can show it; the thumbnail otherwise (e.g. a camera's raw format).
    img.addEventListener("error", () => this.api.showImage(img, hit.thumbnail_url), { once: true });
    img.src = src;
    this.stage.replaceChildren(img);
    this.timeline.hidden = true;
  }

  /** A document's passage: its page (or card) as a picture, and the original opened at that page. */
  page(hit, src) {
    const img = el("img", { alt: `${fileName(hit.path)}, page ${hit.page ?? ""}`, className: "full" });
    this.api.showImage(img, hit.thumbnail_url);
    const at = Number.isInteger(hit.page) ? `#page=${hit.page}` : "";
    const where = Number.isInteger(hit.page) ? ` at page ${hit.page}` : "";
    const link = el("a", { href: src + at, target: "_blank", rel: "noopener", text: `Open the document${where}` });
    this.stage.replaceChildren(img, el("p", {}, link));
    this.timeline.hidden = true;
  }

  drawTimeline(media, hit, moments) {
    const all = [hit, ...moments.filter((m) => m.id !== hit.id && typeof m.start_s === "number")];
    const end = Math.max(...all.map((m) => m.end_s || m.start_s || 0), 0.001);
    const length = Number.isFinite(media.duration) && media.duration > 0 ? media.duration : end;
    const markers = all
      .sort((a, b) => a.start_s - b.start_s)
      .map((moment) => {
        const text = moment.snippet || textOf(moment.snippet_html) || "";
        const marker = el("button", {
          type: "button",
          className: "marker",
          title: `${clock(moment.start_s)} ${text}`.trim(),
          "aria-label": `Jump to ${clock(moment.start_s)}${text ? `: ${text}` : ""}`,
          "aria-current": moment === hit ? "true" : null,
          onclick: () => {
            media.currentTime = moment.start_s;
            media.play().catch(() => {});
            setSnippet(this.snippet, moment);
            for (const other of this.track.querySelectorAll(".marker")) other.removeAttribute("aria-current");
            marker.setAttribute("aria-current", "true");
          },
        });
        marker.dataset.startS = String(moment.start_s);
        marker.style.left = `${Math.min(100, (100 * moment.start_s) / length)}%`;
        return marker;
      });
    const head = el("div", { className: "playhead", "aria-hidden": "true" });
    media.addEventListener("timeupdate", () => {
      head.style.left = `${Math.min(100, (100 * media.currentTime) / length)}%`;
    });
    this.track.replaceChildren(head, ...markers);
    this.timeline.hidden = false;
  }

  fail(text) {
    this.error.textContent = text;
    this.error.hidden = false;
  }

  /** Stop playing and stop downloading (an <video> without a src lets its connection go). */
  stop() {
    if (this.media) {
      this.media.pause();
      this.media.removeAttribute("src");
      this.media.load();
      this.media = null;
    }
    this.stage.replaceChildren();
    this.track.replaceChildren();
    this.timeline.hidden = true;
  }
}

/** Plain text of the server's escaped snippet HTML (for labels): parsed inert, never inserted. */
function textOf(html) {
  if (!html) return "";
  return new DOMParser().parseFromString(html, "text/html").body.textContent || "";
}
