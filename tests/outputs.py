"""A finished output, as `synth run` leaves it, built without a run: real
episodes recorded in Chromium, staged, exported, with a manifest and card.
For tests of what reads an output (the Hub push, image storage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synth import staging
from synth.env import BrowserEnv
from synth.episode import run_episode
from synth.export.card import card, manifest
from synth.export.shards import export
from synth.schema import Trajectory
from synth.sites import miniwob
from synth.solver import get_solver


async def record(browser: Any, site: Any, tasks: list[tuple[str, int]]) -> list[Trajectory]:
    """MiniWoB++ (template, seed) pairs solved by their solvers, each accepted."""
    env = BrowserEnv(browser, site)
    out = []
    try:
        for name, seed in tasks:
            t = await run_episode(env, miniwob.make_task(name, seed), get_solver(f"miniwob.{name}"),
                                  source="solver", source_detail=f"miniwob.{name}")
            assert t.status == "accepted", (name, t.reject_reason)
            out.append(t)
    finally:
        await env.close()
    return out


def write_output(out: Path, trajectories: list[Trajectory], name: str, rows_per_shard: int, **options: Any) -> Path:
    """`trajectories` staged and exported to `out` (`options`: export's
    formats, native, images; the manifest's config says them), with the
    manifest and card."""
    staging.write_batch(out / "staging", trajectories, "batch-0")
    stats = export(out, rows_per_shard=rows_per_shard, row_group_mb=1, **options)
    m = manifest(name, stats, {"export": options})
    (out / "manifest.json").write_text(json.dumps(m, indent=2))
    (out / "README.md").write_text(card(m))
    return out
