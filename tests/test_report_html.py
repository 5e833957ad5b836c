"""`synth stats --html` in a real Chromium: the page renders offline with no
console errors, its plots are drawn, and a table row's link opens the right
trajectory with its steps, screenshots and the action overlaid.

The input is a small real output: MiniWoB++ episodes recorded with the
session's Chromium, staged, and gated into shards by `synth run` (sources
off, replay off: the gates that need no browser still reject some), so the
report sees accepted and rejected trajectories; and an annotation queue where
two labelers did one task in different orders, harvested into staging as
`synth run` does, so `synth stats` and the report show their agreement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from solvers.miniwob import fill, quoted
from synth import staging
from synth.episode import run_episode
from synth.schema import Trajectory, trajectory_id
from synth.solver import get_solver
from synth.tasks import tasks_from

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates/tasks/miniwob.yaml"

pytestmark = pytest.mark.slow


def _task(name: str, seed: int):
    (t,) = [t for t in tasks_from(TEMPLATES, [name], seeds=seed + 1) if t.seed == seed]
    return t


def _as(t: Trajectory, source: str, detail: str) -> Trajectory:
    return t.model_copy(deep=True, update={"source": source, "source_detail": detail,
                                           "trajectory_id": trajectory_id(t.task_id, source, detail)})


def _pipeline(tmp: Path) -> Path:
    p = tmp / "pipeline.yaml"
    p.write_text(
        f"""
name: report
output_dir: {tmp / 'out'}
tasks:
  - templates: {TEMPLATES}
    include: [click-button, login-user, click-checkboxes]
    seeds_per_template: 3
sources:
  solver: {{enabled: false}}
quality:
  replay: {{enabled: false}}
ray: {{batch_size: 2, num_cpus: 2}}
"""
    )
    return p


def _synth(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "synth.cli", *args], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def made(browser, miniwob_site, tmp_path_factory) -> dict:
    """A gated output and its report: ids by role, the report's path."""
    from synth.env import BrowserEnv

    async def record(name: str, seed: int, policy=None, source: str = "solver", detail: str = "") -> Trajectory:
        env = BrowserEnv(browser, miniwob_site)
        try:
            t = _task(name, seed)
            return await run_episode(env, t, policy or get_solver(t.solver), source=source,
                                     source_detail=detail or t.solver)
        finally:
            await env.close()

    async def idle(env, obs) -> None:  # clicks the instruction and stops: the judge fails it
        await env.click(next(e for e in obs.elements if e.html_id == "query"))

    async def password_first(env, obs) -> None:  # the other order: the judge passes it too
        user, password = quoted(env.instruction)
        await fill(env, obs.find("Password", role="textbox"), password)
        await fill(env, obs.find("Username", role="textbox"), user)
        await env.click(obs.find("Login", role="button"))

    good = await record("click-button", 0)
    login = await record("login-user", 1)
    failed = await record("click-checkboxes", 2, idle)
    recorded = {
        "good": good, "login": login, "failed": failed,
        "copy": _as(good, "solver", "copy"),  # the dedup gate rejects it
        # two labelers, one task: ann as the solver did it, bob in the other order
        "ann": _as(login, "human", "ann"), "bob": await record("login-user", 1, password_first, "human", "bob"),
    }
    tmp = tmp_path_factory.mktemp("report")
    staging.write_batch(tmp / "out/staging", [t for k, t in recorded.items() if k not in ("ann", "bob")], "recorded")
    _labelers(tmp / "out", _task("login-user", 1), [recorded["ann"], recorded["bob"]])
    review = {"trajectory_id": login.trajectory_id, "reviewer": "rita", "verdict": "reject",
              "tags": ["slow"], "comment": "clicked around", "reviewed_at": 1.0}
    pq.write_table(pa.Table.from_pylist([review]), tmp / "out/reviews.parquet")
    _synth("run", str(_pipeline(tmp)))
    report = tmp / "report.html"
    stats = _synth("stats", str(tmp / "out"), "--html-path", str(report)).stdout
    rows = {r["trajectory_id"]: r for r in pq.read_table(tmp / "out/data/trajectories").to_pylist()}
    return {"report": report, "out": tmp / "out", "rows": rows, "ids": {k: t.trajectory_id for k, t in recorded.items()},
            "stats": stats}


