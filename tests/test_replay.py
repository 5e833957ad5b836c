"""Replay that does not depend on the machine: settled pages, cold contexts,
targets checked at their recorded points, and replays from the shards alone.

Everything here runs on real pages: MiniWoB++'s own tasks, the bundled shop
and forum through their state and answer judges, and a small page served by a
real HTTP server whose layout moves between loads."""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from synth.solver import get_solver
from synth.config import QualityConfig, load_pipeline
from synth.env import BrowserConfig, BrowserEnv, PagePool
from synth.episode import run_episode
from synth.judges import JudgeContext, register_judge
from synth.pipeline import pipeline_site_options
from synth.quality.replay import ReplayJob, Replayer, noop_steps, pack_steps, steps_of
from synth.quality.stage import Verdict as GateVerdict
from synth.quality.stage import _Light, _replay_gate
from synth.schema import JudgeSpec, Task, Verdict
from synth.sites.base import Setup, Site, register_site
from synth.sites.miniwob import MiniWoBSite
from synth.tasks import tasks_from

ROOT = Path(__file__).resolve().parent.parent
MINIWOB = ROOT / "templates/tasks/miniwob.yaml"
TIMING_SENSITIVE = ["choose-date", "book-flight", "click-collapsible", "email-inbox", "social-media"]
"""The templates whose replays failed under load before replays settled."""


def miniwob_task(name: str, seed: int) -> Task:
    (t,) = [t for t in tasks_from(MINIWOB, [name], seeds=seed + 1) if t.seed == seed]
    return t


async def record(browser, site, task: Task, pages: PagePool | None = None):
    env = BrowserEnv(browser, site, BrowserConfig(), pages)
    return await run_episode(env, task, get_solver(task.solver), source="solver", source_detail=task.solver)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def replayer():
    r = Replayer(browser=BrowserConfig(screenshots=False, snapshots=False))
    await r.setup()
    yield r
    await r.teardown()


# ---------------------------------------------------------------- settling


async def test_observation_waits_until_the_animation_has_ended(env):
    """click-collapsible opens its section with a jQuery animation that pushes
    Submit down: the observation after the click shows Submit where it stays."""
    task = miniwob_task("click-collapsible", 0)
    obs = await env.reset(task)
    header = next(t for t in obs.find_all(role="tab") if t.name.startswith("Section #"))
    obs = await env.click(header)
    settled_box = obs.find("Submit", role="button").box
    later = await env.wait(1000)
    assert later.find("Submit", role="button").box == settled_box
    await env.click(obs.find("Submit", role="button"))
    click_submit = env.steps[-1]
    assert click_submit.settled and click_submit.settle_ms > 50, click_submit.settle_ms  # it did wait


async def test_settle_waits_for_a_debounce_timer(env):
    """book-flight's autocomplete searches 300 ms after the last keystroke
    (a timer): the observation after typing already shows the menu."""
    task = miniwob_task("book-flight", 0)
    obs = await env.reset(task)
    await env.click(obs.find(html_id="flight-from"))
    obs = await env.type("A")
    assert obs.find_all(html_class="ui-menu-item-wrapper"), "the menu had not opened when observed"


async def test_settle_on_a_document_without_elements_waits_instead_of_failing(env):
    """A navigation's new document can be seen before its parser made <html>:
    settling there waits and says why (a quiet run's one replay reject was a
    TypeError on the missing root), it does not fail the replay."""
    await env.reset(miniwob_task("click-collapsible", 0))
    await env._page().evaluate("document.documentElement.remove()")
    res = await env.settle()
    assert res["settled"] is False and res["why"] == "no document element", res


async def test_a_slow_machine_does_not_fail_a_recording_of_the_default_pipeline(browser, miniwob_site, slow_actions):
    """click-checkboxes seed 38 takes 5 actions; at 2.5 s each they overrun
    the task's 10 s limit. Under web.yaml's site options the same actions
    still pass: a recording's verdict does not depend on the machine's speed."""
    options = pipeline_site_options(load_pipeline(ROOT / "pipelines/web.yaml"))["miniwob"]
    task = miniwob_task("click-checkboxes", 38)
    slow_actions(2.5)

    async def record_on(site):
        async with BrowserEnv(browser, site, BrowserConfig()) as env:
            return await run_episode(env, task, get_solver(task.solver), source="solver", source_detail=task.solver)

    tasks_own_limit = await record_on(MiniWoBSite(base_url=miniwob_site.base_url))
    assert not tasks_own_limit.verdict.passed  # the slowdown is real: 10 s is not enough
    pipeline_limit = await record_on(MiniWoBSite(base_url=miniwob_site.base_url, **options))
    assert pipeline_limit.verdict.passed, (pipeline_limit.error, pipeline_limit.verdict.reason)


