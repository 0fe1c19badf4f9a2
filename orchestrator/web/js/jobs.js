// The jobs page: start an ingest under an allowed root, follow each active job live (its event stream,
// read with fetch: sse.js), pause / resume / cancel it, and list its failed files with their reasons.

import { duration, el, message } from "./dom.js";
import { readEvents } from "./sse.js";

const SHOWN_JOBS = 20;
const ERRORS_PAGE = 100;
const ACTIVE = new Set(["queued", "running", "paused"]);
// Each stage and the queue that feeds it (progress.queue_depths).
const STAGES = [
  ["scan", "Scan", null],
  ["prepare", "Prepare", "scan->prepare"],
  ["decode", "Decode", null],
  ["infer", "Analyse", "prepare->infer"],
  ["upsert", "Store", "infer->upsert"],
];

export class JobsPage {
  /** @param {HTMLElement} root @param {import("./api.js").Api} api */
  constructor(root, api) {
    this.api = api;
    this.form = root.querySelector("#job-form");
    this.rootSelect = root.querySelector("#job-root");
    this.formStatus = root.querySelector("#job-form-status");
    this.list = root.querySelector("#job-list");
    this.cards = new Map();
    this.visible = false;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
    root.querySelector("#jobs-refresh").addEventListener("click", () => this.refresh());
  }

  show() {
    this.visible = true;
    this.loadRoots();
    this.refresh();
  }

  /** Leaving the page stops the live streams (a stream costs the server a producer). */
  hide() {
    this.visible = false;
    for (const card of this.cards.values()) card.stop();
  }

  async loadRoots() {
    const chosen = this.rootSelect.value;
    try {
      const { roots } = await this.api.get("/roots");
      this.rootSelect.replaceChildren(...roots.map((r) => el("option", { value: r, text: r })));
      if (roots.includes(chosen)) this.rootSelect.value = chosen;
      if (roots.length === 0) {
        this.formStatus.textContent = "The server has no ALLOWED_ROOTS: nothing can be ingested.";
      }
    } catch (error) {
      this.formStatus.textContent = `Cannot list the allowed roots: ${message(error)}`;
    }
  }

  path() {
    const root = this.rootSelect.value.replace(/\/+$/, "");
    const sub = this.form.elements.subpath.value.trim().replace(/^\/+|\/+$/g, "");
    return sub ? `${root}/${sub}` : root || "/";
  }

  async start() {
    if (!this.rootSelect.value) {
      this.formStatus.textContent = "Choose an allowed root first.";
      this.rootSelect.focus();
      return;
    }
    const f = this.form.elements;
    const body = { path: this.path() };
    if (f.collection.value.trim()) body.collection = f.collection.value.trim();
    if (f.retry_failed.checked) body.options = { retry_failed: true };
    this.formStatus.textContent = "Starting…";
    try {
      const accepted = await this.api.post("/jobs", body);
      this.formStatus.textContent = `Started job ${accepted.job_id} on ${body.path}.`;
      const job = await this.api.get(`/jobs/${encodeURIComponent(accepted.job_id)}`);
      this.place(job, true);
    } catch (error) {
      this.formStatus.textContent = `Could not start: ${message(error)}`;
    }
  }

  async refresh() {
    try {
      const { jobs } = await this.api.get("/jobs");
      const recent = jobs
        .slice()
        .sort((a, b) => (b.created_at || 0) - (a.created_at || 0))
        .slice(0, SHOWN_JOBS);
      for (const job of recent.slice().reverse()) this.place(job, true);
      if (recent.length === 0 && this.cards.size === 0) {
        this.list.replaceChildren(el("li", { className: "hint", text: "No jobs yet." }));
      }
    } catch (error) {
      this.formStatus.textContent = `Cannot list jobs: ${message(error)}`;
    }
  }

  /** Show (or update) a job's card; an active job is followed live while the page is shown. */
  place(job, onTop) {
    let card = this.cards.get(job.job_id);
    if (card === undefined) {
      card = new JobCard(job, this.api);
      this.cards.set(job.job_id, card);
      this.list.querySelector(":scope > .hint")?.remove();
      if (onTop) this.list.prepend(card.node);
      else this.list.append(card.node);
    } else {
      card.update(job);
    }
    if (this.visible && ACTIVE.has(card.job.state)) card.watch();
  }
}

