"""Trac 1.6, a real third-party issue tracker (apps/trac), as a synth site:
every prototype's solver passes on a seeded instance, no negative control is
accepted, and an instance reset between episodes serves the pristine data
(also Trac's cached values) while tracd keeps running."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trac", reason="Trac is installed by the test extra (pip install -e '.[test]')")

from synth.env import BrowserEnv  # noqa: E402
from synth.sites import SITES  # noqa: E402
from synth.tasks import instantiate_seed, load_templates  # noqa: E402
from synth.validate import validate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "apps" / "trac" / "templates"


@pytest.mark.timeout(900)
async def test_every_trac_prototype_validates():
    reports = await validate([TEMPLATES], instances=1, concurrency=3)
    assert len(reports) >= 8
    bad = {r.template_id: (r.problems, r.solver_failures, [c.examples for c in r.controls.values()])
           for r in reports if not r.ok}
    assert not bad, bad
    assert all(r.solver_passes == 1 and r.false_accepts == 0 for r in reports)
    assert sum(r.controls["no-op"].runs for r in reports) == len(reports)


async def test_a_reset_instance_shows_the_pristine_ticket_and_milestones(browser):
    """One instance, two episodes: the first closes a ticket; the second, on
    the same tracd after the reset, sees it open again, in the database and
    on the page (no stale cache)."""
    from synth.solver import get_solver

    site = SITES["trac"]()
    (pair,) = [(s, t) for s, t in load_templates(TEMPLATES) if t.id == "resolve-ticket"]
    task = instantiate_seed(*pair, 0)
    number = task.judge.params["expected"]["id"]
    try:
        env = BrowserEnv(browser, site)
        obs = await env.reset(task)
        await get_solver(task.solver)(env, obs)
        closed = [t for t in (await site.state(env.page, task))["tickets"] if t["id"] == number]
        assert closed[0]["status"] == "closed"
        await env.close()
        env = BrowserEnv(browser, site)
        await env.reset(task)
        state = [t for t in (await site.state(env.page, task))["tickets"] if t["id"] == number]
        assert state[0]["status"] != "closed"
        obs = await env.navigate(env.page.url.split("/ticket")[0].rstrip("/") + f"/ticket/{number}")
        heading = obs.find_all(role="heading")[0].name if obs.find_all(role="heading") else ""
        assert f"#{number}" in obs.title and "closed" not in heading, (obs.title, heading)
        await env.close()
        assert len(site._all) == 1
    finally:
        await site.stop()