# ---------------------------------------------------------------- cold replays


class _Cached(http.server.BaseHTTPRequestHandler):
    """A page with an image the browser may cache for an hour; counts how
    often the image is fetched."""

    image_fetches = 0
    PNG = bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360000002"
        "00000500010d0a2db40000000049454e44ae426082"
    )

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/icon.png"):
            type(self).image_fetches += 1
            body, kind = self.PNG, "image/png"
        else:
            body, kind = b'<!doctype html><img src="/icon.png" width=20 height=20>' \
                         b'<button onclick="window.done = true">Go</button>', "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class ServedSite(Site):
    """A test site served by a real HTTP server with `handler`."""

    handler: ClassVar[type[http.server.BaseHTTPRequestHandler]]

    def __init__(self) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    async def setup(self, page, task):
        await page.goto(f"http://127.0.0.1:{self.server.server_port}/")
        return Setup(instruction="Click Go.")

    async def stop(self) -> None:
        self.server.shutdown()


@register_site
class CachedSite(ServedSite):
    name: ClassVar[str] = "test-cached"
    handler = _Cached
    reuse_page: ClassVar[bool] = True  # recordings may reuse warm pages; verification replays must not


@register_judge("test_clicked_go")
async def clicked_go(ctx: JudgeContext) -> Verdict:
    done = await ctx.page.evaluate("() => window.done === true")
    return Verdict(passed=done, score=float(done), reason="" if done else "Go was not clicked")


def go_task(site: str) -> Task:
    return Task(task_id=f"{site}-0", template_id=f"test/{site}", site=site, judge=JudgeSpec(type="test_clicked_go"),
                seed=0)


async def click_go(env, obs):
    await env.click(obs.find("Go", role="button"))


async def test_verification_replays_start_cold_even_where_recordings_reuse_pages(browser, replayer):
    """Every replay fetches the cacheable image again: a fresh context, as a
    new user's browser, even on a site that lets recordings reuse pages."""
    task = go_task("test-cached")
    site = await replayer.site("test-cached")
    pages = PagePool()
    for _ in range(2):  # recordings on one pooled page: the second one is served from its cache
        t = await run_episode(BrowserEnv(browser, site, BrowserConfig(), pages), task, click_go,
                              source="solver", source_detail="test")
        assert t.status == "accepted", t.reject_reason
    assert _Cached.image_fetches == 1
    for _ in range(2):
        assert (await replayer.verify(ReplayJob(t.trajectory_id, task, steps_of(t)))).passed
    assert _Cached.image_fetches == 3


async def test_a_click_does_not_depend_on_its_hover(browser, miniwob_site, replayer):
    """social-media's icons swap in a hover image when pointed at, and a
    press while it loads (cold cache) misses. A click points, lets that
    settle, then presses: so the recorded hover is verified unnecessary from a
    cold start, and the click alone replays the same every time."""
    for task in tasks_from(MINIWOB, ["social-media"], seeds=40):
        t = await record(browser, miniwob_site, task)
        if '"Reply"' in t.instruction:
            break
    assert t.status == "accepted", t.reject_reason
    hover = next(i for i, s in enumerate(t.steps) if s.action.name == "hover")
    job = ReplayJob(t.trajectory_id, task, steps_of(t), noop_steps(t), minimality=True)
    result = await replayer.verify(job)
    assert result.passed and result.unnecessary == [hover], result
    without = ReplayJob(t.trajectory_id, task, [s for i, s in enumerate(job.steps) if i != hover])
    outcomes = await asyncio.gather(*(replayer.verify(without) for _ in range(4)))
    assert all(r.passed for r in outcomes), [r.reason for r in outcomes if not r.passed]


