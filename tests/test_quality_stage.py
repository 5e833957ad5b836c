"""The quality stage end to end: real recordings staged, then `synth run`
(real Ray replay actors, real Chromium) gates them into the shards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from synth.solver import get_solver
from synth import staging
from synth.episode import run_episode
from synth.schema import Trajectory, trajectory_id
from synth.tasks import tasks_from

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates/tasks/miniwob.yaml"

pytestmark = pytest.mark.slow


def task(name: str, seed: int):
    (t,) = [t for t in tasks_from(TEMPLATES, [name], seeds=seed + 1) if t.seed == seed]
    return t


def pipeline(tmp: Path, minimality: str = "flag") -> Path:
    p = tmp / "pipeline.yaml"
    p.write_text(
        f"""
name: gates
output_dir: {tmp / 'out'}
tasks:
  - templates: {TEMPLATES}
    include: [click-button, login-user, click-checkboxes]
    seeds_per_template: 4
sources:
  solver: {{enabled: false}}
quality:
  minimality: {{mode: {minimality}}}
  replay: {{actors: 1, contexts_per_actor: 2}}
ray: {{batch_size: 2, num_cpus: 2}}
"""
    )
    return p


def renamed(t: Trajectory, detail: str) -> Trajectory:
    return t.model_copy(
        deep=True,
        update={"source_detail": detail, "trajectory_id": trajectory_id(t.task_id, t.source, detail)},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def recorded(browser, miniwob_site):
    """Real trajectories, plus the faulty ones the gates exist for."""
    from synth.env import BrowserEnv

    async def record(name, seed, policy=None):
        env = BrowserEnv(browser, miniwob_site)
        t = task(name, seed)
        return await run_episode(env, t, policy or get_solver(t.solver), source="solver", source_detail=t.solver)

    good = await record("click-button", 0)
    login = await record("login-user", 1)
    checkboxes = await record("click-checkboxes", 2)
    solver = get_solver("miniwob.click-checkboxes")

    async def dawdle(env, obs):
        # a click on the instruction text first: it changes nothing
        query = next(e for e in obs.elements if e.html_id == "query")
        await env.click(query)
        await solver(env, env.obs)

    noisy = await record("click-checkboxes", 3, dawdle)
    # a judge fooled at recording time: the login click is gone, but the
    # trajectory claims to pass; only a replay can tell
    fooled = renamed(login, "tampered")
    fooled.steps = [s for s in fooled.steps if not (s.action.name == "click" and s.element and "login" in (s.element.name or "").lower())]
    assert len(fooled.steps) < len(login.steps)
    copy = renamed(good, "copy")
    for t in (good, login, checkboxes, noisy):
        assert t.status == "accepted", t.reject_reason
    return {"good": good, "login": login, "checkboxes": checkboxes, "noisy": noisy, "fooled": fooled, "copy": copy}


def stage(tmp: Path, recorded: dict[str, Trajectory], minimality: str = "flag", reject: str | None = None) -> dict:
    p = pipeline(tmp, minimality)
    staging.write_batch(tmp / "out/staging", list(recorded.values()), "recorded")
    if reject:
        review = {"trajectory_id": recorded[reject].trajectory_id, "reviewer": "rita", "verdict": "reject",
                  "tags": ["wrong-field"], "comment": "typed into the wrong box", "reviewed_at": 1.0}
        pq.write_table(pa.Table.from_pylist([review]), tmp / "out/reviews.parquet")
    result = subprocess.run([sys.executable, "-m", "synth.cli", "run", str(p)], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pq.read_table(tmp / "out/data/trajectories").to_pylist()
    by_id = {r["trajectory_id"]: r for r in rows}
    manifest = json.loads((tmp / "out/manifest.json").read_text())
    return {name: by_id[t.trajectory_id] for name, t in recorded.items()} | {"_manifest": manifest, "_out": result.stdout}


async def test_gates_reject_with_reasons_and_keep_the_rest(recorded, tmp_path):
    rows = stage(tmp_path, recorded, reject="checkboxes")
    assert rows["good"]["status"] == "accepted" and rows["good"]["replay_passed"] is True
    assert rows["login"]["status"] == "accepted"
    # an exact copy: kept in the data, rejected, pointing at the representative
    assert rows["copy"]["status"] == "rejected" and rows["copy"]["duplicate_of"] == rows["good"]["trajectory_id"]
    assert rows["copy"]["reject_reason"].startswith("duplicate:")
    # the replay catches what the recording's judge did not
    assert rows["fooled"]["status"] == "rejected" and rows["fooled"]["replay_passed"] is False
    assert rows["fooled"]["reject_reason"].startswith("replay:")
    # the dawdling click did nothing: minimality finds it on replay
    assert rows["noisy"]["status"] == "rejected" and rows["noisy"]["reject_reason"] == "minimality: unnecessary steps 0"
    assert "unnecessary_steps" in rows["noisy"]["consistency_flags"]
    # the reviewer's reject reaches the export, with the verdict itself
    assert rows["checkboxes"]["status"] == "rejected" and rows["checkboxes"]["reject_reason"].startswith("review: typed")
    assert rows["checkboxes"]["review"]["tags"] == ["wrong-field"]
    gates = rows["_manifest"]["gates"]
    assert gates["dedup"]["rejected"] == 1 and gates["replay"]["rejected"] == 1 and gates["review"]["rejected"] == 1
    # the tampered login is a near duplicate of the real one and shorter, so it
    # represented the group first; it failed replay and the real one stood in
    assert gates["replay"]["promoted"] == 1
    assert gates["minimality"]["rejected"] == 1 and gates["accepted"] == 2 == rows["_manifest"]["accepted"]
    assert "gates:" in rows["_out"]
    # steps of rejected trajectories stay too, with their status
    steps = pq.read_table(tmp_path / "out/data/steps", columns=["trajectory_id", "status"]).to_pylist()
    assert {s["status"] for s in steps if s["trajectory_id"] == rows["fooled"]["trajectory_id"]} == {"rejected"}
    _verification_is_timed(tmp_path / "out", rows)


def _verification_is_timed(out: Path, rows: dict) -> None:
    """What replay and minimality spent reaches the manifest, `synth run`'s
    summary and the report's funnel, per trajectory: those replayed took
    time, the one the minimality gate tried took more, the copy none."""
    from synth.report import render
    from synth.report_html.data import verification_seconds

    gates = rows["_manifest"]["gates"]
    assert gates["replay"]["seconds"] > 0 and gates["minimality"]["seconds"] > 0
    assert "replay took" in rows["_out"]
    spent = verification_seconds(out)
    ids = {k: r["trajectory_id"] for k, r in rows.items() if not k.startswith("_")}
    assert spent[ids["good"]][0] > 0 and spent[ids["fooled"]][0] > 0 and spent[ids["noisy"]][1] > 0
    assert spent[ids["good"]][1] == 0 and ids["copy"] not in spent  # a duplicate is never replayed
    assert sum(a for a, _ in spent.values()) == pytest.approx(gates["replay"]["seconds"], abs=0.2)
    page = render(out, screenshots=False)
    assert "s of browser time" in page and "which this output does not record" not in page


async def test_minimality_drop_removes_the_step_and_keeps_the_trajectory(recorded, tmp_path):
    rows = stage(tmp_path, {"noisy": recorded["noisy"]}, minimality="drop")
    noisy = rows["noisy"]
    assert noisy["status"] == "accepted" and "unnecessary_steps_dropped" in noisy["consistency_flags"]
    assert noisy["num_steps"] == len(recorded["noisy"].steps) - 1
    assert [s["index"] for s in noisy["steps"]] == list(range(noisy["num_steps"]))
    first = recorded["noisy"].steps[1].action
    assert noisy["steps"][0]["action"]["name"] == first.name
    assert noisy["steps"][0]["action"]["x"] == pytest.approx(first.x, abs=1e-6)


async def test_a_templates_consistency_declaration_reaches_the_gate(browser, miniwob_site, tmp_path):
    """simple-arithmetic through `synth run`: the template that declares its
    typed text computed keeps every correct episode; the same task undeclared
    loses those whose result no page showed, to `typed_text_ungrounded`."""
    from synth.env import BrowserEnv
    from synth.quality.consistency import check

    sys.path.insert(0, str(ROOT / "tests"))
    from test_quality import solve_arithmetic

    templates = tmp_path / "arith.yaml"
    templates.write_text(
        "site: miniwob\n"
        "defaults: {params: {task: simple-arithmetic}, judge: {type: miniwob_reward}, max_steps: 8}\n"
        "templates:\n"
        "  - {id: arith, consistency: {typed_text: computed}}\n"
        "  - {id: arith-undeclared, seeds: {start: 4, count: 100}}\n"
    )
    recorded = []
    for t in tasks_from(templates, seeds=4):
        recorded.append(await run_episode(BrowserEnv(browser, miniwob_site), t, solve_arithmetic,
                                          source="solver", source_detail="arith"))
    assert all(t.status == "accepted" for t in recorded)
    unseen = {t.trajectory_id for t in recorded if t.template_id == "miniwob/arith-undeclared" and check(t)}
    assert unseen, "no undeclared episode typed a result the page did not show"
    # the declaration matters: some declared episodes typed a result no page showed too
    assert any(check(t) for t in recorded if t.template_id == "miniwob/arith")
    staging.write_batch(tmp_path / "out/staging", recorded, "recorded")
    p = tmp_path / "pipeline.yaml"
    p.write_text(
        f"name: arith\noutput_dir: {tmp_path / 'out'}\n"
        f"tasks:\n  - templates: {templates}\n    seeds_per_template: 4\n"
        "sources:\n  solver: {enabled: false}\n"
        "quality:\n  dedup: {enabled: false}\n  replay: {actors: 1, contexts_per_actor: 2}\n"
        "ray: {batch_size: 2, num_cpus: 2}\n"
    )
    result = subprocess.run([sys.executable, "-m", "synth.cli", "run", str(p)], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["trajectory_id"]: r for r in pq.read_table(tmp_path / "out/data/trajectories").to_pylist()}
    for t in recorded:
        row = rows[t.trajectory_id]
        if t.trajectory_id in unseen:
            assert row["status"] == "rejected" and row["reject_reason"] == "consistency: typed_text_ungrounded", row
        else:
            assert row["status"] == "accepted" and row["consistency_flags"] == [], row


async def test_a_reviewer_overriding_the_judge_is_accepted_and_a_plain_accept_is_not(browser, miniwob_site, tmp_path):
    """Two trajectories the judge failed, both accepted by a reviewer: the one
    accepted with "override the judge" and a reason is accepted, recorded as
    such and not replayed (a replay would only ask the overridden judge
    again); the one accepted without the override stays rejected."""
    from synth.env import BrowserEnv

    async def nothing(env, obs):
        await env.done()

    failed = []
    for seed in (5, 6):
        t = task("click-button", seed)
        failed.append(await run_episode(BrowserEnv(browser, miniwob_site), t, nothing, source="solver",
                                        source_detail="nothing"))
    assert all(t.reject_reason.startswith("judge:") for t in failed)
    p = pipeline(tmp_path)
    staging.write_batch(tmp_path / "out/staging", failed, "failed")
    reviews = [
        {"trajectory_id": failed[0].trajectory_id, "reviewer": "rita", "verdict": "accept", "tags": ["judge-wrong"],
         "comment": "", "reviewed_at": 1.0, "override_judge": True, "override_reason": "the task was done"},
        {"trajectory_id": failed[1].trajectory_id, "reviewer": "rita", "verdict": "accept", "tags": [],
         "comment": "", "reviewed_at": 1.0, "override_judge": False, "override_reason": ""},
    ]
    pq.write_table(pa.Table.from_pylist(reviews), tmp_path / "out/reviews.parquet")
    result = subprocess.run([sys.executable, "-m", "synth.cli", "run", str(p)], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["trajectory_id"]: r for r in pq.read_table(tmp_path / "out/data/trajectories").to_pylist()}
    overridden, plain = rows[failed[0].trajectory_id], rows[failed[1].trajectory_id]
    assert overridden["status"] == "accepted" and overridden["review"]["override_judge"] is True
    assert overridden["review"]["override_reason"] == "the task was done" and overridden["replay_passed"] is None
    assert plain["status"] == "rejected" and plain["reject_reason"].startswith("judge:")
    gates = json.loads((tmp_path / "out/manifest.json").read_text())["gates"]
    assert gates["review"]["overrode_judge"] == 1 and gates["replay"]["overridden"] == 1
