"""Human annotation end to end, in real Chromium driven by Playwright.

`synth run` enqueues a MiniWoB++ task for people; a labeler logs in on the
page, performs the task by clicking on the screenshot (a wrong click undone
first), types, submits; the next `synth run` harvests the trajectory into the
shards, where it passed MiniWoB's reward and replay; a reviewer rejects it on
the review page; the run after that exports it as rejected by review.

Depends on the pipeline's hook (`synth/pipeline.py` execute() calls
`annotation_ui.harvest.sync` when `sources.human.enabled`) and on the quality
stage applying `reviews.parquet`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from annotation_ui import agreement
from annotation_ui.store import Store
from annotation_ui.testing import ROOT, ServerProcess, login
from synth import staging
from synth.env import BrowserEnv
from synth.episode import run_episode
from synth.sites.miniwob import make_task
from synth.solver import get_solver

pytestmark = pytest.mark.slow

LABELER, REVIEWER = "ada", "grace"


def synth(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synth.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


def run_pipeline(pipeline) -> dict:
    r = synth("run", str(pipeline))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((pipeline.parent / "out" / "manifest.json").read_text())


def human_rows(out) -> list[dict]:
    rows = pq.read_table(out / "data" / "trajectories").to_pylist()
    return [r for r in rows if r["source"] == "human"]


async def click_on_screenshot(page, fx: float, fy: float) -> None:
    box = await page.locator("#shot").bounding_box()
    await page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])


async def steps_shown(page, n: int) -> None:
    # a function, not an expression string: the page's CSP forbids eval
    await page.wait_for_function("n => document.querySelectorAll('#steps li').length === n", arg=n, timeout=60000)


async def log_in(browser, url: str, token: str):
    context = await browser.new_context(viewport={"width": 1400, "height": 950})
    page = await context.new_page()
    await page.goto(url + "/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    return context, page


async def test_labeler_records_a_task_in_the_browser_and_it_reaches_the_shards(browser, tmp_path):
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"""
name: annotate-e2e
output_dir: {tmp_path / 'out'}
tasks:
  - templates: {ROOT / 'templates/tasks/miniwob.yaml'}
    include: [enter-text]
    seeds_per_template: 1
sources:
  solver: {{enabled: false}}
  human:
    enabled: true
    select: {{templates: ["miniwob/enter-text"]}}
