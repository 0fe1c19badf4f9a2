"""The web UI in a real headless Chromium (tests/support/browser.py) against a real orchestrator: the real
ML service (behind a gate the jobs test can hold), embedded Qdrant Edge, real files made here.

One orchestrator, one ingest and one browser for the module (a fresh browser context, so fresh
sessionStorage, per test); one PNG per step under ARCHIVIST_TEST_ARTIFACTS (default `.artifacts/`).
Every wait is bounded (Playwright timeouts, `_until`).
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from PIL import Image
from playwright.async_api import Browser, Page, Response, ViewportSize, expect

from scripts.make_samples import skimage_photo, text_image
from scripts.talk_video import TalkManifest, make_talk_video
from tests.support.app_factory import make_settings
from tests.support.browser import (
    DESKTOP,
    PHONE,
    Screenshots,
    artifacts_dir,
    running_browser,
    watch_console,
)
from tests.support.ml_gate import MLGate, ml_gate
from tests.support.ml_server import MLService
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator
from tests.support.polling import until

pytestmark = pytest.mark.slow

WAIT_MS = 20_000  # any one thing the page is waited for
KEY = "ui-test-key"
INVOICE = "INVOICE 2024-0173 TOTAL DUE 418 EUR"
FIRST_THUMBNAIL_SHOWN = "() => document.querySelector('#results > li img')?.naturalWidth > 0"
PEOPLE_SHOWN = (
    "() => [...document.querySelectorAll('#people-list img')].every(i => i.complete && i.naturalWidth > 0)"
)
# A real photograph of a second real person (the astronaut is the first), shipped inside matplotlib.
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg"


@dataclass(frozen=True, slots=True)
class Corpus:
    root: Path  # ALLOWED_ROOTS
    media: Path  # what the module's job ingests
    slow: Path  # what the jobs test starts from the page (and cancels)
    programme: Path
    talk: TalkManifest
    invoice: Path
    corrupt: Path
    astronaut: Path  # two photographs of two different real people (the people test)
    grace: Path


class Hold:
    """While `on`, the gate holds every inference request (a job stays running, deterministically)."""

    on = False


@dataclass(slots=True)
class UI:
    orch: RunningOrchestrator
    browser: Browser
    gate: MLGate
    hold: Hold
    corpus: Corpus
    job_id: str  # the module's ingest of corpus.media


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("web").resolve()
    media = root / "media"
    talk = make_talk_video(media / "news/programme.mp4", n_phrases=2)
    invoice = media / "documents/invoice.png"
    invoice.parent.mkdir(parents=True)
    text_image(INVOICE).save(invoice)
    corrupt = media / "broken/corrupt.jpg"
    corrupt.parent.mkdir()
    jpeg = io.BytesIO()
    skimage_photo("astronaut").save(jpeg, format="JPEG", quality=90)
    corrupt.write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 3])  # a truncated JPEG
    slow = root / "slow"
    slow.mkdir()
    text_image("A FOLDER THAT IS NEVER FINISHED").save(slow / "sign.png")
    portraits = media / "portraits"
    portraits.mkdir()
    astronaut, grace = portraits / "astronaut.jpg", portraits / "grace_hopper.jpg"
    skimage_photo("astronaut").save(astronaut, format="JPEG", quality=90)
    with Image.open(GRACE_HOPPER) as photo:
        # Her head only: OCR reads the uniform's insignia as "**K X1", text a nonsense query matches.
        photo.convert("RGB").crop((128, 20, 384, 276)).save(grace, format="JPEG", quality=90)
    return Corpus(root, media, slow, Path(talk.path), talk, invoice, corrupt, astronaut, grace)


@pytest.fixture(scope="module")
async def ui(
    tmp_path_factory: pytest.TempPathFactory, ml_service: MLService, corpus: Corpus
) -> AsyncIterator[UI]:
    hold = Hold()
    with ml_gate(ml_service.url, max_hold_s=60.0, passes=lambda _body: not hold.on) as gate:
        settings = make_settings(
            tmp_path_factory.mktemp("web-data") / "data",
            gate.url,
            [corpus.root],
            chunk_seconds=4.0,  # a short programme still has two chunks: a timeline with two moments
            min_chunk_seconds=2.0,
        )
        async with running_orchestrator(settings) as orch:
            created = await orch.client.post("/jobs", json={"path": str(corpus.media)})
            assert created.status_code == 202, created.text
            job = await orch.wait_job(created.json()["job_id"], timeout_s=240)
            assert job["state"] == "completed", job
            async with running_browser() as browser:
                yield UI(orch, browser, gate, hold, corpus, str(job["job_id"]))


@asynccontextmanager
async def opened(
    ui: UI, path: str = "/", viewport: ViewportSize = DESKTOP
) -> AsyncIterator[tuple[Page, list[str]]]:
    """A page in a fresh context (its own sessionStorage), the console problems it reports, closed after."""
    context = await ui.browser.new_context(viewport=viewport, base_url=ui.orch.url)
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        problems = watch_console(page)
        await page.goto(path)
        yield page, problems
    finally:
        await context.close()


@contextmanager
def api_key_required(ui: UI) -> Iterator[None]:
    """API_KEY set on the running orchestrator (read per request: the routes' check and the URL
    signatures), so the key flow runs on the module's one orchestrator and its one ingest."""
    settings = ui.orch.app.state.settings
    settings.api_key = KEY
    try:
        yield
    finally:
        settings.api_key = None


