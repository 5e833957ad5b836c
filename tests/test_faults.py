"""Crashes and faults: a run killed anywhere resumes with exactly the totals
of an uninterrupted run; a crashed or hung browser costs a retry, not the
run, and an episode whose retries run out is rejected with the reason; a run
whose episodes mostly fail stops with a summary; Ctrl-C stops cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from synth.pipeline import prepare
from synth.schema import trajectory_id

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates/tasks/miniwob.yaml"

pytestmark = pytest.mark.slow


def write_pipeline(tmp: Path, include: list[str], seeds: int, source: str = "", templates: Path = TEMPLATES) -> Path:
    p = tmp / "pipeline.yaml"
    p.write_text(
        f"""
name: faults
output_dir: {tmp / 'out'}
tasks:
  - templates: {templates}
    include: {json.dumps(include)}
    seeds_per_template: {seeds}
sources:
  solver: {{actors: 1, contexts_per_actor: 2, num_cpus: 1 {source}}}
quality:
  replay: {{actors: 1, contexts_per_actor: 2}}
ray: {{batch_size: 2, num_cpus: 2}}
"""
    )
    return p


RESUME_TEMPLATES = """\
site: miniwob
defaults: {judge: {type: miniwob_reward}, max_steps: 20}
templates:
  - {id: click-button, params: {task: click-button}, solver: miniwob.click-button}
  - {id: click-checkboxes, params: {task: click-checkboxes}, solver: miniwob.click-checkboxes, max_steps: 12}
  - {id: focus-text, params: {task: focus-text}, solver: miniwob.focus-text, max_steps: 5}
  # Rejected every time, each by another gate, so that a resume that changes
  # a verdict shows in the totals, not only one that loses a trajectory:
  # the very episodes of click-button again (dedup keeps one of each pair),
  - {id: click-button-again, params: {task: click-button}, solver: miniwob.click-button}
  # a judge that wants an answer focus-text's solver never gives (judge),
  - {id: no-answer, params: {task: focus-text}, solver: miniwob.focus-text, judge: {type: string_match, expected: "x"}}
  # and a step limit click-checkboxes' solver runs into (error).
  - {id: cut-short, params: {task: click-checkboxes}, solver: miniwob.click-checkboxes, max_steps: 1}
"""


@pytest.fixture(scope="module")
def resume_templates(tmp_path_factory) -> Path:
    """One templates file for the reference run and every resumed run (so
    their configs differ only in `output_dir`)."""
    path = tmp_path_factory.mktemp("templates") / "resume.yaml"
    path.write_text(RESUME_TEMPLATES)
    return path


def write_resume_pipeline(tmp: Path, templates: Path) -> Path:
    """The pipeline of every kill/resume test: 12 tasks that pass and 6 that
    are rejected (2 duplicates, 2 by the judge, 2 by an error)."""
    p = tmp / "pipeline.yaml"
    p.write_text(
        f"""
name: faults
output_dir: {tmp / 'out'}
tasks:
  - templates: {templates}
    include: [click-button, click-checkboxes, focus-text]
    seeds_per_template: 4
  - templates: {templates}
    include: [click-button-again, no-answer, cut-short]
    seeds_per_template: 2
sources:
  solver: {{actors: 1, contexts_per_actor: 2, num_cpus: 1}}
quality:
  replay: {{actors: 1, contexts_per_actor: 2}}