def _labelers(out: Path, task, done: list[Trajectory]) -> None:
    """The queue `synth run` keeps in `out`: `task` with a slot per
    trajectory, each leased and submitted by its labeler, then harvested into
    staging."""
    from annotation_ui.harvest import harvest
    from annotation_ui.store import Store

    store = Store(out / "annotations.db")
    try:
        assert store.enqueue(task, slots=len(done)) == len(done)
        for t in done:
            user = store.user_by_token(store.add_user(t.source_detail, "labeler"))
            lease = store.lease_next(user)
            assert lease.task.task_id == t.task_id
            store.submit(user, lease.item_id, t)
        assert harvest(store, out / "staging") == len(done)
    finally:
        store.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser, made):
    """The report open in a fresh page, with every console error and every
    request that would leave the file collected."""
    context = await browser.new_context()
    p = await context.new_page()
    p.problems = []
    p.on("console", lambda m: p.problems.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: p.problems.append(str(e)))
    p.on("request", lambda r: p.problems.append("request " + r.url) if not r.url.startswith(("file:", "data:")) else None)
    await p.goto(made["report"].as_uri())
    yield p
    await context.close()


def test_the_gated_output_has_what_the_report_must_show(made):
    rows, ids = made["rows"], made["ids"]
    assert rows[ids["good"]]["status"] == "accepted"
    assert rows[ids["copy"]]["reject_reason"].startswith("duplicate:")
    assert rows[ids["failed"]]["reject_reason"].startswith("judge:")
    assert rows[ids["login"]]["reject_reason"].startswith("review:")


async def test_the_page_renders_offline_with_every_plot_drawn(page, made):
    specs = json.loads(await page.text_content("#specs"))
    # every plot has data here, labelers included (two labelers did one task)
    assert len(specs) == 7 and {"plot-labeler-throughput", "plot-labeler-agreement"} <= set(specs)
    await page.wait_for_function(f"document.querySelectorAll('.plot svg.marks').length === {len(specs)}", timeout=30_000)
    for plot_id in specs:
        marks = await page.evaluate(f"document.querySelectorAll('#{plot_id} svg.marks path, #{plot_id} svg.marks rect').length")
        assert marks > 0, plot_id
    assert await page.locator(".plot .empty").count() == 0
    # the funnel: one row per source and template plus a total per source
    funnel = await page.locator("#funnel-table tr.row").all_inner_texts()
    assert any("miniwob/click-button" in r for r in funnel) and sum("(all)" in r for r in funnel) == 2
    assert page.problems == []


async def test_a_funnel_row_lists_its_trajectories_and_a_list_row_opens_one(page, made):
    ids, rows = made["ids"], made["rows"]
    await page.locator("#funnel-table tr.row", has_text="miniwob/click-button").filter(has_text="solver").locator("a").first.click()
    await page.wait_for_function("location.hash.startsWith('#list?')")
    listed = await page.locator("#list tbody tr").evaluate_all("trs => trs.map(tr => tr.dataset.id)")
    assert sorted(listed) == sorted([ids["good"], ids["copy"]])
    # the rejected copy: its id, its steps and what rejected it
    await page.locator(f"#list tbody tr[data-id='{ids['copy']}'] a").click()
    await _shows(page, ids["copy"], rows[ids["copy"]]["num_steps"])
    viewer = await page.inner_text("#viewer")
    assert "duplicate: of" in viewer and "rejected" in viewer
    # its "duplicate of" link opens the accepted one
    await page.locator("#viewer a", has_text=ids["good"]).click()
    await _shows(page, ids["good"], rows[ids["good"]]["num_steps"])
    assert page.problems == []