def _is_search(response: Response) -> bool:
    return "/search?" in response.url and response.request.method == "GET"


async def _search(page: Page, query: str) -> dict[str, Any]:
    """Type the query, press Enter, return the answer the page received."""
    await page.get_by_role("searchbox", name="Search words, speech, text in images").fill(query)
    async with page.expect_response(_is_search) as answer:
        await page.keyboard.press("Enter")
    response = await answer.value
    assert response.ok, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _no_horizontal_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths[0]} px wide in {widths[1]} px"


async def _playing_at(page: Page, start_s: float, opened_there: bool = True) -> None:
    """The player's media element stands within 1 s of `start_s` with that frame decoded, and got there by
    seeking: when just opened (`opened_there`), nothing before `start_s` - 1 was played (a player that
    started at 0 and played on would pass through start_s too); after a seek, a played range starts there."""
    await page.wait_for_function(
        """([target, openedThere]) => {
            const media = document.querySelector('#player video, #player audio');
            if (media === null || media.readyState < 2 || media.seeking) return false;
            if (Math.abs(media.currentTime - target) >= 1) return false;
            const starts = Array.from({ length: media.played.length }, (_, i) => media.played.start(i));
            return openedThere
                ? starts.every((s) => s >= target - 1)
                : starts.length === 0 || starts.some((s) => Math.abs(s - target) < 1);
        }""",
        arg=[start_s, opened_there],
        timeout=WAIT_MS,
    )


async def test_search_opens_the_player_at_the_spoken_moment(ui: UI) -> None:
    shots = Screenshots("test_search_opens_the_player_at_the_spoken_moment")
    phrase = ui.corpus.talk.phrases[1]
    async with opened(ui) as (page, problems):
        await shots.take(page, "empty")
        body = await _search(page, phrase.text)
        top = body["hits"][0]
        assert top["path"] == str(ui.corpus.programme), top
        assert abs(top["start_s"] - phrase.start_s) <= 2.0, (phrase, top["start_s"])
        cards = page.locator("#results > li")
        await expect(cards).to_have_count(len(body["hits"]))
        first = cards.first
        await expect(first).to_have_attribute("data-id", top["id"])
        await expect(first.locator(".badge.time")).to_have_text(re.compile(r"^\d\d:\d\d$"))
        await expect(first.locator(".snippet mark").first).to_be_visible()  # the matched words, marked
        await page.wait_for_function(FIRST_THUMBNAIL_SHOWN)
        await shots.take(page, "results")

        await first.get_by_role("button", name=re.compile(r"^Open video")).click()
        video = page.locator("#player video")
        await expect(video).to_be_visible()
        await _playing_at(page, top["start_s"])
        src = await video.evaluate("v => v.currentSrc")
        assert src.endswith(top["stream_url"]), (src, top["stream_url"])
        await shots.take(page, "player", full_page=False)

        # The timeline marks the hit and the file's other matching moments; a marker seeks there.
        moments = [m for m in top.get("moments") or [] if m["id"] != top["id"]]
        markers = page.locator("#timeline .marker")
        await expect(markers).to_have_count(1 + len(moments))
        assert moments, "the programme's other chunks should be among its moments"
        other = await page.locator("#timeline .marker:not([aria-current])").first.get_attribute(
            "data-start-s"
        )
        assert other is not None and float(other) in [m["start_s"] for m in moments], other
        marker = page.locator(f'#timeline .marker[data-start-s="{other}"]')
        other_start_s = float(other)
        await marker.focus()
        await page.keyboard.press("Enter")  # keyboard: a marker is a real button
        await _playing_at(page, other_start_s, opened_there=False)
        await expect(marker).to_have_attribute("aria-current", "true")
        await shots.take(page, "seeked", full_page=False)

        await page.keyboard.press("Escape")
        await expect(page.locator("#player")).to_be_hidden()
        await expect(video).to_have_count(0)  # stopped and gone, not playing on behind the page
        assert problems == []