ray: {{num_cpus: 2}}
"""
    )
    out = tmp_path / "out"
    first = run_pipeline(pipeline)
    assert first["human"]["enqueued"] == 1 and first["human"]["queue_queued"] == 1
    assert (out / "annotations.db").exists()

    tokens = {}
    for name, role in ((LABELER, "labeler"), (REVIEWER, "reviewer")):
        r = synth("annotate", "add-user", name, "--role", role, "-p", str(pipeline))
        assert r.returncode == 0, r.stderr
        tokens[name] = r.stdout.strip()
    server = ServerProcess("-p", str(pipeline), log_path=tmp_path / "server.log")
    try:
        # ---------------------------------------------------------- the labeler
        context, page = await log_in(browser, server.url, tokens[LABELER])
        await page.wait_for_url("**/label")
        await page.keyboard.press("n")  # shortcut: next task
        await page.wait_for_selector("#workspace:not([hidden])")
        await page.wait_for_function("() => document.getElementById('shot').naturalWidth > 0")
        instruction = await page.text_content("#instruction")
        word = re.search(r'"(.+)"', instruction).group(1)
        lease = (await page.evaluate("fetch('/api/state').then(r => r.json())"))["lease"]

        def center(**match) -> tuple[float, float]:
            el = next(e for e in lease["elements"] if all(e[k] == v for k, v in match.items()))
            x, y, w, h = el["box"]
            return x + w / 2, y + h / 2

        field, button = center(tag="input"), center(role="button", name="Submit")

        await click_on_screenshot(page, 0.5, 0.97)  # a wrong click on nothing ...
        await steps_shown(page, 1)
        await page.keyboard.press("u")  # ... undone: the episode is reset and replayed without it
        await steps_shown(page, 0)

        await page.fill("#thought", "The text field has to be focused before typing.")
        await click_on_screenshot(page, *field)
        await steps_shown(page, 1)
        await page.fill("#type-text", word)
        await page.press("#type-text", "Enter")
        await steps_shown(page, 2)
        await click_on_screenshot(page, *button)
        await steps_shown(page, 3)
        await page.keyboard.press("Control+Enter")  # shortcut: submit
        await page.wait_for_selector("#result:not([hidden])", timeout=60000)
        result = await page.text_content("#result")
        assert "the judge passed it" in result, result
        assert await page.text_content('#progress dd[data-k="passed"]') == "1"
        await context.close()

        # ---------------------------------------------------------- the next run harvests it
        second = run_pipeline(pipeline)
        assert second["human"]["harvested"] == 1
        rows = human_rows(out)
        assert len(rows) == 1
        t = rows[0]
        assert t["source_detail"] == LABELER and t["status"] == "accepted", t["reject_reason"]
        assert t["verdict"]["passed"] and "MiniWoB raw reward 1" in t["verdict"]["reason"]
        assert t["replay_passed"] is True  # replayed in a fresh browser, judged again
        assert [s["action"]["name"] for s in t["steps"]] == ["click", "type", "click"]
        assert t["steps"][1]["action"]["text"] == word
        assert t["steps"][0]["monologue"]["thought"] == "The text field has to be focused before typing."
        assert t["steps"][0]["element"]["tag"] == "input"
        steps = pq.read_table(out / "data" / "steps").to_pylist()
        assert sum(1 for s in steps if s["trajectory_id"] == t["trajectory_id"] and s["screenshot"]) == 3

        # ---------------------------------------------------------- a reviewer rejects it
        context, page = await log_in(browser, server.url, tokens[REVIEWER])
        await page.wait_for_url("**/review")
        await page.goto(server.url + "/review?source=human")
        await page.click(f'a[href="/review/{t["trajectory_id"]}"]')
        await page.wait_for_selector("svg.overlay circle.point")  # the click drawn on its screenshot
        assert await page.locator("li.step:not(.final)").count() == 3
        assert "after the last action" in await page.text_content("#step-final")  # the page the labeler left
        await page.check('input[name="verdict"][value="reject"]')
        await page.check('input[name="tags"][value="unnecessary-steps"]')
        await page.fill("#comment", "Typed before checking the field was empty.")
        await page.click('button[name="next"][value="0"]')
        await page.wait_for_selector(".flash.ok")
        assert "Typed before checking" in await page.text_content(".review-entry")
        await context.close()

        third = run_pipeline(pipeline)
        assert third["human"]["reviews"] == 1 and third["human"]["harvested"] == 0
        t = human_rows(out)[0]
        assert t["status"] == "rejected" and t["reject_reason"].startswith("review:"), t["reject_reason"]
        assert t["review"]["verdict"] == "reject" and t["review"]["reviewer"] == REVIEWER
        assert t["review"]["tags"] == ["unnecessary-steps"]
        assert len(human_rows(out)) == 1  # harvested exactly once over three runs
    finally:
        server.stop()
    assert tokens[LABELER] not in server.log() and tokens[REVIEWER] not in server.log()


# ---------------------------------------------------------------- the labeler page, item by item


@pytest.fixture(scope="module")
def label_server(tmp_path_factory):
    """A queue of click-test tasks, labelers e0..e9, a reviewer; leases of 8 s
    (heartbeats every 2.7 s), so lease tests do not wait long."""
    tmp = tmp_path_factory.mktemp("annotate-page")
    db = tmp / "q.db"
    store = Store(db)
    tokens = {f"e{i}": store.add_user(f"e{i}", "labeler") for i in range(10)}
    tokens["rv"] = store.add_user("rv", "reviewer")
    store.enqueue_many([(make_task("click-test", 700 + i), 1, "manual", 0) for i in range(20)])
    store.close()
    server = ServerProcess("--db", str(db), "--lease-seconds", "8", log_path=tmp / "server.log")
    yield server, tokens, db
    server.stop()


async def open_task(browser, url: str, token: str):
    """Log in, take the next task, wait for its screenshot; (context, page, lease)."""
    context, page = await log_in(browser, url, token)
    await page.wait_for_url("**/label")
    await page.click("#next")
    await page.wait_for_selector("#workspace:not([hidden])")
    await page.wait_for_function("() => document.getElementById('shot').naturalWidth > 0")
    lease = (await page.evaluate("fetch('/api/state').then(r => r.json())"))["lease"]
    return context, page, lease


def center(lease: dict, **match) -> tuple[float, float]:
    el = next(e for e in lease["elements"] if all(e[k] == v for k, v in match.items()))
    x, y, w, h = el["box"]
    return x + w / 2, y + h / 2


async def post_json(page, path: str, body: dict) -> int:
    """POST as the page's own script does (CSRF header); the status."""
    return await page.evaluate(
        """([path, body]) => fetch(path, {method: "POST", credentials: "same-origin",
            headers: {"Content-Type": "application/json",
                      "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content},
            body: JSON.stringify(body)}).then(r => r.status)""",
        [path, body],
    )


