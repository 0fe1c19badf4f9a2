// The people page: a collection's people (GET /people, a page at a time, filtered by name), each a card
// to rename (PATCH), select for a merge (POST …/merge into the one kept) or open (person_view.js: its
// faces and voices, split, appearances); Undo (POST /people/undo) takes back the last change. Every
// action's result or error is said in the page's one status line (aria-live).

import { el, message } from "./dom.js";
import { counts, displayName, fullName, kindBadges, voiceList } from "./people_format.js";
import { PersonView } from "./person_view.js";

const PAGE = 50; // people per page; the form's data-page-size overrides it (a test pages a small set)
const UNDONE = { merge: "the merge into", split: "the split of", rename: "the renaming of" };

export class PeoplePage {
  /**
   * @param {HTMLElement} root @param {import("./api.js").Api} api
   * @param {import("./player.js").Player} player opens an appearance at its time
   * @param {(person: string) => void} searchPerson what "Search with this person" does (the search filter)
   */
  constructor(root, api, player, searchPerson) {
    this.api = api;
    this.searchPerson = searchPerson;
    this.form = root.querySelector("#people-form");
    this.status = root.querySelector("#people-status");
    this.listView = root.querySelector("#people-list-view");
    this.list = root.querySelector("#people-list");
    this.prev = root.querySelector("#people-prev");
    this.next = root.querySelector("#people-next");
    this.range = root.querySelector("#people-range");
    this.undoButton = root.querySelector("#people-undo");
    this.mergeOpen = root.querySelector("#merge-open");
    this.selectedText = root.querySelector("#people-selected");
    this.mergePanel = root.querySelector("#merge-panel");
    this.mergeChoices = root.querySelector("#merge-choices");
    this.view = new PersonView(root.querySelector("#person-view"), api, player, {
      say: (text) => this.say(text),
      changed: () => this.changed(),
      back: () => this.closePerson(),
    });
    this.selected = new Map(); // id -> Person: kept across pages, for a merge
    this.people = []; // the page shown
    this.shownCollection = null;
    this.offset = 0;
    this.nextOffset = null;
    this.inFlight = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.closePerson(false);
      this.load(0);
    });
    this.prev.addEventListener("click", () => this.load(Math.max(0, this.offset - this.pageSize())));
    this.next.addEventListener("click", () => this.load(this.nextOffset));
    this.undoButton.addEventListener("click", () => this.undo());
    this.mergeOpen.addEventListener("click", () => this.openMerge());
    root.querySelector("#merge-cancel").addEventListener("click", () => this.closeMerge());
    this.mergePanel.addEventListener("submit", (event) => {
      event.preventDefault();
      this.merge();
    });
  }

  show() {
    this.undoButton.disabled = false; // another tab may have changed something since "nothing to undo"
    if (this.view.personId) this.view.reload();
    else this.load(this.offset);
  }

  get collection() {
    return this.form.elements.collection.value.trim();
  }

  pageSize() {
    return Number(this.form.dataset.pageSize) || PAGE;
  }

  /** The collection as a query parameter of every call (absent: the server's default). */
  params(extra = {}) {
    return { collection: this.collection, ...extra };
  }

  say(text) {
    this.status.textContent = text;
  }

  async load(offset) {
    this.inFlight?.abort();
    const controller = new AbortController();
    this.inFlight = controller;
    this.list.setAttribute("aria-busy", "true");
    this.list.inert = true; // the cards shown are about to be replaced: a name typed into one would be lost
    const name = this.form.elements.name.value.trim();
    let body;
    try {
      const params = this.params({ limit: this.pageSize(), offset, name });
      body = await this.api.get("/people", params, controller.signal);
    } catch (error) {
      if (error.name === "AbortError") return;
      this.say(error.status === 404 ? "No such collection yet." : `Cannot list people: ${message(error)}`);
      this.list.replaceChildren();
      this.pager(0, 0, null, 0);
      return;
    } finally {
      if (this.inFlight === controller) {
        this.inFlight = null;
        this.list.removeAttribute("aria-busy");
        this.list.inert = false;
      }
    }
    const people = Array.isArray(body.people) ? body.people : [];
    this.people = people;
    if (people.length === 0 && offset > 0) return this.load(0); // the page emptied (a merge): start over
    if (body.collection !== this.shownCollection) this.selected.clear(); // a merge stays in one collection
    this.shownCollection = body.collection;
    for (const person of people) if (this.selected.has(person.id)) this.selected.set(person.id, person);
    this.list.replaceChildren(...people.map((p) => this.card(p)));
    this.pager(offset, people.length, body.next_offset, body.total);
    if (!people.length) {
      this.say(name ? `No one’s name contains “${name}”.` : "No people in this collection yet.");
    }
    this.updateSelection();
    return body;
  }

  pager(offset, shown, nextOffset, total) {
    this.offset = offset;
    this.nextOffset = typeof nextOffset === "number" ? nextOffset : null;
    this.prev.hidden = offset === 0;
    this.next.hidden = this.nextOffset === null;
    const of = typeof total === "number" ? ` of ${total}` : "";
    this.range.textContent = shown ? `${offset + 1}–${offset + shown}${of}` : "";
  }

  card(person) {
    const label = fullName(person);
    const thumb = person.thumbnail_url ?? person.example?.thumbnail_url;
    let picture;
    if (thumb) {
      picture = el("img", { alt: `Where ${label} is seen`, loading: "lazy", decoding: "async" });
      this.api.showImage(picture, thumb);
    } else {
      const text = person.kind === "voice" ? "Voice only" : "No picture";
      picture = el("span", { className: "no-thumb", text });
    }
    const select = el("input", {
      type: "checkbox",
      checked: this.selected.has(person.id),
      "aria-label": `Select ${label}`,
      onchange: (event) => {
        if (event.target.checked) this.selected.set(person.id, person);
        else this.selected.delete(person.id);
        this.updateSelection();
      },
    });
    const input = el("input", { name: "name", value: person.name || "", maxlength: "200", autocomplete: "off" });
    const rename = el(
      "form",
      {
        className: "rename",
        onsubmit: (event) => {
          event.preventDefault();
          this.rename(person, input.value);
        },
      },
      el("label", {}, "Name", input),
      el("button", { type: "submit", text: "Save", "aria-label": `Save the name of ${label}` }),
    );
    return el(
      "li",
      { className: `card person ${person.kind}`, dataset: { id: person.id, kind: person.kind } },
      el("div", { className: "thumb" }, picture),
      el(
        "div",
        { className: "meta" },
        el("div", { className: "person-head" }, el("h3", { className: "name", text: displayName(person) }), select),
        el("p", { className: "hint person-id", text: person.id }),
        kindBadges(person),
        el("p", { className: "hint counts", text: counts(person) }),
        voiceList(person),
        rename,
        el(
          "div",
          { className: "actions" },
          el("button", {
            type: "button",
            text: "Open",
            "aria-label": `Open ${label}: faces, voices and appearances`,
            onclick: () => this.openPerson(person.id),
          }),
          el("button", {
            type: "button",
            text: "Search with this person",
            "aria-label": `Search only results with ${label}`,
            onclick: () => this.searchPerson(person.id),
          }),
        ),
      ),
    );
  }

  async rename(person, value) {
    const name = value.trim() || null;
    if (name === (person.name || null)) {
      this.say(name ? `${fullName(person)} already has that name.` : `${person.id} has no name to clear.`);
      return;
    }
    this.say("Saving…");
    let updated;
    try {
      updated = await this.api.patch(`/people/${encodeURIComponent(person.id)}`, { name }, this.params());
    } catch (error) {
      this.say(`Cannot rename ${fullName(person)}: ${message(error)}`);
      return;
    }
    if (this.selected.has(updated.id)) this.selected.set(updated.id, updated);
    const old = this.list.querySelector(`li[data-id="${CSS.escape(person.id)}"]`);
    if (old) {
      const card = this.card(updated);
      old.replaceWith(card);
      card.querySelector("input[name=name]").focus();
    }
    this.updateSelection();
    this.say(name ? `Named ${updated.id} “${updated.name}”.` : `Cleared the name of ${updated.id}.`);
    this.changed();
  }

  updateSelection() {
    const n = this.selected.size;
    this.mergeOpen.disabled = n < 2;
    this.selectedText.textContent = n ? `${n} selected${n < 2 ? ": select one more to merge" : ""}` : "";
    if (n < 2) this.closeMerge();
    else if (!this.mergePanel.hidden) this.fillMergeChoices();
  }

  openMerge() {
    this.fillMergeChoices();
    this.mergePanel.hidden = false;
    this.mergeOpen.setAttribute("aria-expanded", "true");
    this.mergeChoices.querySelector("input:checked")?.focus();
  }

  closeMerge() {
    this.mergePanel.hidden = true;
    this.mergeOpen.setAttribute("aria-expanded", "false");
  }

  /** One radio per selected person; the first named one (else the first) is proposed as the one kept. */
  fillMergeChoices() {
    const chosen = this.mergePanel.elements.keep?.value;
    const people = [...this.selected.values()];
    const proposed = people.some((p) => p.id === chosen) ? chosen : (people.find((p) => p.name) || people[0]).id;
    this.mergeChoices.replaceChildren(
      ...people.map((person) =>
        el(
          "label",
          { className: "check" },
          el("input", { type: "radio", name: "keep", value: person.id, checked: person.id === proposed }),
          `${displayName(person)} (${person.id})`,
        ),
      ),
    );
  }

  async merge() {
    const keep = this.mergePanel.elements.keep?.value;
    const kept = this.selected.get(keep);
    const others = [...this.selected.keys()].filter((id) => id !== keep);
    if (!kept || !others.length) return;
    this.say("Merging…");
    let merged;
    try {
      merged = await this.api.post(`/people/${encodeURIComponent(keep)}/merge`, { people: others }, this.params());
    } catch (error) {
      this.say(`Cannot merge: ${message(error)}`);
      return;
    }
    this.selected.clear();
    this.closeMerge();
    await this.load(this.offset);
    const n = others.length;
    this.say(`Merged ${n} ${n === 1 ? "person" : "people"} into ${fullName(merged)}.`);
    this.changed();
  }

  /** Something changed here: there is something to undo again. */
  changed() {
    this.undoButton.disabled = false;
  }

  async undo() {
    this.undoButton.disabled = true;
    this.say("Undoing…");
    let body;
    try {
      body = await this.api.post("/people/undo", undefined, this.params());
    } catch (error) {
      if (error.status === 409) {
        this.say("Nothing to undo: no merge, split or rename is left to take back.");
        return; // stays disabled until the next change
      }
      this.undoButton.disabled = false;
      this.say(`Cannot undo: ${message(error)}`);
      return;
    }
    this.undoButton.disabled = false;
    const { action, person } = body.undone || {};
    const what = UNDONE[action] || `the last change (${action}) of`;
    if (this.view.personId) await this.view.reload();
    else await this.load(this.offset);
    const shown = [this.view.person, ...this.people].find((p) => p && p.id === person);
    this.say(`Undone: ${what} ${shown ? fullName(shown) : person}.`);
  }

  openPerson(id) {
    this.closeMerge();
    this.listView.hidden = true;
    this.mergeOpen.hidden = this.selectedText.hidden = true; // a merge picks people from the list
    this.view.open(id, this.collection);
  }

  /** Back from one person to the list (`reload`: read the list again, it may have changed meanwhile). */
  closePerson(reload = true) {
    if (!this.view.personId) return;
    this.view.close();
    this.listView.hidden = false;
    this.mergeOpen.hidden = this.selectedText.hidden = false;
    if (reload) this.load(this.offset);
  }
}