ray: {{batch_size: 2, num_cpus: 2}}
"""
    )
    return p


def totals(out: Path) -> dict:
    """Everything a finished run says about its data: the manifest (counts
    per source, template, site, reason, verdict, steps, SFT samples, every
    gate) and each trajectory's verdict from the shards. Left out is only
    what legitimately differs between an uninterrupted run and one killed
    and resumed on the same tasks:
    - `run_ids`, `created_at`, `pipeline` (the file's path) and the config's
      `output_dir`: which runs, when, where;
    - `nodes_this_run`: only the episodes recorded by the last run, which
      after a resume may be none;
    - the replay gate's split between `replayed` and `cached`: a run killed
      after the replay cache was written reads those results back instead of
      replaying (the cache exists for that), so only their sum must match.
    Durations are not compared: the seconds replay and minimality spent
    (`gates.*.seconds`), nor durations, start times and run ids per
    trajectory (not in the manifest, not taken from the shards)."""
    m = json.loads((out / "manifest.json").read_text())
    for key in ("run_ids", "created_at", "pipeline", "nodes_this_run"):
        m.pop(key, None)
    m["config"].pop("output_dir")
    replay = m["gates"]["replay"]
    replay["replayed_or_cached"] = replay.pop("replayed") + replay.pop("cached")
    for gate in m["gates"].values():
        if isinstance(gate, dict):
            gate.pop("seconds", None)
    rows = pq.read_table(
        out / "data/trajectories",
        columns=["trajectory_id", "status", "reject_reason", "num_steps", "duplicate_of", "replay_passed", "consistency_flags"],
    ).to_pylist()
    ids = [r["trajectory_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a trajectory is in the shards twice"
    m["verdicts"] = {r.pop("trajectory_id"): r for r in rows}
    return m


@pytest.fixture(scope="module")
def reference(tmp_path_factory, resume_templates) -> dict:
    """The totals of one uninterrupted run of the resume pipeline, which
    every killed and resumed run must reproduce exactly."""
    tmp = tmp_path_factory.mktemp("reference")
    pipeline = write_resume_pipeline(tmp, resume_templates)
    code, err = finish(start(pipeline))
    assert code == 0, err[-3000:]
    ref = totals(tmp / "out")
    assert set(ref["verdicts"]) == expected_ids(pipeline)
    # the comparison means something only if every kind of verdict is there
    assert ref["accepted"] == 12 and ref["rejected"] == 6, ref["reject_reasons"]
    kinds = {r.split(":")[0] for r in ref["reject_reasons"]}
    assert kinds == {"duplicate", "judge", "error"}, ref["reject_reasons"]
    assert ref["gates"]["dedup"]["rejected"] == 2 and ref["gates"]["replay"]["passed"] == 12
    return ref


def assert_same_totals(out: Path, reference: dict) -> None:
    got = totals(out)
    assert got["duplicate_ids_skipped"] == 0  # nothing staged twice
    lost = set(reference["verdicts"]) - set(got["verdicts"])
    extra = set(got["verdicts"]) - set(reference["verdicts"])
    assert not lost and not extra, f"lost {sorted(lost)}, extra {sorted(extra)}"
    changed = {tid: (reference["verdicts"][tid], v) for tid, v in got["verdicts"].items() if v != reference["verdicts"][tid]}
    assert not changed, f"verdicts differ from the uninterrupted run (reference, resumed): {changed}"
    assert got == reference
    assert not list(out.glob(".data-*")) and not list((out / "staging").glob(".*.tmp"))


def start(pipeline: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "synth.cli", "run", str(pipeline)], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env={**os.environ, **env},
    )


def finish(proc: subprocess.Popen, timeout: float = 400) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the run left behind (Ray, browsers)
        except ProcessLookupError:
            pass
    return proc.returncode, err


def expected_ids(pipeline: Path) -> set[str]:
    return {trajectory_id(t.task_id, "solver", t.solver) for t in prepare(pipeline).tasks}


def staged_rows(out: Path) -> int:
    """Trajectories in staging (a file there is complete: atomic rename)."""
    return sum(pq.read_metadata(f).num_rows for f in (out / "staging").glob("*.parquet"))


def wait_for_staging(out: Path, proc: subprocess.Popen, timeout: float = 240) -> int:
    """Wait until the run staged its first batch; returns how many
    trajectories are staged. Fails the test if none is in time or the run
    ended first: what follows needs a run that is recording."""
    deadline = time.time() + timeout
    while not list((out / "staging").glob("*.parquet")):
        if proc.poll() is not None or time.time() > deadline:
            ended = proc.poll() is not None
            code, err = finish(proc, timeout=5)
            pytest.fail(f"the run ended (exit {code}) before it staged anything: {err[-3000:]}" if ended
                        else f"nothing staged after {timeout:.0f}s")
        time.sleep(0.05)
    return staged_rows(out)


DRIVER_POINTS = [
    "quality.replay_cache:1",  # everything recorded and replayed, the replay cache not yet in place
    "export.shard:1",          # half-way through writing the shards
    "export.shard:3",
    "export.swap:1",           # between the two renames that swap data/ in
    "manifest:1",              # shards in place, manifest not yet written
]
WORKER_POINTS = [
    "staging.write:1",         # a batch encoded, not yet renamed into staging
    "staging.written:2",       # right after a batch landed
]


@pytest.mark.timeout(600)
def test_killed_anywhere_resumes_with_exact_totals(tmp_path, resume_templates, reference):
    """SIGKILL of the whole run (driver, Ray, browsers) at two random moments
    and at each driver crash point in turn, resuming each time. The run then
    ends with exactly the uninterrupted run's totals: the same trajectories,
    each with the same verdict and steps, the same counts per source,
    template, reason and gate, every file readable."""
    pipeline = write_resume_pipeline(tmp_path, resume_templates)
    out = tmp_path / "out"
    for delay in (4.0, 7.0):  # mid-recording: Ray takes ~3 s to start
        proc = start(pipeline)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        finish(proc)
    for i, point in enumerate(DRIVER_POINTS):
        code, err = finish(start(pipeline, SYNTH_CRASH_AT=point, SYNTH_CRASH_FLAG=str(tmp_path / f"fired-{i}")))
        assert code == -signal.SIGKILL, f"{point}: {err[-2000:]}"
        for f in (out / "staging").glob("*.parquet"):
            pq.read_table(f)  # complete, or not there at all
    code, err = finish(start(pipeline))
    assert code == 0, err[-3000:]
    assert_same_totals(out, reference)


@pytest.mark.timeout(600)  # with the reference run, when run alone
@pytest.mark.parametrize("point", WORKER_POINTS)
def test_worker_killed_in_a_staging_write_loses_nothing(tmp_path, resume_templates, reference, point):
    """A worker dies inside a staging write; the run goes on with a new one
    and ends with the uninterrupted run's totals."""
    pipeline = write_resume_pipeline(tmp_path, resume_templates)
    code, err = finish(start(pipeline, SYNTH_CRASH_AT=point, SYNTH_CRASH_FLAG=str(tmp_path / "fired")))
    assert code == 0 and (tmp_path / "fired").exists(), err[-3000:]
    assert_same_totals(tmp_path / "out", reference)


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, command name) of every process under `root` (Playwright starts
    Chromium in a session of its own, so session and group do not find it)."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid, rest = text.split(" (", 1)
        name, fields = rest.rsplit(") ", 1)
        names[int(pid)] = name
        children.setdefault(int(fields.split()[1]), []).append(int(pid))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append((child, names[child]))
            todo.append(child)
    return out


def _signal_browsers(proc: subprocess.Popen, sig: int) -> list[int]:
    pids = [pid for pid, name in descendants(proc.pid) if name.startswith("chromium")]
    for pid in pids:
        try:
            os.kill(int(pid), sig)
        except ProcessLookupError:
            pass
    return pids


RETRIED = re.compile(r"synth: (\w+) \(miniwob/[\w-]+\) lost to the browser on attempt 1 of 3, retrying on a fresh browser")


@pytest.mark.parametrize("fault", ["crash", "hang"])
def test_lost_browser_costs_a_retry_not_the_run(tmp_path, fault):
    """Every browser of the run is killed, or frozen (SIGSTOP: alive but
    silent), while episodes run on it: those episodes are retried on a fresh
    browser (the actor says so, Ray forwards it to the driver's stderr) and
    every trajectory, the retried ones included, is accepted."""
    pipeline = write_pipeline(tmp_path, ["login-user", "click-checkboxes"], seeds=4, source=", episode_timeout_s: 4")
    proc = start(pipeline)
    staged = wait_for_staging(tmp_path / "out", proc)
    signalled = _signal_browsers(proc, signal.SIGKILL if fault == "crash" else signal.SIGSTOP)
    try:
        code, err = finish(proc, timeout=300)
    finally:
        if fault == "hang":  # in a session of their own, stopped: nothing else would ever end them
            for pid in signalled:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    # one batch was staged and the others were on the actor: episodes were running
    assert signalled and staged < 8, f"{staged} of 8 staged before the browsers were lost: nothing left to retry"
    assert code == 0, err[-3000:]
    retried = set(RETRIED.findall(err))
    assert retried, f"no episode was retried: {err[-3000:]}"
    rows = pq.read_table(tmp_path / "out/data/trajectories", columns=["task_id", "status", "reject_reason", "error"]).to_pylist()
    assert len(rows) == 8
    assert all(r["status"] == "accepted" for r in rows), ([r["reject_reason"] for r in rows if r["reject_reason"]], err[-4000:])
    assert retried <= {r["task_id"] for r in rows}


async def _crash_every_attempt(tmp_path, monkeypatch, make_task):
    """Run, through the source actor's own retry loop (in process, without
    Ray), a task whose policy crashes its page on every attempt, then an
    ordinary task on the same actor. Returns both trajectories and the
    browser each crashing attempt ran on."""
    from synth.config import SourceConfig
    from synth.solver import SOLVERS
    from synth.workers import SourceActor

    browsers = []

    async def crash_every_time(env, obs):
        browsers.append(env.page.context.browser)
        try:
            await env.page.goto("chrome://crash")  # the renderer dies
        except Exception:
            pass
        await env.click(obs.find("Submit", role="button"))

    monkeypatch.setitem(SOLVERS, "test.crash-every-time", crash_every_time)
    actor = SourceActor.__ray_actor_class__("solver", {"config": SourceConfig(episode_retries=2)}, str(tmp_path), "t", 2)
    try:
        await actor._start(actor.source)  # as run_batch does first
        lost = await actor._attempts(make_task("click-checkboxes", seed=0, solver="test.crash-every-time"))
        after = await actor._attempts(make_task("click-button", seed=0, solver="miniwob.click-button"))
    finally:
        await actor.shutdown()
    return lost, after, browsers


async def test_retries_run_out_then_the_episode_is_rejected_and_the_worker_goes_on(tmp_path, monkeypatch, make_task):
    """`episode_retries: 2` and a page that crashes on every attempt: three
    attempts, the first retry on a fresh browser, then the episode is kept as
    rejected with the reason and the number of attempts; the actor's next
    episode runs and passes as usual."""
    from synth.episode import lost_to_infrastructure

    lost, after, browsers = await _crash_every_attempt(tmp_path, monkeypatch, make_task)
    assert len(browsers) == 3  # the first attempt and two retries
    assert browsers[1] is not browsers[0]
    assert lost.status == "rejected" and lost.error.endswith("(after 3 attempts)"), lost.error
    assert lost.reject_reason == f"error: {lost.error}" and lost_to_infrastructure(lost)
    assert after.status == "accepted", after.reject_reason


async def test_every_retry_runs_on_a_fresh_browser(tmp_path, monkeypatch, make_task):
    _, _, browsers = await _crash_every_attempt(tmp_path, monkeypatch, make_task)
    assert len({id(b) for b in browsers}) == 3, "a retry ran on the browser its previous attempt was lost on"


def test_mostly_failing_run_stops_with_a_summary(tmp_path):
    # a solver on the wrong task: every episode raises, none can pass
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "site: miniwob\ndefaults: {judge: {type: miniwob_reward}, max_steps: 4}\n"
        "templates:\n  - {id: wrong-solver, params: {task: click-button}, solver: miniwob.login-user}\n"
    )
    pipeline = write_pipeline(tmp_path, ["wrong-solver"], seeds=60, templates=bad)
    code, err = finish(start(pipeline))
    assert code == 1
    said = " ".join(err.split())  # rich wraps long lines
    assert "max_failure_share" in said and "episodes ended in an error" in said and "run the same command to resume" in said
    staged = pq.read_table(tmp_path / "out/staging").num_rows
    assert 20 <= staged < 60  # it stopped instead of burning through the list