async def test_a_task_the_site_ended_can_only_be_submitted(browser, label_server):
    """MiniWoB ends its episode on the task's own submit and then offers
    START, which would begin another episode: the page says the task is
    complete and sends no more actions, and the server refuses them."""
    server, tokens, _ = label_server
    context, page, lease = await open_task(browser, server.url, tokens["e0"])
    try:
        assert await page.is_hidden("#done-banner")
        await click_on_screenshot(page, *center(lease, role="button"))
        await page.wait_for_selector("#done-banner:not([hidden])")
        assert "Task complete: submit" in await page.text_content("#done-banner")
        await click_on_screenshot(page, 0.5, 0.5)  # on MiniWoB's START overlay
        await page.wait_for_selector("#error:not([hidden])")
        assert "complete" in await page.text_content("#error")
        await steps_shown(page, 1)
        assert await post_json(page, "/api/act", {"item_id": lease["item_id"], "name": "click", "x": 0.5, "y": 0.5}) == 400
        state = (await page.evaluate("fetch('/api/state').then(r => r.json())"))["lease"]
        assert state["done"] and len(state["steps"]) == 1
        await page.keyboard.press("Control+Enter")
        await page.wait_for_selector("#result:not([hidden])", timeout=60000)
        assert "the judge passed it" in await page.text_content("#result")
        assert await page.is_hidden("#done-banner")
    finally:
        await context.close()


async def test_a_lease_is_kept_while_active_warned_when_idle_and_reclaimable_when_lost(browser, label_server):
    """8 s leases: an idle labeler is warned, activity extends the lease, a
    lost lease shows a banner (not the empty "No task open."), and the draft
    comes back on reclaim unless someone else took the task meanwhile."""
    server, tokens, _ = label_server
    context, page, lease = await open_task(browser, server.url, tokens["e1"])
    try:
        await click_on_screenshot(page, 0.5, 0.97)  # one step, on nothing
        await steps_shown(page, 1)
        await page.wait_for_selector("#lease-warning:not([hidden])", timeout=15000)  # idle: warned
        assert "move the mouse or press a key" in await page.text_content("#lease-warning")
        for i in range(6):  # active for longer than a lease: it is extended
            await page.mouse.move(300 + 10 * i, 300)
            await page.wait_for_timeout(1500)
        assert await page.is_hidden("#lease-warning")
        assert await page.is_hidden("#lost-banner")
        await page.wait_for_selector("#lost-banner:not([hidden])", timeout=20000)  # idle again: lost
        text = await page.text_content("#lost-banner")
        assert "went back to the queue" in text and "1 step" in text, text
        assert await page.is_hidden("#lease-warning")  # no countdown for a lease that is gone
        assert await page.is_visible("#reclaim")
        await page.click("#reclaim")
        await page.wait_for_selector("#workspace:not([hidden])")
        await steps_shown(page, 1)  # the draft, replayed
        assert await page.is_hidden("#lost-banner")

        await page.wait_for_selector("#lost-banner:not([hidden])", timeout=20000)
        other = login(server.url, tokens["e2"])  # takes the task while e1 is away
        assert other.post(server.url + "/api/next", json={}).json()["lease"]["item_id"] == lease["item_id"]
        await page.click("#reclaim")
        await page.wait_for_function(
            "() => document.getElementById('lost-banner').textContent.includes('someone else took it')")
        assert await page.is_hidden("#reclaim") and await page.is_hidden("#workspace")
    finally:
        await context.close()