async def test_more_results_follow_next_offset(ui: UI) -> None:
    shots = Screenshots("test_more_results_follow_next_offset")
    async with opened(ui) as (page, problems):
        await page.evaluate("() => { document.querySelector('#search-form').dataset.pageSize = '1'; }")
        await page.get_by_text("Filters").click()
        await page.get_by_label("Group by file").uncheck()  # chunks, not files: more than one page
        first = await _search(page, "presenter reports the news")
        assert len(first["hits"]) == 1 and first["next_offset"] == 1, first
        more = page.get_by_role("button", name="More results")
        await expect(more).to_be_visible()
        await shots.take(page, "first-page")
        async with page.expect_response(_is_search) as answer:
            await more.click()
        second = await (await answer.value).json()
        assert "offset=1" in (await answer.value).url
        ids = [h["id"] for h in first["hits"] + second["hits"]]
        cards = page.locator("#results > li")
        await expect(cards).to_have_count(len(ids))
        assert [await c.get_attribute("data-id") for c in await cards.all()] == ids
        await shots.take(page, "second-page")
        assert problems == []


async def test_no_good_match_is_said(ui: UI) -> None:
    shots = Screenshots("test_no_good_match_is_said")
    async with opened(ui) as (page, problems):
        body = await _search(page, "zqxv wplk")
        assert body["no_good_match"] is True, body
        notice = page.locator("#no-good-match")
        await expect(notice).to_be_visible()
        await expect(notice).to_contain_text("No good match for “zqxv wplk”")
        await shots.take(page, "no-good-match")
        assert problems == []


async def test_start_pause_resume_and_cancel_a_job(ui: UI) -> None:
    shots = Screenshots("test_start_pause_resume_and_cancel_a_job")
    async with opened(ui, "/#jobs") as (page, problems):
        await expect(page.get_by_label("Allowed root")).to_have_value(str(ui.corpus.root))
        await page.get_by_label("Folder inside it").fill("slow")
        await shots.take(page, "form")
        ui.hold.on = True  # the job's inference waits at the gate: it cannot finish before the cancel
        try:
            await page.get_by_role("button", name="Start ingest").click()
            card = page.locator("li.job").filter(has_text=str(ui.corpus.slow))
            await expect(card).to_have_attribute("data-state", "running")
            # Live progress from the event stream: the scan found the folder's one file.
            await expect(card.locator(".summary")).to_contain_text("0 of 1 files done")
            await expect(card.locator("table.stages tbody tr")).to_have_count(5)
            await until(lambda: ui.gate.held >= 1, "the job's inference request reached the gate", 30)
            await shots.take(page, "running")
            await card.get_by_role("button", name="Pause").click()
            await expect(card).to_have_attribute("data-state", "paused")
            await expect(card.get_by_role("button", name="Resume")).to_be_enabled()
            await shots.take(page, "paused")
            await card.get_by_role("button", name="Resume").click()
            await expect(card).to_have_attribute("data-state", "running")
            await card.get_by_role("button", name="Cancel").click()
            await expect(card).to_have_attribute("data-state", "cancelled")
            await expect(card.locator(".actions")).to_be_hidden()  # an ended job has nothing to control
            await shots.take(page, "cancelled")
        finally:
            ui.hold.on = False
        job_id = await card.get_attribute("data-job-id")
        status = (await ui.orch.client.get(f"/jobs/{job_id}")).json()
        assert status["state"] == "cancelled" and status["path"] == str(ui.corpus.slow), status
        assert problems == []