async def test_a_replay_slower_than_the_task_timer_still_verifies_the_actions(browser):
    """MiniWoB ends an episode with reward -1 when its timer runs out. A
    replay on a loaded machine can take longer than the recording with the
    very same actions; the verdict must be about the actions, so a replay
    lifts the timer (MiniWoBSite.replay_options) while a recording keeps it."""
    from synth.sites.miniwob import MiniWoBSite

    timer = {"miniwob": {"episode_max_time_ms": 1500}}
    task = miniwob_task("click-button", 0)
    site = MiniWoBSite(**timer["miniwob"])
    t = await record(browser, site, task)
    assert t.status == "accepted", t.reject_reason
    slow = [dataclasses.replace(s, waited_ms=2500) for s in steps_of(t)]

    async def slow_solver(env, obs):  # the same actions, after the timer ran out
        for s in slow:
            await asyncio.sleep(s.waited_ms / 1000)
            await env.step(s.action, expected=s.target)

    late = await run_episode(BrowserEnv(browser, site, BrowserConfig()), task, slow_solver, source="solver", source_detail="slow")
    assert late.status == "rejected", "the timer did not end the recording: this test shows nothing"

    r = Replayer(browser=BrowserConfig(screenshots=False, snapshots=False), site_options=timer)
    await r.setup()
    try:
        result = await r.verify(ReplayJob(t.trajectory_id, task, slow))
    finally:
        await r.teardown()
    assert result.passed, result.reason


async def test_a_replay_has_the_time_its_recording_had(browser, miniwob_site, slow_actions):
    """web.yaml gives a solver episode 300 s and gave a replay 60 s: at load
    90 two 32-step shop place-order replays overran 60 s and their
    trajectories were rejected, though their recordings had passed. A
    replay's budget is now the solver's unless set (at least 60 s): with
    every action 1.5 s late, a recording passes, and so does its replay by
    the pipeline's replayer; held to 5 s, the same replay times out."""
    from synth.pipeline import _replay_options, replay_timeout_s

    config = load_pipeline(ROOT / "pipelines/web.yaml")
    assert config.quality.replay.episode_timeout_s is None
    assert replay_timeout_s(config) == config.sources.solver.episode_timeout_s == 300
    config.sources.solver.episode_timeout_s = 20
    assert replay_timeout_s(config) == 60
    task = miniwob_task("login-user", 0)
    slow_actions(1.5)
    site = MiniWoBSite(base_url=miniwob_site.base_url, **pipeline_site_options(config)["miniwob"])
    t = await record(browser, site, task)
    assert t.status == "accepted" and len(t.steps) >= 4, (t.reject_reason, t.error)

    async def replayed(budget: float | None) -> tuple[bool, str]:
        config.quality.replay.episode_timeout_s = budget
        r = Replayer(**_replay_options(config, "t"))
        await r.setup()
        try:
            result = await r.verify(ReplayJob(t.trajectory_id, task, steps_of(t)))
        finally:
            await r.teardown()
        return result.passed, result.reason

    passed, reason = await replayed(None)
    assert passed, reason
    passed, reason = await replayed(5)
    assert not passed and reason.endswith("timed out"), reason


# ---------------------------------------------------------------- the replay gate on state and answer judges


SITE_TASKS = {
    "shop": ["add-to-cart", "product-price", "add-address"],
    "forum": ["subscribe-forum", "comment-on-post", "top-comment-author"],
}


@pytest.mark.parametrize("site_name", sorted(SITE_TASKS))
async def test_replay_gate_on_state_and_answer_judges(browser, replayer, site_name):
    """Recorded solver trajectories of state_match and string_match
    prototypes pass their judge again on replay; the same steps cut short of
    what changes the state, or with another answer, fail."""
    from synth.sites import get_site

    site = get_site(site_name)
    await site.start()
    try:
        for task in tasks_from(ROOT / "templates/tasks" / site_name, SITE_TASKS[site_name], seeds=1):
            t = await record(browser, site, task)
            assert t.status == "accepted", (task.template_id, t.reject_reason)
            steps = steps_of(t)
            ok = await replayer.verify(ReplayJob(t.trajectory_id, task, steps))
            assert ok.passed, (task.template_id, ok.reason)
            if steps[-1].action.name == "answer":
                wrong = steps[:-1] + [type(steps[-1])(steps[-1].action.model_copy(update={"text": "not it"}))]
            else:  # the last act before done (a submit, a click) never happens
                last = max(i for i, s in enumerate(steps) if s.action.name != "done")
                wrong = steps[:last] + steps[last + 1 :]
            bad = await replayer.verify(ReplayJob(t.trajectory_id, task, wrong))
            assert not bad.passed, f"{task.template_id}: the judge passed without the last step"
    finally:
        await site.stop()


# ---------------------------------------------------------------- a layout that moves between loads