async def test_submit_is_safe_and_focus_returns_to_the_page(browser, label_server):
    """Ctrl+Enter on an empty trajectory asks first; a submit can be undone
    for a few seconds; Type+Enter leaves the text box, so U is undo again."""
    server, tokens, _ = label_server
    context, page, lease = await open_task(browser, server.url, tokens["e3"])
    try:
        await page.keyboard.press("Control+Enter")  # no steps: asks
        await page.wait_for_selector("#confirm-submit:not([hidden])")
        assert "no steps" in await page.text_content("#confirm-text")
        await page.keyboard.press("Escape")
        assert await page.is_hidden("#confirm-submit")
        await page.keyboard.press("Control+Enter")
        await page.click("#confirm-yes")  # submit anyway ...
        await page.wait_for_selector("#submit-pending:not([hidden])")
        await page.keyboard.press("Escape")  # ... and undo it within the window
        assert await page.is_hidden("#submit-pending")
        await page.wait_for_timeout(4000)  # past the 3 s window: nothing was sent
        assert (await page.evaluate("fetch('/api/state').then(r => r.json())"))["lease"]["item_id"] == lease["item_id"]
        assert await page.is_hidden("#result")

        await page.keyboard.press("t")
        await page.keyboard.type("hello")
        await page.keyboard.press("Enter")  # Type+Enter
        await steps_shown(page, 1)
        assert await page.evaluate("() => document.activeElement.id") != "type-text"
        assert await page.input_value("#type-text") == ""
        await page.keyboard.press("Control+Enter")  # one step on a task that did not end: asks too
        await page.wait_for_selector("#confirm-submit:not([hidden])")
        assert "only one step" in await page.text_content("#confirm-text")
        assert await page.evaluate("() => document.activeElement.id") == "confirm-no"  # the safe default
        await page.keyboard.press("Escape")
        assert await page.is_hidden("#confirm-submit") and await page.is_hidden("#submit-pending")
        await page.keyboard.press("u")  # a shortcut, not a letter in the box
        await steps_shown(page, 0)
        assert await page.input_value("#type-text") == ""

        await click_on_screenshot(page, *center(lease, role="button"))  # the task's own end
        await page.wait_for_selector("#done-banner:not([hidden])")
        await page.keyboard.press("Control+Enter")  # a complete task: no question, just the undo window
        await page.wait_for_selector("#submit-pending:not([hidden])")
        assert await page.is_hidden("#confirm-submit")
        await page.wait_for_selector("#result:not([hidden])", timeout=60000)
        assert "the judge passed it" in await page.text_content("#result")
    finally:
        await context.close()


async def test_an_ended_session_says_why_on_the_login_page(browser, label_server):
    server, tokens, db = label_server
    context, page = await log_in(browser, server.url, tokens["e4"])
    try:
        await page.wait_for_url("**/label")
        with sqlite3.connect(db) as c:  # the session runs out (as after 12 h)
            c.execute("UPDATE sessions SET expires_at = 0 WHERE user_id = (SELECT id FROM users WHERE name = 'e4')")
        await page.keyboard.press("n")  # the page's next request is refused ...
        await page.wait_for_url("**/login?expired=1")
        assert "Your session ended" in await page.text_content("#expired")  # ... and the login page says why
        await page.goto(server.url + "/label")  # a page load with the stale cookie: the cookie is gone now
        await page.wait_for_url("**/login")
        await page.fill("#token", tokens["e4"])
        await page.click("button[type=submit]")
        await page.wait_for_url("**/label")
    finally:
        await context.close()


def submit_by_http(url: str, token: str, click_button: bool) -> str:
    """A labeler does the next task over HTTP (as the page would): clicks
    the button (the judge passes) or a blank spot (it fails); the trajectory id."""
    s = login(url, token)
    lease = s.post(url + "/api/next", json={}).json()["lease"]
    x, y = center(lease, role="button") if click_button else (0.5, 0.97)
    assert s.post(url + "/api/act", json={"item_id": lease["item_id"], "name": "click", "x": x, "y": y}).ok
    r = s.post(url + "/api/submit", json={"item_id": lease["item_id"]}).json()
    assert r["passed"] is click_button, r
    return r["trajectory_id"]