class JobCard {
  constructor(job, api) {
    this.api = api;
    this.job = {};
    this.watching = null;
    this.shownFailed = -1;
    const id = job.job_id;
    this.state = el("span", { className: "state" });
    this.bar = el("progress", { max: 1, value: 0, "aria-label": "Files done" });
    this.summary = el("p", { className: "hint summary" });
    this.note = el("p", { className: "warning", role: "status", hidden: true });
    this.stages = el("tbody");
    this.buttons = {
      pause: el("button", { type: "button", text: "Pause", onclick: () => this.act("pause") }),
      resume: el("button", { type: "button", text: "Resume", onclick: () => this.act("resume") }),
      cancel: el("button", { type: "button", text: "Cancel", onclick: () => this.act("cancel") }),
    };
    this.errorList = el("ol", { className: "errors" });
    this.moreErrors = el("button", {
      type: "button",
      text: "More",
      hidden: true,
      onclick: () => this.loadErrors(true),
    });
    this.failedLabel = el("span", { text: "Failed files" });
    this.failed = el(
      "details",
      { className: "failed", hidden: true, ontoggle: () => this.failed.open && this.loadErrors(false) },
      el("summary", {}, this.failedLabel),
      this.errorList,
      this.moreErrors,
    );
    this.actions = el("div", { className: "actions" }, Object.values(this.buttons));
    this.title = el("h3", { className: "job-title" });
    this.node = el(
      "li",
      { className: "card job", dataset: { jobId: id }, "aria-label": `Job ${id}` },
      el("div", { className: "job-head" }, this.title, this.state),
      el("p", { className: "hint", text: `Job ${id}` }),
      this.bar,
      this.summary,
      this.note,
      el(
        "table",
        { className: "stages" },
        el("caption", { className: "visually-hidden", text: "Progress per stage" }),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col", text: "Stage" }),
            el("th", { scope: "col", text: "Items" }),
            el("th", { scope: "col", text: "Busy" }),
            el("th", { scope: "col", text: "Waiting" }),
          ),
        ),
        this.stages,
      ),
      this.actions,
      this.failed,
    );
    this.update(job);
  }

  update(status) {
    Object.assign(this.job, status);
    const job = this.job;
    const active = ACTIVE.has(job.state);
    this.title.textContent = job.kind === "reanalyze" ? `Re-analysis of ${job.collection}` : job.path || "";
    if (job.collection && job.kind !== "reanalyze") this.title.textContent += ` → ${job.collection}`;
    this.state.textContent = job.finishing && active ? `${job.state} (finishing)` : job.state;
    this.state.className = `state state-${job.state}`;
    this.node.dataset.state = job.state;
    const c = job.counters || {};
    const discovered = c.discovered || 0;
    const done = c.done || 0;
    this.bar.max = Math.max(discovered, 1);
    this.bar.value = Math.min(done, this.bar.max);
    if (active && !job.scan_complete) this.bar.removeAttribute("value"); // total unknown: indeterminate
    const parts = [`${done} of ${discovered}${job.scan_complete ? "" : "+"} files done`];
    if (c.upserted) parts.push(`${c.upserted} points written`);
    if (c.unchanged) parts.push(`${c.unchanged} unchanged`);
    if (c.duplicates) parts.push(`${c.duplicates} duplicates`);
    if (c.skipped) parts.push(`${c.skipped} not media`);
    if (c.failed) parts.push(`${c.failed} failed`);
    if (active && job.files_per_s > 0) parts.push(`${job.files_per_s} files/s`);
    if (active && typeof job.eta_s === "number") parts.push(`about ${duration(job.eta_s)} left`);
    if (!active && typeof job.elapsed_s === "number") parts.push(`took ${duration(job.elapsed_s)}`);
    this.summary.textContent = parts.join(" · ");
    const note = job.error || (active ? job.waiting_for : null);
    this.note.textContent = note ? (job.error ? `Error: ${note}` : `Waiting: ${note}`) : "";
    this.note.hidden = !note;
    this.renderStages(job.stages || {}, job.queue_depths || {});
    const pausable = job.state === "queued" || job.state === "running";
    this.buttons.pause.disabled = !pausable || Boolean(job.finishing);
    this.buttons.resume.disabled = job.state !== "paused";
    this.buttons.cancel.disabled = !active;
    this.actions.hidden = !active; // an ended job has nothing left to control
    const failed = c.failed || 0;
    this.failed.hidden = failed === 0;
    this.failedLabel.textContent = `Failed files (${failed})`;
    if (this.failed.open && failed !== this.shownFailed) this.loadErrors(false);
  }

  renderStages(stages, queues) {
    const rows = STAGES.filter(([key]) => stages[key]).map(([key, label, queue]) =>
      el(
        "tr",
        {},
        el("th", { scope: "row", text: label }),
        el("td", { text: String(stages[key].items ?? 0) }),
        el("td", { text: duration(stages[key].busy_s) }),
        el("td", { text: queue && queue in queues ? String(queues[queue]) : "–" }),
      ),
    );
    this.stages.replaceChildren(...rows);
  }

  /** Follow the job's event stream until it ends, then read its final status once. */
  async watch() {
    if (this.watching) return;
    const controller = new AbortController();
    this.watching = controller;
    const id = encodeURIComponent(this.job.job_id);
    try {
      const response = await this.api.fetch(`/jobs/${id}/events`, {
        accept: "text/event-stream",
        signal: controller.signal,
      });
      await readEvents(response, ({ data }) => this.update(JSON.parse(data)));
      this.update(await this.api.get(`/jobs/${id}`));
    } catch (error) {
      if (error.name !== "AbortError") {
        this.note.textContent = `Live updates stopped: ${message(error)} (Refresh to try again)`;
        this.note.hidden = false;
      }
    } finally {
      if (this.watching === controller) this.watching = null;
    }
  }

  stop() {
    this.watching?.abort();
    this.watching = null;
  }

  async act(action) {
    const id = encodeURIComponent(this.job.job_id);
    for (const button of Object.values(this.buttons)) button.disabled = true;
    try {
      const answer = await this.api.post(`/jobs/${id}/${action}`);
      this.update({ state: answer.state });
    } catch (error) {
      this.note.textContent = `Could not ${action}: ${message(error)}`;
      this.note.hidden = false;
      this.update({});
    }
  }

  async loadErrors(more) {
    const id = encodeURIComponent(this.job.job_id);
    const offset = more ? this.errorList.children.length : 0;
    try {
      const body = await this.api.get(`/jobs/${id}/errors`, { offset, limit: ERRORS_PAGE });
      const items = body.errors.map((e) =>
        el(
          "li",
          {},
          el("span", { className: "path", text: e.path }),
          " ",
          el("span", { className: "reason", text: `${e.reason} (${e.stage})` }),
        ),
      );
      if (more) this.errorList.append(...items);
      else this.errorList.replaceChildren(...items);
      this.shownFailed = this.job.counters?.failed ?? body.total;
      this.moreErrors.hidden = this.errorList.children.length >= body.total;
    } catch (error) {
      this.errorList.replaceChildren(el("li", { className: "warning", text: message(error) }));
    }
  }
}