async def test_every_table_links_rows_to_trajectories(page, made):
    ids = made["ids"]
    # a rejection reason lists what that stage rejected
    await page.locator("#reasons-table a", has_text="judge").click()
    await page.wait_for_function("document.querySelectorAll('#list tbody tr').length === 1")
    await page.locator(f"#list tbody tr[data-id='{ids['failed']}'] a").click()
    await _shows(page, ids["failed"], made["rows"][ids["failed"]]["num_steps"])
    assert "judge" in await page.inner_text("#viewer")
    # a stats table row, and a link straight to a trajectory
    assert await page.locator("table.stats tr.row a").count() >= 3
    await page.evaluate(f"location.hash = '#t/{ids['bob']}'")
    await _shows(page, ids["bob"], made["rows"][ids["bob"]]["num_steps"])
    assert "human · bob" in await page.inner_text("#viewer")
    assert page.problems == []


def test_stats_prints_the_labelers_agreement_and_the_pairs_that_disagree(made):
    """Ann and bob both passed, in different orders: the same outcome, not
    the same sequence, part of their steps in common."""
    from annotation_ui import agreement

    ids, stats = made["ids"], made["stats"]
    run = agreement.for_output(made["out"])
    (row,) = run.table
    assert (row["template_id"], row["tasks"], row["pairs"], row["outcome_agreement"], row["sequence_agreement"]) == (
        "miniwob/login-user", 1, 1, 1.0, 0.0)
    assert 0 < row["step_agreement"] < 1
    (d,) = run.disagreements
    assert {d["a"], d["b"]} == {ids["ann"], ids["bob"]} and d["task_id"] == made["rows"][ids["bob"]]["task_id"]
    assert "labeler agreement" in stats
    (line,) = [ln for ln in stats.splitlines() if "miniwob/login-user" in ln and "100%" in ln]
    assert [c.strip() for c in line.split("│")[1:-1]] == ["miniwob/login-user", "1", "1", "100%", "0%",
                                                          f"{row['step_agreement']:.2f}", "1"]
    assert f"disagreement: {agreement.describe(d)}" in stats


async def test_the_report_shows_the_queues_agreement_and_a_disagreement_opens_its_trajectory(page, made):
    from annotation_ui import agreement

    ids = made["ids"]
    (row,) = agreement.for_output(made["out"]).table
    assert (await page.inner_text("#agreement + p.note")).startswith("From the annotation queue")
    cells = await page.locator("#agreement-table tr.row").all()
    assert len(cells) == 1 and await cells[0].locator("td").all_inner_texts() == [
        "miniwob/login-user", "1", "1", "100%", "0%", f"{row['step_agreement']:.2f}", "1"]
    pairs = page.locator("#disagreements-table tr.row")
    assert await pairs.count() == 1
    assert await pairs.locator("td").all_inner_texts() == [
        "miniwob/login-user", made["rows"][ids["bob"]]["task_id"], "ann", ids["ann"], "bob", ids["bob"], "same", "no",
        f"{row['step_agreement']:.2f}"]
    await pairs.locator("a", has_text=ids["bob"]).click()
    await _shows(page, ids["bob"], made["rows"][ids["bob"]]["num_steps"])
    assert "human · bob" in await page.inner_text("#viewer")
    assert page.problems == []


def test_without_its_queue_the_report_measures_the_export_and_says_so(made, monkeypatch):
    from synth.report import render

    monkeypatch.setattr("annotation_ui.agreement.output_queue", lambda out_dir, manifest=None: Path("/nowhere/q.db"))
    page = render(made["out"], screenshots=False)
    assert "The annotation queue (/nowhere/q.db) is not on this machine" in page
    assert "disagreements-table" not in page
    # the exported copies differ in order: no sequence agreement, and no step-level score to show
    assert '<td class="n">0%</td>\n<td class="n">-</td>' in page


