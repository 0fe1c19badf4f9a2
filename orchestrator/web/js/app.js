// The page's entry point: the API key field, the notice, and the three pages behind #search, #jobs and
// #people (the part after # picks the page; nothing is sent to the server for it).

import { Api } from "./api.js";
import { JobsPage } from "./jobs.js";
import { PeoplePage } from "./people.js";
import { Player } from "./player.js";
import { SearchPage } from "./search.js";

const PAGES = ["search", "jobs", "people"];
const TITLES = { search: "Search", jobs: "Jobs", people: "People" };

const api = new Api(window.sessionStorage);
const notice = document.querySelector("#notice");
const keyBox = document.querySelector("#key-box");
const keyForm = document.querySelector("#key-form");
const keyInput = document.querySelector("#api-key");
const keyState = document.querySelector("#key-state");

const player = new Player(document.querySelector("#player"), api);
const search = new SearchPage(document.querySelector("#page-search"), api, player);
const jobs = new JobsPage(document.querySelector("#page-jobs"), api);
const people = new PeoplePage(document.querySelector("#page-people"), api, player, (id) => {
  go("search");
  search.filterByPerson(id);
});
const pages = { search, jobs, people };
let current = null;

function go(page) {
  window.location.hash = page;
  route();
}

function route() {
  const wanted = window.location.hash.slice(1);
  const page = PAGES.includes(wanted) ? wanted : current || "search";
  if (page === current) return;
  if (current === "jobs") jobs.hide();
  current = page;
  for (const name of PAGES) {
    document.querySelector(`#page-${name}`).hidden = name !== page;
    const link = document.querySelector(`[data-nav="${name}"]`);
    if (name === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[page]} · Archivist`;
  if (page === "search") search.focus();
  else pages[page].show();
}

function showNotice(text) {
  notice.textContent = text;
  notice.hidden = false;
}

api.onUnauthorized(() => {
  showNotice(
    api.key
      ? "The API key is not accepted by the server. Enter the right one in the API key field."
      : "This server needs an API key. Enter it in the API key field above.",
  );
  keyInput.setAttribute("aria-invalid", "true");
  keyBox.open = true;
  keyInput.focus();
});

/** The key field shows the key in use; the closed box says whether one is set. */
function showKey() {
  keyInput.value = api.key;
  keyState.textContent = api.key ? "(set)" : "";
}

showKey();
keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  api.key = keyInput.value.trim();
  showKey();
  keyInput.removeAttribute("aria-invalid");
  notice.hidden = true;
  keyBox.open = false;
  check();
  if (current !== "search") pages[current].show();
});
document.querySelector("#key-forget").addEventListener("click", () => {
  api.key = "";
  showKey();
  keyInput.focus();
});

/** Ask a small protected route at once, so a missing or wrong key is said before anything else fails. */
async function check() {
  try {
    await api.get("/roots");
  } catch (error) {
    if (!error.unauthorized) showNotice(`The server cannot be used now: ${error.message}`);
  }
}

window.addEventListener("hashchange", route);
route();
check();