class _Moving(http.server.BaseHTTPRequestHandler):
    loads = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).loads += 1
        top = 40 if type(self).loads == 1 else 160  # the button moves after the first load
        body = f"""<!doctype html><title>moving</title>
<div style="height:{top}px">Banner</div>
<button id="go" onclick="window.done = true">Go</button>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@register_site
class MovingSite(ServedSite):
    """A page whose button is lower on every load after the first."""

    name: ClassVar[str] = "test-moving"
    handler = _Moving


async def test_a_target_that_moved_is_found_by_its_selector_and_flagged(browser, replayer, tmp_path):
    task = go_task("test-moving")
    site = await replayer.site("test-moving")
    env = BrowserEnv(browser, site, BrowserConfig())
    t = await run_episode(env, task, click_go, source="solver", source_detail="test")
    assert t.status == "accepted", t.reject_reason
    result = await replayer.verify(ReplayJob(t.trajectory_id, task, steps_of(t)))
    assert result.passed and result.relocated == [0], result

    # the gate: flagged and kept by default, rejected with `relocated: reject`
    loop = asyncio.get_running_loop()

    def replay(jobs):  # the gate is synchronous (it drives Ray actors); run it in a thread
        return [asyncio.run_coroutine_threadsafe(replayer.verify(j), loop).result() for j in jobs]

    class Plan:  # the two TaskSet questions the gate asks
        def contains(self, template_id, seed):
            return True

        def find(self, template_id, seed, task_id):
            return task

    light = _Light(t.trajectory_id, task.task_id, task.template_id, 0, True, None, 1, "", [], pack_steps(steps_of(t)), [])
    for mode, status in (("flag", "accepted"), ("reject", "rejected")):
        verdicts = {t.trajectory_id: GateVerdict("accepted", None)}
        config = QualityConfig.model_validate({"replay": {"relocated": mode}, "minimality": {"mode": "off"}})
        counts = await asyncio.to_thread(
            _replay_gate, str(tmp_path / mode), config, Plan(), {t.trajectory_id: [light]}, verdicts, replay
        )
        v = verdicts[t.trajectory_id]
        assert v.status == status, (mode, v)
        if mode == "flag":
            assert "replay_relocated" in v.consistency_flags and counts["relocated"] == 1
        else:
            assert "the layout moved" in v.reject_reason


# ---------------------------------------------------------------- under load, end to end


@pytest.fixture
def cpu_hogs():
    """A busy loop on every core for the length of the test."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    yield hogs
    for h in hogs:
        h.kill()
        h.wait()


@pytest.mark.slow
def test_under_load_replay_rejects_nothing_its_recording_passed(tmp_path, cpu_hogs):
    """The default pipeline's timing-sensitive templates, recorded and replayed
    with every core busy: no trajectory that passed its judge when recorded
    fails its replay, and every accepted one replays from the shards alone."""
    out = tmp_path / "out"
    pipeline = tmp_path / "load.yaml"
    pipeline.write_text(
        f"""
name: load
output_dir: {out}
tasks:
  - templates: {MINIWOB}
    include: {json.dumps(TIMING_SENSITIVE)}
    seeds_per_template: 2
sources:
  solver: {{actors: 1, contexts_per_actor: 3}}
quality:
  replay: {{actors: 1, contexts_per_actor: 3}}
  minimality: {{mode: drop}}
ray: {{batch_size: 3, num_cpus: 2}}
"""
    )
    synth = str(Path(sys.executable).with_name("synth"))
    run = subprocess.run([synth, "run", str(pipeline)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    gates = json.loads((out / "manifest.json").read_text())["gates"]
    assert gates["judge"]["in"] == 2 * len(TIMING_SENSITIVE)
    assert gates["replay"]["rejected"] == 0, gates["replay"]
    assert gates["replay"]["passed"] == gates["replay"]["in"] > 0
    # every replay ran beside recording (quality.replay.ahead): none was left for after it
    assert gates["replay"]["cached"] == gates["replay"]["in"] and gates["replay"]["replayed"] == 0, gates["replay"]

    trajectories = pq.read_table(out / "data/trajectories").to_pylist()
    accepted = [t for t in trajectories if t["status"] == "accepted"]
    assert accepted and all(t["task_config"] for t in accepted)
    assert all("waited_ms" in s and "settle_ms" in s for t in accepted for s in t["steps"])
    steps = pq.read_table(out / "data/steps", columns=["waited_ms", "settle_ms", "settled"])
    assert steps.num_rows > 0 and sum(steps["settle_ms"].to_pylist()) > 0

    again = subprocess.run([synth, "replay", str(out)], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert f"{len(accepted)} of {len(accepted)} accepted trajectories replayed" in again.stdout
