// The people page: the face and voice clusters of a collection (GET /people), each with the thumbnail of
// where it is first seen. Naming and merging come later (the note on the page says so; no dead buttons).

import { clock, el, message } from "./dom.js";

export class PeoplePage {
  /**
   * @param {HTMLElement} root @param {import("./api.js").Api} api
   * @param {(id: string) => void} searchPerson what "Search with …" does (the search page's person filter)
   */
  constructor(root, api, searchPerson) {
    this.api = api;
    this.searchPerson = searchPerson;
    this.form = root.querySelector("#people-form");
    this.status = root.querySelector("#people-status");
    this.faces = root.querySelector("#faces");
    this.voices = root.querySelector("#voices");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.load();
    });
  }

  show() {
    this.load();
  }

  async load() {
    const collection = this.form.elements.collection.value.trim();
    this.status.textContent = "Loading…";
    let body;
    try {
      body = await this.api.get("/people", { collection });
    } catch (error) {
      this.status.textContent = error.status === 404 ? "No such collection yet." : message(error);
      this.faces.replaceChildren();
      this.voices.replaceChildren();
      return;
    }
    const people = body.people || [];
    const faces = people.filter((p) => p.kind === "face");
    const voices = people.filter((p) => p.kind === "voice");
    this.faces.replaceChildren(...faces.map((p) => this.card(p)));
    this.voices.replaceChildren(...voices.map((p) => this.card(p)));
    this.status.textContent = `${faces.length} face cluster${faces.length === 1 ? "" : "s"} and ${
      voices.length
    } voice cluster${voices.length === 1 ? "" : "s"} in ${body.collection}.`;
  }

  card(person) {
    const img = el("img", { alt: `Where ${person.id} is first seen`, loading: "lazy", decoding: "async" });
    this.api.showImage(img, person.example?.thumbnail_url);
    const links =
      person.kind === "face"
        ? (person.voices || []).length
          ? `Voice: ${person.voices.join(", ")}`
          : null
        : person.person
          ? `Face: ${person.person} (together ${person.linked}×)`
          : null;
    const first = person.example?.start_s;
    const what = person.kind === "face" ? "sightings" : "speaker turns";
    const chunks = `${person.chunks} chunk${person.chunks === 1 ? "" : "s"}`;
    const seen = `${person.count} ${what} in ${chunks}${typeof first === "number" ? `; first at ${clock(first)}` : ""}`;
    return el(
      "li",
      { className: `card person ${person.kind}`, dataset: { id: person.id } },
      el("div", { className: "thumb" }, img),
      el(
        "div",
        { className: "meta" },
        el("p", { className: "path", text: person.id }),
        el("p", { className: "hint", text: seen }),
        links ? el("p", { className: "hint", text: links }) : null,
        el("button", {
          type: "button",
          text: "Search with this filter",
          "aria-label": `Search only results with ${person.id}`,
          onclick: () => this.searchPerson(person.id),
        }),
      ),
    );
  }
}