async def _shows(page, tid: str, num_steps: int) -> None:
    """The viewer shows trajectory `tid`: its id, one block per step, each
    screenshot loaded with the action overlaid on it."""
    await page.wait_for_function(f"document.querySelector('#viewer .tid')?.textContent === '{tid}'")
    steps = page.locator("#viewer .step")
    assert await steps.count() == num_steps > 0
    loaded = await page.evaluate("[...document.querySelectorAll('#viewer .shot img')].map(i => i.complete && i.naturalWidth)")
    assert len(loaded) == num_steps and all(w and w > 0 for w in loaded)
    # a click draws its point and the target's box over the screenshot
    first = steps.first
    if await first.locator("dd b").inner_text() == "click":
        assert await first.locator(".shot svg circle.point").count() == 1
        assert await first.locator(".shot svg rect.target").count() == 1
    overlaid = await page.locator("#viewer .shot svg circle.point").count()
    assert overlaid >= 1


def _row(template: str, status: str, reason: str = "", source: str = "solver", cost: float = 0.0) -> dict:
    from synth.report_html.data import rejecting_stage

    return {"id": f"{template}-{status}-{reason}", "template": template, "source": source, "detail": "", "status": status,
            "reason": reason, "stage": rejecting_stage(status, reason), "steps": 2, "tokens_in": 10, "tokens_out": 5,
            "cost": cost, "judge_tokens": 0, "judge_cost": 0.0, "seconds": 1.0, "started_at": 1.7e9, "instruction": ""}


def test_the_funnel_counts_each_stage_in_pipeline_order():
    from synth.report_html.data import funnel

    rows = [_row("a", "accepted", cost=0.5), _row("a", "rejected", "error: browser crashed"),
            _row("a", "rejected", "judge: wrong answer"), _row("a", "rejected", "duplicate: of x"),
            _row("a", "rejected", "replay: the judge failed on replay", cost=0.5)]
    (a, total) = funnel(rows)
    assert (a["template"], total["template"], total["total"]) == ("a", "(all)", True)
    assert (a["attempted"], a["judged"], a["passed_judge"], a["passed_review"], a["passed_dedup"],
            a["passed_replay"], a["accepted"]) == (5, 4, 3, 3, 2, 1, 1)
    assert a["cost"] == 1.0 and a["usd_per_accepted"] == 1.0 and a["tokens_in"] == 50
    assert (a["replay_s"], a["minimality_s"]) == (0.0, 0.0)  # rows of an output whose replays were not timed
    rows[0] |= {"replay_s": 2.0, "minimality_s": 3.5}
    rows[-1] |= {"replay_s": 1.25, "minimality_s": 0.0}
    (a, total) = funnel(rows)
    assert (a["replay_s"], a["minimality_s"]) == (total["replay_s"], total["minimality_s"]) == (3.2, 3.5)


def test_a_run_without_labelers_says_so_instead_of_an_empty_plot():
    from synth.report import _plots

    plots = {p["id"]: p for p in _plots([_row("a", "accepted")], [{"source": "solver", "kind": "click", "n": 2}], [])}
    for key in ("plot-labeler-throughput", "plot-labeler-agreement"):
        assert plots[key]["spec"] is None and plots[key]["empty"].startswith("No labeler data in this run")
    assert plots["plot-rejections"]["spec"] is None and plots["plot-steps-per-trajectory"]["spec"] is not None


def test_screenshots_past_the_budget_are_left_out_and_the_page_says_so(made):
    from synth.report import render

    full = render(made["out"])
    assert full.count("data:image/png;base64,") >= sum(r["num_steps"] for r in made["rows"].values())  # one per step
    small = render(made["out"], screenshot_mb=0.001)
    assert "screenshots are left out: this report carries at most 0.001 MB" in small
    assert "were spent" in small and len(small) < len(full)
    bare = render(made["out"], screenshots=False)
    assert "data:image/png" not in bare and "(--no-screenshots)" in bare
