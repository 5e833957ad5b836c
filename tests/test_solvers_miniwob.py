"""Every shipped MiniWoB++ solver passes MiniWoB's own reward on 4 seeds (`make run`
runs each on 44, judged the same way)."""

from __future__ import annotations

import asyncio

import pytest

from synth.solver import get_solver
from synth.episode import run_episode
from synth.env import BrowserEnv
from synth.tasks import load_templates, instantiate

SEEDS = 4
TEMPLATES = [tpl for site, tpl in load_templates("templates/tasks/miniwob.yaml") if tpl.solver]
CONCURRENCY = 2  # pages at once in the one browser: make test runs another file beside this one


def test_enough_solvers():
    """The foundation issue asks for at least 15 tasks, 6 of them multi-step."""
    assert len(TEMPLATES) >= 15, [t.id for t in TEMPLATES]


@pytest.mark.parametrize("tpl", TEMPLATES, ids=[t.id for t in TEMPLATES])
async def test_solver_passes_miniwob_reward(tpl, browser, miniwob_site):
    tasks = instantiate("miniwob", tpl, seeds=SEEDS)
    solver = get_solver(tpl.solver)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(task):
        async with gate:
            return await run_episode(
                BrowserEnv(browser, miniwob_site), task, solver, source="solver", source_detail=tpl.solver
            )

    trajectories = await asyncio.gather(*(one(t) for t in tasks))
    failures = [(t.seed, t.reject_reason) for t in trajectories if t.status != "accepted"]
    assert not failures, f"{tpl.id}: {len(failures)}/{SEEDS} seeds failed: {failures[:5]}"
    for t in trajectories:
        assert t.verdict.score >= 1.0  # MiniWoB's raw reward
        assert t.steps and all(s.observation.screenshot for s in t.steps)
