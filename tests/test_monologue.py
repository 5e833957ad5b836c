"""Inner monologue end to end: real recordings staged, `synth run` asks the
local OpenAI-compatible server (real HTTP, the real openai client) for each
step's monologue, keeps the consistent ones, and the training views carry
them; a second run asks nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from bootstrap.mock_server import MockServer
from synth.solver import get_solver
from synth import staging
from synth.episode import run_episode
from synth.quality.monologue import consistent
from synth.export.formats import steps as step_views
from test_quality_stage import TEMPLATES, task

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-monologue-7f3a"

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def recorded(browser, miniwob_site):
    from synth.env import BrowserEnv

    out = []
    for name, seed in [("login-user", 2), ("click-checkboxes", 5)]:
        t = task(name, seed)
        traj = await run_episode(BrowserEnv(browser, miniwob_site), t, get_solver(t.solver), source="solver",
                                 source_detail=t.solver)
        assert traj.status == "accepted"
        out.append(traj)
    return out


def test_consistency_check_reads_kind_and_target(recorded):
    row = recorded[0].model_dump()
    views = list(step_views(row))
    typed = next(v for v in views if v.action.name == "type")
    click = next(v for v in views if v.action.name == "click" and v.element and v.element.name.strip())
    assert consistent(f"Type '{typed.action.text}' into the field.", typed)
    assert not consistent("Click the Login button.", typed)  # wrong kind of act
    assert not consistent("Type 'nobody' into the field.", typed)  # wrong text
    assert consistent(f"Click the '{click.element.name}' element.", click)
    assert not consistent("Scroll down.", click)


def test_run_writes_consistent_monologues_and_caches_them(recorded, tmp_path):
    staging.write_batch(tmp_path / "out/staging", recorded, "recorded")
    n_steps = sum(len(t.steps) for t in recorded)
    with MockServer(api_key=KEY, faults=[{"kind": "wrong", "on": [1]}]) as server:
        p = tmp_path / "pipeline.yaml"
        p.write_text(f"""
name: mono
output_dir: {tmp_path / 'out'}
tasks:
  - templates: {TEMPLATES}
    include: [login-user, click-checkboxes]
    seeds_per_template: 6
sources:
  solver: {{enabled: false}}
quality:
  replay: {{enabled: false}}
  monologue: {{enabled: true, base_url: "{server.url}", model: mock-gpt, api_key_env: MONO_KEY, concurrency: 1}}
ray: {{num_cpus: 2}}
""")
        env = {**__import__("os").environ, "MONO_KEY": KEY}
        run = lambda: subprocess.run([sys.executable, "-m", "synth.cli", "run", str(p)], capture_output=True,
                                     text=True, timeout=600, cwd=ROOT, env=env)
        r = run()
        assert r.returncode == 0, r.stderr[-3000:]
        first = server.chat_requests
        assert first == n_steps
        gates = json.loads((tmp_path / "out/manifest.json").read_text())["gates"]["monologue"]
        assert gates["generated"] == n_steps and gates["dropped_inconsistent"] == 1 and gates["kept"] == n_steps - 1
        steps = pq.read_table(tmp_path / "out/data/steps", columns=["monologue", "action"]).to_pylist()
        with_thought = [s for s in steps if s["monologue"] and s["monologue"]["low_level_instruction"]]
        assert len(with_thought) == n_steps - 1
        assert all(s["monologue"]["thought"] and s["monologue"]["observation"] for s in with_thought)
        planning = pq.read_table(tmp_path / "out/data/sft-aguvis-planning").to_pylist()
        thought_turns = [t for row in planning for t in row["conversations"] if t["recipient"] == "all"]
        # every step plans in words (the programmatic low-level instruction when
        # the monologue is off or was dropped); the LLM's thought only where it was kept
        assert len(thought_turns) == n_steps
        assert sum("Thought: " in t["value"] for t in thought_turns) == n_steps - 1
        # again: every step is known, the server is not asked
        r = run()
        assert r.returncode == 0, r.stderr[-3000:]
        assert server.chat_requests == first
    # the key reaches no file
    for f in (tmp_path / "out").rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in r.stdout + r.stderr
