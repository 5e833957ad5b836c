"""Crashes and faults: a run killed anywhere resumes with exact totals; a
crashed or hung browser costs a retry, not the run; a run whose episodes
mostly fail stops with a summary; Ctrl-C stops cleanly."""

from __future__ import annotations

import json
import os
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


def shard_ids(out: Path) -> list[str]:
    return pq.read_table(out / "data/trajectories").column("trajectory_id").to_pylist()


def wait_for_staging(out: Path, n: int = 1, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and len(list((out / "staging").glob("*.parquet"))) < n:
        time.sleep(0.1)


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


def _check_complete(pipeline: Path, out: Path) -> None:
    ids = shard_ids(out)
    assert len(ids) == len(set(ids)) == 12 and set(ids) == expected_ids(pipeline)
    m = json.loads((out / "manifest.json").read_text())
    assert m["trajectories"] == 12 and m["duplicate_ids_skipped"] == 0
    assert not list(out.glob(".data-*")) and not list((out / "staging").glob(".*.tmp"))


def test_killed_anywhere_resumes_with_exact_totals(tmp_path):
    """SIGKILL of the whole run (driver, Ray, browsers) at each driver crash
    point in turn and at two random moments, resuming each time; then a
    worker killed inside a staging write. Every run ends with exactly the
    uninterrupted totals, no duplicate ids, every file readable."""
    pipeline = write_pipeline(tmp_path, ["click-button", "click-checkboxes", "focus-text"], seeds=4)
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
    _check_complete(pipeline, out)
    # a worker dies inside a staging write (the run goes on with a new one)
    for i, point in enumerate(WORKER_POINTS):
        fresh = tmp_path / f"w{i}"
        fresh.mkdir()
        p = write_pipeline(fresh, ["click-button", "click-checkboxes", "focus-text"], seeds=4)
        code, err = finish(start(p, SYNTH_CRASH_AT=point, SYNTH_CRASH_FLAG=str(fresh / "fired")))
        assert code == 0 and (fresh / "fired").exists(), err[-3000:]
        _check_complete(p, fresh / "out")


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


def _signal_browsers(proc: subprocess.Popen, sig: int) -> int:
    pids = [pid for pid, name in descendants(proc.pid) if name.startswith("chromium")]
    for pid in pids:
        try:
            os.kill(int(pid), sig)
        except ProcessLookupError:
            pass
    return len(pids)


@pytest.mark.parametrize("fault", ["crash", "hang"])
def test_lost_browser_costs_a_retry_not_the_run(tmp_path, fault):
    pipeline = write_pipeline(tmp_path, ["login-user", "click-checkboxes"], seeds=4, source=", episode_timeout_s: 4")
    proc = start(pipeline)
    wait_for_staging(tmp_path / "out")
    # every browser of the run: killed, or frozen (SIGSTOP: alive but silent)
    assert _signal_browsers(proc, signal.SIGKILL if fault == "crash" else signal.SIGSTOP) > 0
    code, err = finish(proc, timeout=300)
    assert code == 0, err[-3000:]
    rows = pq.read_table(tmp_path / "out/data/trajectories", columns=["status", "reject_reason", "error"]).to_pylist()
    assert len(rows) == 8
    assert all(r["status"] == "accepted" for r in rows), [(r["reject_reason"], r["error"]) for r in rows]


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


def test_ctrl_c_stops_cleanly_and_the_run_resumes(tmp_path):
    pipeline = write_pipeline(tmp_path, ["click-button", "login-user"], seeds=8)
    proc = start(pipeline)
    wait_for_staging(tmp_path / "out")
    os.kill(proc.pid, signal.SIGINT)
    t0 = time.time()
    code, err = finish(proc, timeout=60)
    assert time.time() - t0 < 30
    assert code == 130, err[-3000:]
    said = " ".join(err.split()).lower()  # rich wraps long lines
    assert "interrupted" in said and "run the same command again to resume" in said
    code, err = finish(start(pipeline))
    assert code == 0, err[-3000:]
    ids = shard_ids(tmp_path / "out")
    assert len(ids) == len(set(ids)) == 16 and set(ids) == expected_ids(pipeline)