@pytest.mark.timeout(600)  # with the reference run, when run alone
def test_ctrl_c_stops_cleanly_and_the_run_resumes(tmp_path, resume_templates, reference):
    pipeline = write_resume_pipeline(tmp_path, resume_templates)
    proc = start(pipeline)
    staged = wait_for_staging(tmp_path / "out", proc)
    os.kill(proc.pid, signal.SIGINT)
    t0 = time.time()
    code, err = finish(proc, timeout=60)
    assert staged < 18, "recording was over before Ctrl-C"
    assert time.time() - t0 < 30
    assert code == 130, err[-3000:]
    said = " ".join(err.split()).lower()  # rich wraps long lines
    assert "interrupted" in said and "run the same command again to resume" in said
    code, err = finish(start(pipeline))
    assert code == 0, err[-3000:]
    assert_same_totals(tmp_path / "out", reference)


async def test_an_episode_out_of_time_does_not_end_its_neighbours(tmp_path, monkeypatch, make_task):
    """Two episodes on one actor's browser; one runs out of time while the
    other is mid-way. The browser still answers, so only the late one is
    lost: it is retried on the same browser, and its neighbour finishes on
    its first attempt (throwing the browser away, as for a crash, ended
    both: at load 100 that cost five shop episodes a run)."""
    import asyncio

    from synth.config import SourceConfig
    from synth.solver import SOLVERS, get_solver
    from synth.workers import SourceActor

    late_done = asyncio.Event()
    calls = {"late": [], "neighbour": []}

    async def late(env, obs):
        calls["late"].append(env.page.context.browser)
        if len(calls["late"]) == 1:
            try:
                await asyncio.wait_for(asyncio.sleep(3600), 1)  # its time runs out
            finally:
                asyncio.get_running_loop().call_later(0.5, late_done.set)
        await get_solver("miniwob.click-button")(env, obs)

    async def neighbour(env, obs):
        calls["neighbour"].append(env.page.context.browser)
        await late_done.wait()  # mid-way when the other one ran out of time
        await asyncio.sleep(1)
        await get_solver("miniwob.click-button")(env, obs)

    monkeypatch.setitem(SOLVERS, "test.late", late)
    monkeypatch.setitem(SOLVERS, "test.neighbour", neighbour)
    actor = SourceActor.__ray_actor_class__("solver", {"config": SourceConfig(episode_retries=2)}, str(tmp_path), "t", 2)
    try:
        await actor._start(actor.source)
        generation = actor.source.generation
        slow, other = await asyncio.gather(
            actor._attempts(make_task("click-button", seed=0, solver="test.late")),
            actor._attempts(make_task("click-button", seed=1, solver="test.neighbour")))
    finally:
        await actor.shutdown()
    assert other.status == "accepted" and len(calls["neighbour"]) == 1, (other.error, calls)
    assert slow.status == "accepted" and len(calls["late"]) == 2, (slow.error, calls)
    assert calls["late"][1] is calls["late"][0] and actor.source.generation == generation