async def test_reviewers_see_the_final_state_their_verdict_and_override_the_judge_explicitly(browser, label_server):
    server, tokens, db = label_server
    url = server.url
    passed, failed = submit_by_http(url, tokens["e5"], True), submit_by_http(url, tokens["e6"], False)
    context, page = await log_in(browser, url, tokens["rv"])
    try:
        await page.wait_for_url("**/review")
        await page.goto(f"{url}/review/{passed}")
        # the page after the last action, which no step's screenshot shows
        await page.wait_for_function("() => document.getElementById('final-shot').naturalWidth > 0")
        assert "after the last action" in await page.text_content("#step-final")
        assert await page.locator("a.thumb.final").count() == 1
        shots = await page.evaluate(
            """(tid) => Promise.all([`/review/${tid}/step/0.png`, `/review/${tid}/final.png`].map(
                 (u) => fetch(u).then((r) => r.arrayBuffer()).then((b) => new Uint8Array(b).join(","))))""",
            passed,
        )
        assert shots[0] != shots[1]
        assert "Not reviewed yet" in await page.text_content("#current-verdict")

        await page.keyboard.press("r")  # reject by key ...
        assert await page.is_checked('input[name="verdict"][value="reject"]')
        await page.fill("#comment", "Clicked without reading.")
        await page.keyboard.press("Control+Enter")  # ... save and next by key
        await page.wait_for_url(lambda u: passed not in u)
        await page.goto(f"{url}/review/{passed}")
        assert "reject" in await page.text_content("#current-verdict")  # the current verdict, in the form
        assert "rv" in await page.text_content("#current-verdict")
        assert await page.is_checked('input[name="verdict"][value="reject"]')
        assert await page.input_value("#comment") == "Clicked without reading."

        # accepting what the judge failed is an override, with a reason
        await page.goto(f"{url}/review/{failed}")
        assert await page.is_hidden("#override")
        await page.keyboard.press("a")
        assert await page.is_visible("#override")
        await page.keyboard.press("Control+Enter")  # no tick, no reason: the form does not go
        await page.wait_for_timeout(500)
        assert failed in page.url and not Store(db).reviews(failed)
        await page.check("#override-box")
        await page.fill("#override_reason", "MiniWoB's checker missed the click.")
        await page.keyboard.press("Control+Enter")
        await page.wait_for_url(lambda u: failed not in u)
        review = Store(db).reviews(failed)[0]
        assert review["verdict"] == "accept" and review["override_judge"] is True
        assert review["override_reason"] == "MiniWoB's checker missed the click." and "judge-wrong" in review["tags"]
        await page.goto(f"{url}/review/{failed}")
        assert "judge overridden" in await page.text_content("#current-verdict")

        # the server refuses a silent accept of a failed trajectory, whatever the client
        s = login(url, tokens["rv"])
        r = s.post(f"{url}/review/{failed}", data={"verdict": "accept", "next": "0",
                                                   "csrf": s.headers["X-CSRF-Token"]}, allow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith("?error=override")
        assert Store(db).reviews(failed)[0]["override_judge"] is True  # unchanged
    finally:
        await context.close()


async def test_agreement_between_labelers_is_shown_to_reviewers(browser, label_server):
    """Two tasks for two labelers each: one pair agrees (both click the
    button), one does not (one clicks beside it). The review view shows the
    per-template agreement and links the disagreeing pair."""
    server, tokens, db = label_server
    url = server.url
    store = Store(db)
    store.enqueue_many([(make_task("click-test", 900 + i), 2, "overlap", 5) for i in range(2)])
    store.close()
    first = [submit_by_http(url, tokens["e7"], True), submit_by_http(url, tokens["e8"], False)]
    second = [submit_by_http(url, tokens["e7"], True), submit_by_http(url, tokens["e8"], True)]
    assert agreement.agreement_table(db) == [{
        "template_id": "miniwob/click-test", "tasks": 2, "pairs": 2, "outcome_agreement": 0.5,
        "sequence_agreement": 0.5, "step_agreement": 0.5, "disagreements": 1,
    }]
    context, page = await log_in(browser, url, tokens["rv"])
    try:
        await page.wait_for_url("**/review")
        await page.click("#agreement-link")
        await page.wait_for_url("**/review/agreement")
        row = page.locator('#agreement tr[data-template="miniwob/click-test"]')
        assert await row.locator('td[data-k="outcome"]').text_content() == "50%"
        assert await row.locator('td[data-k="sequence"]').text_content() == "50%"
        assert await row.locator('td[data-k="steps"]').text_content() == "0.50"
        assert await page.locator("#disagreements tbody tr").count() == 1
        links = await page.eval_on_selector_all("#disagreements a", "els => els.map(e => e.getAttribute('href'))")
        assert sorted(links) == sorted(f"/review/{t}" for t in first) and second[0] not in str(links)
        await page.click(f'#disagreements a[href="/review/{first[0]}"]')
        await page.wait_for_url(f"**/review/{first[0]}")
        others = await page.text_content("#others")
        assert "e8" in others and "outcome differs" in others and "sequence differs" in others
        r = synth("annotate", "agreement", "--db", str(db), "--disagreements")  # the same, for a terminal
        assert r.returncode == 0, r.stderr
        assert "miniwob/click-test" in r.stdout and "50%" in r.stdout and first[0] in r.stdout
    finally:
        await context.close()


# ---------------------------------------------------------------- the final page of every source


async def agent_trajectory(browser, task):
    """The LLM agent's (bootstrap) trajectory of `task`, against the mock
    OpenAI-compatible endpoint, on the test session's Chromium."""
    from pydantic import SecretStr

    from bootstrap.mock_server import MockServer
    from bootstrap.source import BootstrapSource
    from synth.config import BootstrapSourceConfig

    with MockServer(api_key="sk-test") as server:
        src = BootstrapSource(config=BootstrapSourceConfig(
            enabled=True, base_url=server.url, model="mock-agent", api_key=SecretStr("sk-test"), cache_path=None))
        src._playwright, src._browser = "shared", browser  # BrowserSource relaunches only when these are missing
        try:
            return await src.run(task)
        finally:  # not src.teardown(): that would close the session's Chromium
            if src.client is not None:
                await src.client.aclose()
            await src._pages.close()
            for site in src._sites.values():
                await site.stop()


async def test_reviewers_see_the_final_page_of_solver_and_agent_trajectories(browser, miniwob_site, tmp_path):
    """The page after the last action, which no step's screenshot shows, for
    a solver's trajectory and for a rejected one of the LLM agent (cut off by
    its step limit after one click): both were recorded in Chromium, staged,
    and opened by a reviewer on the review page."""
    env = BrowserEnv(browser, miniwob_site)
    try:
        solved = await run_episode(env, make_task("click-button", 7, solver="miniwob.click-button"),
                                   get_solver("miniwob.click-button"), source="solver",
                                   source_detail="miniwob.click-button")
    finally:
        await env.close()
    cut_off = await agent_trajectory(browser, make_task("click-button-sequence", 7).model_copy(update={"max_steps": 1}))
    assert solved.status == "accepted" and cut_off.status == "rejected" and cut_off.source == "bootstrap"
    for t in (solved, cut_off):
        assert [s.action.name for s in t.steps] == ["click"]  # ends on a page action, not on an answer
        assert t.final_screenshot and t.final_screenshot != t.steps[-1].observation.screenshot
    staging.write_batch(tmp_path / "out" / "staging", [solved, cut_off], "run-0")
    db = tmp_path / "q.db"
    token = Store(db).add_user("rv", "reviewer")
    server = ServerProcess("--db", str(db), "--out", str(tmp_path / "out"), log_path=tmp_path / "server.log")
    context, page = await log_in(browser, server.url, token)
    try:
        await page.wait_for_url("**/review")
        for t in (solved, cut_off):
            await page.goto(f"{server.url}/review/{t.trajectory_id}")
            await page.wait_for_function("() => document.getElementById('final-shot').naturalWidth > 0")
            assert "the page after the last action" in await page.text_content("#step-final")
            final = await page.evaluate(
                "(u) => fetch(u).then((r) => r.arrayBuffer()).then((b) => Array.from(new Uint8Array(b)))",
                f"/review/{t.trajectory_id}/final.png",
            )
            assert bytes(final) == t.final_screenshot
    finally:
        await context.close()
        server.stop()