async def test_failed_files_are_listed_with_their_reason(ui: UI) -> None:
    shots = Screenshots("test_failed_files_are_listed_with_their_reason")
    errors = (await ui.orch.client.get(f"/jobs/{ui.job_id}/errors")).json()["errors"]
    assert [e["path"] for e in errors] == [str(ui.corpus.corrupt)], errors
    async with opened(ui, "/#jobs") as (page, problems):
        card = page.locator(f'li.job[data-job-id="{ui.job_id}"]')
        await expect(card).to_have_attribute("data-state", "completed")
        failed = card.locator("details.failed > summary")
        await expect(failed).to_have_text("Failed files (1)")
        await failed.focus()
        await page.keyboard.press("Enter")  # a <details> summary opens from the keyboard
        item = card.locator(".errors li")
        await expect(item).to_have_count(1)
        await expect(item.locator(".path")).to_have_text(str(ui.corpus.corrupt))
        await expect(item.locator(".reason")).to_contain_text(errors[0]["reason"])
        await shots.take(page, "failed-files")
        assert problems == []


async def _person_in(ui: UI, people: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    """The person (GET /people/{id}, with appearances) of the one face in the photograph at `path`."""
    found = []
    for person in people:
        detail = await ui.orch.client.get(f"/people/{person['id']}")
        assert detail.status_code == 200, detail.text
        body: dict[str, Any] = detail.json()
        if any(a["path"] == str(path) for a in body["appearances"]):
            found.append(body)
    assert len(found) == 1, (path, found)
    return found[0]


async def test_people_page_names_merges_splits_and_undoes(ui: UI) -> None:
    shots = Screenshots("test_people_page_names_merges_splits_and_undoes")
    listed = (await ui.orch.client.get("/people", params={"limit": 200})).json()
    people = listed["people"]
    assert listed["total"] == len(people) and listed["next_offset"] is None, listed
    grace = await _person_in(ui, people, ui.corpus.grace)
    astronaut = await _person_in(ui, people, ui.corpus.astronaut)
    assert grace["id"] != astronaut["id"] and grace["name"] is None, (grace, astronaut)
    assert len(people) >= 3, people  # and the programme's other presenter: two pages of two
    async with opened(ui, "/#people") as (page, problems):
        cards = page.locator("#people-list > li")
        status = page.locator("#people-status")
        undo = page.get_by_role("button", name="Undo last change")

        def card(person: dict[str, Any]) -> Any:
            return page.locator(f'#people-list > li[data-id="{person["id"]}"]')

        await expect(cards).to_have_count(len(people))
        await expect(cards.first).to_have_attribute("data-id", people[0]["id"])  # the API's order
        await page.wait_for_function(PEOPLE_SHOWN)
        await expect(card(grace).locator(".name")).to_have_text("Unnamed")
        await expect(card(grace).locator(".person-id")).to_have_text(grace["id"])
        await expect(card(grace).locator(".tag.seen")).to_have_text("seen")
        await expect(card(grace).locator(".counts")).to_have_text(re.compile(r"^1 file · 1 chunk"))
        # A voice heard while one face is alone on screen is linked to that face's person, automatically.
        linked = [(p, v) for p in people for v in p["voices"] if v["linked_by"] == "auto"]
        assert linked, people
        for person, voice in linked:
            percent = round(voice["confidence"] * 100)
            await expect(card(person).locator(f'.voices li[data-cluster="{voice["cluster"]}"]')).to_have_text(
                f"{voice['cluster']}: linked automatically (confidence {percent}%)"
            )
        await shots.take(page, "people")
        # Opened, such a person says what splitting its automatic voice out means.
        person, voice = linked[0]
        view = page.locator("#person-view")
        await card(person).get_by_role("button", name=re.compile("^Open")).click()
        note = view.locator(f'#person-clusters > li[data-cluster="{voice["cluster"]}"] .hint')
        await expect(note).to_contain_text("it is not this person")
        await shots.take(page, "person")
        # A range of the programme opens the player at that moment.
        opened_person = (await ui.orch.client.get(f"/people/{person['id']}")).json()
        programme = next(a for a in opened_person["appearances"] if a["path"] == str(ui.corpus.programme))
        last = len(programme["ranges"]) - 1
        ranges = view.locator(".appearance").filter(has_text=str(ui.corpus.programme)).locator(".range")
        await expect(ranges).to_have_count(len(programme["ranges"]))
        await ranges.nth(last).click()
        await _playing_at(page, programme["ranges"][last]["start_s"])
        await page.keyboard.press("Escape")
        await expect(page.locator("#player video")).to_have_count(0)
        await view.get_by_role("button", name="Back to all people").click()
        await expect(cards).to_have_count(len(people))
        # The list is read again: its cards take no input until the new ones are shown (inert).
        await expect(page.locator("#people-list")).not_to_have_attribute("aria-busy", "true")

        # Rename from the keyboard: type the name, Enter saves it (PATCH).
        await card(grace).get_by_label("Name", exact=True).fill("Eileen")
        await page.keyboard.press("Enter")
        await expect(card(grace).locator(".name")).to_have_text("Eileen")
        await expect(status).to_have_text(f"Named {grace['id']} “Eileen”.")
        named = (await ui.orch.client.get("/people", params={"name": "eile"})).json()["people"]
        assert [(p["id"], p["name"]) for p in named] == [(grace["id"], "Eileen")], named
        # The name filter, then pages of two (named first: Eileen opens the first page).
        await page.get_by_label("Name contains").fill("EILE")
        await page.keyboard.press("Enter")
        await expect(cards).to_have_count(1)
        await expect(cards.first).to_have_attribute("data-id", grace["id"])
        await page.get_by_label("Name contains").fill("")
        await page.evaluate("() => { document.querySelector('#people-form').dataset.pageSize = '2'; }")
        await page.get_by_role("button", name="Show").click()
        await expect(page.locator("#people-range")).to_have_text(f"1–2 of {len(people)}")
        await expect(cards.first).to_have_attribute("data-id", grace["id"])
        await page.get_by_role("button", name="Next").click()
        await expect(page.locator("#people-range")).to_have_text(f"3–{min(4, len(people))} of {len(people)}")
        await page.evaluate("() => { delete document.querySelector('#people-form').dataset.pageSize; }")
        await page.get_by_role("button", name="Show").click()
        await expect(cards).to_have_count(len(people))

        # Merge: select both photographs' people, keep Eileen.
        await card(grace).get_by_role("checkbox").check()
        await card(astronaut).get_by_role("checkbox").check()
        await page.get_by_role("button", name="Merge into…").click()
        await page.get_by_role("radio", name=f"Eileen ({grace['id']})").check()
        await shots.take(page, "merge-choice")
        await page.get_by_role("button", name="Merge", exact=True).click()
        await expect(status).to_have_text(f"Merged 1 person into Eileen ({grace['id']}).")
        await expect(cards).to_have_count(len(people) - 1)
        await expect(card(astronaut)).to_have_count(0)
        merged = (await ui.orch.client.get(f"/people/{grace['id']}")).json()
        assert {ui.corpus.grace, ui.corpus.astronaut} <= {Path(a["path"]) for a in merged["appearances"]}

        # Open Eileen: her appearances (the photograph opens in the player), then split the astronaut out.
        await card(grace).get_by_role("button", name=re.compile("^Open")).click()
        await expect(view.locator("#person-title")).to_have_text(f"Eileen ({grace['id']})")
        await expect(view.locator(".appearance .path").filter(has_text=str(ui.corpus.grace))).to_have_count(1)
        await view.get_by_role("button", name=re.compile("^Open grace_hopper.jpg")).click()
        await expect(page.locator("#player img")).to_be_visible()
        await page.keyboard.press("Escape")
        await expect(page.locator("#player")).to_be_hidden()
        clusters = view.locator("#person-clusters > li")
        await expect(clusters).to_have_count(len(merged["faces"]) + len(merged["voices"]))
        theirs = [f["cluster"] for f in astronaut["faces"]] + [v["cluster"] for v in astronaut["voices"]]
        for cluster in theirs:
            await (
                view.locator(f'#person-clusters > li[data-cluster="{cluster}"]')
                .get_by_role("checkbox")
                .check()
            )
        await view.get_by_role("button", name="Split out").click()
        await expect(status).to_contain_text(f"out of Eileen ({grace['id']}): now ")
        await expect(clusters).to_have_count(len(merged["faces"]) + len(merged["voices"]) - len(theirs))
        await shots.take(page, "split")
        await view.get_by_role("button", name="Back to all people").click()
        await expect(cards).to_have_count(len(people))
        await expect(page.locator("#people-list")).not_to_have_attribute("aria-busy", "true")

        # Undo, step by step: the split, the merge, the name; then there is nothing left to undo.
        await undo.click()
        await expect(status).to_have_text(f"Undone: the split of Eileen ({grace['id']}).")
        await expect(cards).to_have_count(len(people) - 1)
        await undo.click()
        await expect(status).to_have_text(f"Undone: the merge into Eileen ({grace['id']}).")
        await expect(cards).to_have_count(len(people))
        await expect(card(astronaut)).to_have_count(1)
        await page.screenshot(path=artifacts_dir() / "people.png", full_page=True, animations="disabled")
        await undo.click()
        await expect(status).to_have_text(f"Undone: the renaming of unnamed {grace['id']}.")
        await expect(card(grace).locator(".name")).to_have_text("Unnamed")
        await undo.click()
        await expect(status).to_contain_text("Nothing to undo")
        await expect(undo).to_be_disabled()
        assert (await ui.orch.client.get(f"/people/{grace['id']}")).json()["name"] is None

        # "Search with this person" fills the search page's person filter.
        await card(grace).get_by_role("button", name=re.compile("^Search only results with")).click()
        await expect(page.locator("#page-search")).to_be_visible()
        await expect(page.get_by_label("Person (name or id)")).to_have_value(grace["id"])
        # The API's "nothing to undo" (409) is logged by the browser as a failed load; nothing else.
        assert [p for p in problems if "status of 409" not in p] == [], problems


async def test_search_hits_say_peoples_names(ui: UI) -> None:
    """search.js's people of a hit: each person's name where it has one, else its id (`person_names`); from
    a hit without that map, the names when there are as many as people, else names and ids."""
    async with opened(ui) as (page, problems):
        shown = await page.evaluate(
            """async () => {
                const { peopleOf } = await import('/ui/js/search.js');
                return [
                    peopleOf({ people: ['person-a', 'voice-b'] }),
                    peopleOf({ people: ['person-a', 'voice-b'], names: ['Ana', 'Eileen'] }),
                    peopleOf({ people: ['person-a', 'voice-b'], names: ['Ana'] }),
                    peopleOf({ people: [], names: [] }),
                    peopleOf({}),
                    peopleOf({
                        people: ['person-a', 'voice-b'], names: ['Ana'], person_names: { 'person-a': 'Ana' },
                    }),
                ];
            }"""
        )
        assert shown == [
            ["person-a", "voice-b"],
            ["Ana", "Eileen"],
            ["Ana", "person-a", "voice-b"],
            [],
            [],
            ["Ana", "voice-b"],
        ]
        assert problems == []


async def test_api_key_flow(ui: UI) -> None:
    shots = Screenshots("test_api_key_flow")
    phrase = ui.corpus.talk.phrases[0]
    with api_key_required(ui):
        async with opened(ui) as (page, problems):
            notice = page.locator("#notice")
            await expect(notice).to_contain_text("This server needs an API key")
            await expect(page.get_by_label("API key", exact=True)).to_be_focused()
            async with page.expect_response(_is_search) as refused:
                await page.get_by_role("searchbox").fill(phrase.text)
                await page.get_by_role("button", name="Search", exact=True).click()
            assert (await refused.value).status == 401
            await expect(page.locator("#search-status")).to_contain_text("needs an API key")
            await shots.take(page, "no-key")

            await page.get_by_label("API key", exact=True).fill(KEY)
            await page.keyboard.press("Enter")
            await expect(notice).to_be_hidden()
            assert await page.evaluate("() => sessionStorage.getItem('archivist.apiKey')") == KEY
            body = await _search(page, phrase.text)
            top = body["hits"][0]
            assert top["path"] == str(ui.corpus.programme)
            assert "sig=" in top["stream_url"] and "sig=" in top["thumbnail_url"], top
            await page.wait_for_function(FIRST_THUMBNAIL_SHOWN)
            await shots.take(page, "with-key")
            await page.locator("#results > li").first.get_by_role("button", name=re.compile("^Open")).click()
            await _playing_at(page, top["start_s"])  # <video> cannot send the key: the signed URL plays
            await shots.take(page, "playing-signed", full_page=False)
            await page.keyboard.press("Escape")

            # People thumbnails are fetched with the key (their URLs are not signed).
            await page.get_by_role("link", name="People").click()
            await expect(page.locator("#people-list > li").first).to_be_visible()
            await page.wait_for_function(PEOPLE_SHOWN)
            await shots.take(page, "people-with-key")
            # The key is this tab's: another tab of the same browser asks for it again.
            other = await page.context.new_page()
            await other.goto("/")
            await expect(other.locator("#notice")).to_contain_text("This server needs an API key")
            # The refused calls are logged by the browser as failed loads (401); nothing else went wrong.
            assert [p for p in problems if "status of 401" not in p] == [], problems


async def test_phone_width_has_no_horizontal_scroll(ui: UI) -> None:
    shots = Screenshots("test_phone_width_has_no_horizontal_scroll")
    async with opened(ui, viewport=PHONE) as (page, problems):
        await _no_horizontal_scroll(page)
        await page.get_by_text("Filters").click()
        await _search(page, ui.corpus.talk.phrases[0].text)
        await expect(page.locator("#results > li").first).to_be_visible()
        await _no_horizontal_scroll(page)
        await shots.take(page, "search")
        await page.locator("#results > li").first.get_by_role("button", name=re.compile("^Open")).click()
        await expect(page.locator("#player video")).to_be_visible()
        await _no_horizontal_scroll(page)
        await shots.take(page, "player", full_page=False)
        await page.keyboard.press("Escape")
        for name, page_id in (("Jobs", "#page-jobs"), ("People", "#page-people")):
            await page.get_by_role("link", name=name).click()
            await expect(page.locator(page_id)).to_be_visible()
            await expect(page.locator(f"{page_id} li").first).to_be_visible()
            await _no_horizontal_scroll(page)
            await shots.take(page, name.lower())
        assert problems == []


async def test_event_stream_reader(ui: UI) -> None:
    """sse.js against the framing sse-starlette sends (CRLF, comments), cut at awkward places."""
    async with opened(ui) as (page, problems):
        events = await page.evaluate(
            """async () => {
                const { EventParser } = await import('/ui/js/sse.js');
                const out = [];
                const parser = new EventParser((e) => out.push(e));
                for (const chunk of ['event: progress\\r', '\\ndata: {"a":', '1}\\r\\n',
                                     '\\r\\n: ping\\r\\n\\r\\n', 'event: end\\ndata: x\\ndata:y\\n\\n',
                                     'data: cut off']) {
                    parser.push(chunk);
                }
                return out;
            }"""
        )
        assert events == [
            {"event": "progress", "data": '{"a":1}'},
            {"event": "end", "data": "x\ny"},
        ]
        assert problems == []


class _Markup(HTMLParser):
    """What a strict CSP would block in the page's own markup: inline scripts, handlers, styles."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script":
            self.scripts.append(names.get("src") or "")
        if tag == "style" or "style" in names or any(n.startswith("on") for n in names):
            self.inline.append(f"<{tag} {attrs}>")


async def test_page_and_assets_headers(ui: UI) -> None:
    client = ui.orch.client
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    markup = _Markup()
    markup.feed(page.text)
    assert markup.inline == [] and markup.scripts == ["/ui/js/app.js"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
    assert (await client.get("/", params={"q": "cat"})).status_code == 200  # a page, not an API route

    script = await client.get("/ui/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache" and script.headers["content-security-policy"] == csp
    again = await client.get("/ui/js/app.js", headers={"if-none-match": script.headers["etag"]})
    assert again.status_code == 304
    assert (await client.get("/ui/js/nope.js")).status_code == 404
    assert (await client.get("/ui/%2e%2e/api/web.py")).status_code == 404

    with api_key_required(ui):
        assert (await client.get("/")).status_code == 200  # the page holds no data: no key
        assert (await client.get("/ui/style.css")).status_code == 200
        assert (await client.get("/roots")).status_code == 401
        roots = await client.get("/roots", headers={"x-api-key": KEY})
    assert roots.json() == {"roots": [str(ui.corpus.root)]}
