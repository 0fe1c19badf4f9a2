// How a person (GET /people's `Person`) is said on the page: its name, what it is (seen, heard), its
// counts, and how each of its voices came to it. Shared by the people list and one person's view.

import { el } from "./dom.js";

/** The name, or "Unnamed" (the id is always shown beside it). */
export function displayName(person) {
  return person.name || "Unnamed";
}

/** "Eileen (person-…)": a name that is unique on the page, for labels and messages. */
export function fullName(person) {
  return person.name ? `${person.name} (${person.id})` : `unnamed ${person.id}`;
}

/** Seconds as m:ss ("0:07", "12:30"); h:mm:ss from an hour on. */
export function minutes(seconds) {
  const whole = typeof seconds === "number" && Number.isFinite(seconds) && seconds > 0 ? Math.round(seconds) : 0;
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** "2 files · 5 chunks · speaking 1:05" */
export function counts(person) {
  const parts = [plural(person.media_count ?? 0, "file"), plural(person.chunk_count ?? 0, "chunk")];
  if (person.speaking_s > 0 || person.kind !== "face") parts.push(`speaking ${minutes(person.speaking_s)}`);
  return parts.join(" · ");
}

/** The "seen" / "heard" badges of a person's kind (face, voice, both). */
export function kindBadges(person) {
  const seen = person.kind === "face" || person.kind === "both";
  const heard = person.kind === "voice" || person.kind === "both";
  return el(
    "p",
    { className: "tags", "aria-label": seen && heard ? "Seen and heard" : seen ? "Seen" : "Heard" },
    seen ? el("span", { className: "tag seen", text: "seen" }) : null,
    heard ? el("span", { className: "tag heard", text: "heard" }) : null,
  );
}

/** How a voice joined its person: "linked automatically (confidence 87%)", "linked by you", or "". */
export function linkText(voice) {
  if (voice.linked_by === "user") return "linked by you";
  if (voice.linked_by === "auto") {
    const known = typeof voice.confidence === "number";
    return `linked automatically${known ? ` (confidence ${Math.round(voice.confidence * 100)}%)` : ""}`;
  }
  return "";
}

/** One line per voice: "voice-…: linked automatically (confidence 87%)". */
export function voiceList(person) {
  const voices = person.voices || [];
  if (!voices.length) return null;
  return el(
    "ul",
    { className: "voices", "aria-label": "Voices" },
    voices.map((voice) => {
      const how = linkText(voice);
      const text = how ? `${voice.cluster}: ${how}` : voice.cluster;
      return el("li", { dataset: { cluster: voice.cluster }, text });
    }),
  );
}
