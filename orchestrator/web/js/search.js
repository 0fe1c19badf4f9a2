// The search page: query + filters -> GET /search, a grid of hits (thumbnail, time badge, highlighted
// snippet, people), "no good match" when the API says so, "More results" from next_offset.

import { clock, el, fileName, isTimed, message, setSnippet } from "./dom.js";

const PAGE = 24; // hits per page; the form's data-page-size overrides it (a test pages a small corpus)
const DAY_S = 86400;

/** A date input's value (YYYY-MM-DD) as seconds since the epoch, at the start of that day (UTC). */
function dayStart(value) {
  const ms = Date.parse(`${value}T00:00:00Z`);
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}

/**
 * Who a hit shows, as the person filter takes them (a name or an id): its people's names (`names`) when it
 * carries them, else its person ids. `names` is not paired with `people`, so when there are more people than
 * names (some unnamed) the ids follow the names: every one of them stays one click away.
 */
export function peopleOf(hit) {
  const ids = Array.isArray(hit.people) ? hit.people : [];
  const named = hit.person_names && typeof hit.person_names === "object" ? hit.person_names : null;
  if (named) return ids.map((id) => (typeof named[id] === "string" && named[id] ? named[id] : id));
  const names = Array.isArray(hit.names) ? hit.names.filter((n) => typeof n === "string" && n) : [];
  return names.length >= ids.length && names.length ? names : [...names, ...ids];
}

export class SearchPage {
  /** @param {HTMLElement} root @param {import("./api.js").Api} api @param {import("./player.js").Player} player */
  constructor(root, api, player) {
    this.api = api;
    this.player = player;
    this.form = root.querySelector("#search-form");
    this.input = root.querySelector("#q");
    this.filters = root.querySelector(".filters");
    this.status = root.querySelector("#search-status");
    this.noGoodMatch = root.querySelector("#no-good-match");
    this.results = root.querySelector("#results");
    this.more = root.querySelector("#more");
    this.hits = [];
    this.query = null;
    this.nextOffset = null;
    this.collection = null;
    this.inFlight = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.search();
    });
    this.more.addEventListener("click", () => this.load(this.query, this.nextOffset));
  }

  focus() {
    this.input.focus();
  }

  /** Search by one person: fill the filter, show the filters, and search again if there is a query. */
  filterByPerson(id) {
    this.form.elements.person.value = id;
    this.filters.open = true;
    if (this.input.value.trim()) this.search();
    else this.input.focus();
  }

  params() {
    const f = this.form.elements;
    const after = f.taken_after.value ? dayStart(f.taken_after.value) : undefined;
    const before = f.taken_before.value ? dayStart(f.taken_before.value) : undefined;
    return {
      q: this.input.value.trim(),
      collection: f.collection.value.trim(),
      limit: Number(this.form.dataset.pageSize) || PAGE,
      media_type: f.media_type.value,
      language: f.language.value,
      path_prefix: f.path_prefix.value.trim(),
      person: f.person.value.trim(),
      taken_after: after,
      taken_before: before === undefined ? undefined : before + DAY_S - 1, // the whole day named
      has_text: f.has_text.checked ? "true" : undefined,
      group_by: f.group_by.checked ? "media" : undefined,
    };
  }

  search() {
    const query = this.params();
    if (!query.q) {
      this.status.textContent = "Type what you are looking for first.";
      this.input.focus();
      return;
    }
    this.query = query;
    this.load(query, 0);
  }

  async load(query, offset) {
    if (!query) return;
    this.inFlight?.abort();
    const controller = new AbortController();
    this.inFlight = controller;
    const first = offset === 0;
    this.status.textContent = first ? "Searching…" : "Loading more…";
    this.results.setAttribute("aria-busy", "true");
    this.more.disabled = true;
    let body;
    try {
      body = await this.api.get("/search", first ? query : { ...query, offset }, controller.signal);
    } catch (error) {
      if (error.name === "AbortError") return;
      this.status.textContent = `Search failed: ${message(error)}`;
      if (first) this.clear();
      return;
    } finally {
      if (this.inFlight === controller) {
        this.inFlight = null;
        this.results.removeAttribute("aria-busy");
        this.more.disabled = false;
      }
    }
    if (first) this.clear();
    this.collection = body.collection || query.collection || null;
    const hits = Array.isArray(body.hits) ? body.hits : [];
    this.hits.push(...hits);
    this.results.append(...hits.map((hit) => this.card(hit)));
    if (body.no_good_match === true) {
      this.noGoodMatch.textContent =
        `No good match for “${query.q}”.` +
        (this.hits.length ? " These are the closest results, probably not what you are looking for." : "");
      this.noGoodMatch.hidden = false;
    }
    this.nextOffset = typeof body.next_offset === "number" ? body.next_offset : null;
    this.more.hidden = this.nextOffset === null;
    const n = this.hits.length;
    this.status.textContent =
      n === 0 ? `Nothing found for “${query.q}”.` : `${n} result${n === 1 ? "" : "s"} for “${query.q}”.`;
  }

  clear() {
    this.hits = [];
    this.results.replaceChildren();
    this.noGoodMatch.hidden = true;
    this.more.hidden = true;
    this.nextOffset = null;
  }

  /** The file's other matching moments: the API's `moments` (group by file), else the same file's hits. */
  momentsOf(hit) {
    if (Array.isArray(hit.moments)) return hit.moments;
    return this.hits.filter((h) => h !== hit && h.path === hit.path && isTimed(h));
  }

  card(hit) {
    const timed = isTimed(hit);
    const name = fileName(hit.path);
    const thumb = el("img", { alt: "", loading: "lazy", decoding: "async" });
    this.api.showImage(thumb, hit.thumbnail_url);
    const moments = Array.isArray(hit.moments) ? hit.moments.length : 0;
    const open = el(
      "button",
      {
        type: "button",
        className: "hit-open",
        "aria-label": `Open ${hit.media_type || "file"} ${name}${timed ? ` at ${clock(hit.start_s)}` : ""}`,
        onclick: () => this.player.open(hit, this.momentsOf(hit), this.collection),
      },
      thumb,
      timed ? el("span", { className: "badge time", text: clock(hit.start_s) }) : null,
      Number.isInteger(hit.page) ? el("span", { className: "badge time", text: `p. ${hit.page}` }) : null,
      el("span", { className: "badge kind", text: hit.media_type || "file" }),
      hit.language ? el("span", { className: "badge lang", text: hit.language.toUpperCase() }) : null,
      moments
        ? el("span", { className: "badge moments", text: `+${moments} moment${moments === 1 ? "" : "s"}` })
        : null,
    );
    const snippet = el("p", { className: "snippet" });
    setSnippet(snippet, hit);
    const people = peopleOf(hit).map((who) =>
      el(
        "li",
        {},
        el("button", {
          type: "button",
          className: "chip",
          text: who,
          "aria-label": `Only results with ${who}`,
          onclick: () => this.filterByPerson(who),
        }),
      ),
    );
    return el(
      "li",
      { className: "card hit", dataset: { id: hit.id, path: hit.path || "", startS: timed ? hit.start_s : "" } },
      open,
      el(
        "div",
        { className: "meta" },
        el("p", { className: "path", title: hit.path || "", text: name }),
        hit.heading ? el("p", { className: "hint", text: hit.heading }) : null,
        snippet,
        people.length ? el("ul", { className: "chips", "aria-label": "People" }, people) : null,
        hit.taken_at ? el("p", { className: "hint", text: `Taken ${hit.taken_at.replace("T", " ")}` }) : null,
      ),
    );
  }
}
