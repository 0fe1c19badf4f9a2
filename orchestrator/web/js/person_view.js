// One person (GET /people/{id}): its face and voice clusters, to split chosen ones out (POST …/split),
// and its appearances: each file with the time ranges it is seen or heard in; a range opens the player
// there (a video or audio file starts at that moment, the file's other ranges marked on its timeline).

import { clock, el, fileName, message } from "./dom.js";
import { counts, fullName, linkText, minutes } from "./people_format.js";

export class PersonView {
  /**
   * @param {HTMLElement} root @param {import("./api.js").Api} api @param {import("./player.js").Player} player
   * @param {{say: (text: string) => void, changed: () => void, back: () => void}} page the people page
   */
  constructor(root, api, player, page) {
    this.root = root;
    this.api = api;
    this.player = player;
    this.page = page;
    this.title = root.querySelector("#person-title");
    this.summary = root.querySelector("#person-summary");
    this.splitForm = root.querySelector("#split-form");
    this.clusters = root.querySelector("#person-clusters");
    this.appearances = root.querySelector("#person-appearances");
    this.personId = null;
    this.collection = "";
    this.person = null;
    root.querySelector("#person-back").addEventListener("click", () => page.back());
    this.splitForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.split();
    });
  }

  params() {
    return { collection: this.collection };
  }

  async open(id, collection) {
    this.personId = id;
    this.collection = collection;
    this.person = null;
    this.title.textContent = id;
    this.summary.textContent = "Loading…";
    this.clusters.replaceChildren();
    this.appearances.replaceChildren();
    this.root.hidden = false;
    this.title.focus();
    await this.reload();
  }

  close() {
    this.personId = null;
    this.person = null;
    this.root.hidden = true;
  }

  async reload() {
    const id = this.personId;
    let person;
    try {
      person = await this.api.get(`/people/${encodeURIComponent(id)}`, this.params());
    } catch (error) {
      if (this.personId !== id) return;
      if (error.status === 404) {
        this.page.back();
        this.page.say(`${id} is no longer a person of its own (merged, or its media are gone).`);
      } else {
        this.summary.textContent = `Cannot show ${id}: ${message(error)}`;
      }
      return;
    }
    if (this.personId !== id) return; // another person was opened meanwhile
    this.render(person);
  }

  render(person) {
    this.person = person;
    this.title.textContent = person.name ? `${person.name} (${person.id})` : `Unnamed (${person.id})`;
    this.summary.textContent = counts(person);
    const faces = (person.faces || []).map((face) =>
      this.cluster(face.cluster, `Face ${face.cluster}`, `${face.count} sighting${face.count === 1 ? "" : "s"}`),
    );
    const voices = (person.voices || []).map((voice) => {
      const how = linkText(voice);
      const turns = `${voice.count} turn${voice.count === 1 ? "" : "s"}, speaking ${minutes(voice.speaking_s)}`;
      const note =
        voice.linked_by === "auto"
          ? "splitting it out means it is not this person: the link is not made again"
          : null;
      return this.cluster(voice.cluster, `Voice ${voice.cluster}`, [turns, how].filter(Boolean).join("; "), note);
    });
    this.clusters.replaceChildren(...faces, ...voices);
    const files = person.appearances || [];
    this.appearances.replaceChildren(...files.map((file) => this.appearance(file)));
    if (!files.length) this.appearances.append(el("li", { className: "hint", text: "No appearances stored." }));
  }

  cluster(id, title, detail, note = null) {
    return el(
      "li",
      { dataset: { cluster: id } },
      el(
        "label",
        { className: "check" },
        el("input", { type: "checkbox", name: "cluster", value: id }),
        el("span", {}, el("strong", { text: title }), ` — ${detail}`),
      ),
      note ? el("p", { className: "hint", text: note }) : null,
    );
  }

  async split() {
    const person = this.person;
    if (!person) return;
    const chosen = [...this.clusters.querySelectorAll("input[name=cluster]:checked")].map((i) => i.value);
    if (!chosen.length) {
      this.page.say("Select the faces or voices that are not this person first.");
      return;
    }
    this.page.say("Splitting…");
    let body;
    try {
      body = await this.api.post(
        `/people/${encodeURIComponent(person.id)}/split`,
        { clusters: chosen },
        this.params(),
      );
    } catch (error) {
      this.page.say(`Cannot split ${fullName(person)}: ${message(error)}`);
      return;
    }
    this.page.changed();
    await this.reload();
    const moved = chosen.join(", ");
    this.page.say(`Split ${moved} out of ${fullName(body.person || person)}: now ${fullName(body.new)}.`);
  }

  appearance(file) {
    const ranges = file.ranges || [];
    const hits = ranges.map((range) => ({
      id: range.chunk_id,
      path: file.path,
      media_type: file.media_type,
      start_s: range.start_s,
      end_s: range.end_s,
      thumbnail_url: range.thumbnail_url,
      stream_url: range.stream_url || file.stream_url, // signed, when the API gives one (else player.streamUrl)
      snippet: how(range),
    }));
    const name = fileName(file.path);
    return el(
      "li",
      { className: "appearance", dataset: { contentHash: file.content_hash || "" } },
      el("p", { className: "path", title: file.path || "", text: file.path || name }),
      el(
        "ul",
        { className: "ranges", "aria-label": `Where in ${name}` },
        hits.map((hit) => {
          const img = el("img", { alt: "", loading: "lazy", decoding: "async" });
          this.api.showImage(img, hit.thumbnail_url);
          const timed = file.media_type === "video" || file.media_type === "audio";
          const when = timed ? `${clock(hit.start_s)}–${clock(hit.end_s)}` : "";
          return el(
            "li",
            {},
            el(
              "button",
              {
                type: "button",
                className: "range",
                dataset: { startS: String(hit.start_s ?? "") },
                "aria-label": `Open ${name}${when ? ` at ${clock(hit.start_s)}` : ""} (${hit.snippet})`,
                onclick: () => this.player.open(hit, hits.filter((h) => h !== hit), this.collection),
              },
              img,
              el(
                "span",
                { className: "range-text" },
                when ? el("span", { text: when }) : null,
                el("span", { className: "hint", text: hit.snippet }),
              ),
            ),
          );
        }),
      ),
    );
  }
}

/** "seen and heard", "seen", "heard". */
function how(range) {
  if (range.seen && range.heard) return "seen and heard";
  return range.heard ? "heard" : "seen";
}
