"""`synth run` end to end: real Ray, real Chromium, real Parquet (kill and resume: test_faults.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from synth.pipeline import prepare
from synth.schema import trajectory_id

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ["click-button", "click-checkboxes", "login-user"]

pytestmark = pytest.mark.slow


def write_pipeline(tmp_path: Path, seeds: int, templates: list[str] = TEMPLATES) -> Path:
    p = tmp_path / "pipeline.yaml"
    p.write_text(
        f"""
name: test
output_dir: {tmp_path / 'out'}
tasks:
  - templates: {ROOT / 'templates/tasks/miniwob.yaml'}
    include: {json.dumps(templates)}
    seeds_per_template: {seeds}
sources:
  solver: {{actors: 1, contexts_per_actor: 3, num_cpus: 1}}
ray: {{batch_size: 2, num_cpus: 2}}
"""
    )
    return p


def synth(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synth.cli", *args], capture_output=True, text=True, timeout=600, cwd=ROOT, **kw
    )


def expected_ids(pipeline: Path) -> set[str]:
    return {trajectory_id(t.task_id, "solver", t.solver) for t in prepare(pipeline).tasks}


def shard_ids(out: Path) -> list[str]:
    return pq.read_table(out / "data/trajectories").column("trajectory_id").to_pylist()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    pipeline = write_pipeline(tmp, seeds=6)
    result = synth("run", str(pipeline))
    assert result.returncode == 0, result.stderr[-3000:]
    return pipeline, tmp / "out", result


def test_run_writes_every_task_once(finished_run):
    pipeline, out, result = finished_run
    ids = shard_ids(out)
    assert len(ids) == len(set(ids)) == 18
    assert set(ids) == expected_ids(pipeline)
    m = json.loads((out / "manifest.json").read_text())
    assert m["trajectories"] == 18 and m["accepted"] + m["rejected"] == 18
    assert set(m["by_template"]) == {f"miniwob/{t}" for t in TEMPLATES}
    assert "accepted" in result.stdout


def test_shards_load_with_datasets_offline(finished_run, tmp_path):
    _, out, _ = finished_run
    # a cache of its own: `datasets` must read these files, not an earlier run's
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    code = f"""
import json
from datasets import load_dataset, Image
steps = load_dataset("parquet", data_dir="{out}/data/steps", split="train")
assert isinstance(steps.features["screenshot"], Image), steps.features["screenshot"]
img = steps[0]["screenshot"]
traj = load_dataset("parquet", data_dir="{out}/data/trajectories", split="train")
print(json.dumps({{"steps": len(steps), "size": list(img.size), "traj": len(traj),
                  "action": steps[0]["action_text"], "shards": sorted(p.name for p in __import__("pathlib").Path("{out}/data/steps").iterdir())}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["traj"] == 18 and got["steps"] >= 18
    assert got["size"] == [160, 210]
    assert got["action"].startswith("pyautogui.")
    assert got["shards"] == ["train-00000-of-00001.parquet"]
    card = (out / "README.md").read_text()
    assert "config_name: steps" in card and "data/steps/train-*.parquet" in card


def test_query_answers_sql(finished_run):
    _, out, _ = finished_run
    r = synth("query", "select template_id, count(*) as n from trajectories group by 1 order by 1", "-o", str(out), "-f", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows == [{"template_id": f"miniwob/{t}", "n": 6} for t in sorted(TEMPLATES)]
    r = synth("query", "select count(*) as n from steps where screenshot.bytes is not null", "-o", str(out), "-f", "csv")
    assert r.returncode == 0 and int(r.stdout.split()[-1]) >= 18
    r = synth("query", "select nope from trajectories", "-o", str(out))
    assert r.returncode == 2 and "query failed" in r.stderr
    r = synth("stats", str(out))
    assert r.returncode == 0 and "by template" in r.stdout


def test_rerun_of_a_finished_run_changes_nothing(finished_run):
    pipeline, out, _ = finished_run
    before = sorted(shard_ids(out))
    r = synth("run", str(pipeline))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "18 tasks were already done" in r.stderr
    assert sorted(shard_ids(out)) == before


def test_staging_knows_finished_tasks_per_source(finished_run):
    from synth import staging

    _, out, _ = finished_run
    assert len(staging.finished_task_ids(out / "staging")) == 18
    assert len(staging.finished_task_ids(out / "staging", source="solver")) == 18
    assert staging.finished_task_ids(out / "staging", source="human") == set()


def test_push_uploads_exactly_the_dataset(finished_run, tmp_path, monkeypatch):
    """`synth push` to a local server speaking the Hub's API (tests/hub_server.py;
    tests/test_hub_push.py has the failures): the private repo it creates, the
    files of its one commit (a copy of them loads with `datasets` offline),
    never staging."""
    from hub_server import HubServer, online

    from synth.export import hub

    _, out, _ = finished_run
    with HubServer({"hf_secret_123": "me"}) as server:
        online(monkeypatch, server)
        result = hub.push(out, "me/web", token="hf_secret_123")
        files = server.state.files("me/web")
    assert "/datasets/me/web/commit/" in result.url and server.state.repos["me/web"].private
    assert len(server.state.commit_payloads) == 1 and result.deleted == []
    assert files.pop(".gitattributes")  # every Hub repo's first file
    assert "README.md" in files and "manifest.json" in files
    assert not any(f.startswith(("staging/", "quality/")) for f in files)
    assert sorted(files) == sorted(hub.plan_push(out).files)
    assert all(data == (out / f).read_bytes() for f, data in files.items())
    for f, data in files.items():
        (tmp_path / "repo" / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "repo" / f).write_bytes(data)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    code = f"from datasets import load_dataset; print(load_dataset('{tmp_path / 'repo'}', 'trajectories', split='train').num_rows)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "18", r.stderr[-2000:]
    r = synth("push", str(out), "--repo", "me/web", "--dry-run")
    assert r.returncode == 0 and "data/trajectories/train-00000-of-00001.parquet" in r.stdout
    r = synth("push", str(out / "staging"), "--repo", "me/web")
    assert r.returncode == 2 and "run `synth run PIPELINE` first" in r.stderr


def test_stats_html_draws_the_report(finished_run):
    _, out, _ = finished_run
    r = synth("stats", str(out), "--html")
    assert r.returncode == 0, r.stderr
    html = (out / "report.html").read_text()
    assert "Quality gates" in html and "miniwob/login-user" in html
    assert "Funnel per source and template" in html and "by source" in html
    # one self-contained file: no script or style is loaded from elsewhere
    assert 'src="http' not in html and '<link rel="stylesheet"' not in html
