"""Template route vs exploration route on one site: instruction diversity and
route coverage (synth.explore.diversity).

    .venv/bin/python bench/diversity.py                          # shop, 3 instances a template, 40 segments
    .venv/bin/python bench/diversity.py --site forum --instances 2 --segments 60 --json out.json

The template route instantiates every template of the site (`--instances`
seeds each) and runs its solver; the exploration route explores
`--segments` segments and keeps the proposals that pass feasibility (cold
replay trimmed by minimality, no near duplicate of a template's
instruction). Both keep accepted trajectories only. The site's routes are
the union of what either touched and what the exploration saw; the last
lines say how much the exploration route adds to the templates' coverage.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synth.explore.diversity import Row, measures, row_of, site_routes  # noqa: E402
from synth.explore.source import ExploreConfig, ExploreSource  # noqa: E402
from synth.explore.walk import route_of  # noqa: E402
from synth.sources import SolverSource  # noqa: E402
from synth.tasks import instantiate_seed, select_templates, seed_range  # noqa: E402


def template_dir(site: str) -> Path:
    for d in (ROOT / "templates" / "tasks" / site, ROOT / "apps" / site / "templates"):
        if d.is_dir():
            return d
    raise SystemExit(f"no templates for {site}")


async def template_route(site: str, instances: int) -> list[Row]:
    tasks = []
    for s, tpl in select_templates(template_dir(site)):
        if s == site:
            tasks += [instantiate_seed(s, tpl, seed) for seed in list(seed_range(tpl))[:instances]]
    source = SolverSource()
    await source.setup()
    try:
        rows = []
        for task in tasks:
            if task.solver:
                t = await source.run(task)
                if t.status == "accepted":
                    rows.append(row_of(t))
        return rows
    finally:
        await source.teardown()


async def exploration_route(site: str, segments: int, seed: int, existing: list[str]) -> tuple[list[Row], list, set[str]]:
    source = ExploreSource(config=ExploreConfig(seed=seed, segments=segments))
    await source.setup()
    try:
        proposals = await source.explore(site, segments, existing)
        rows = [row_of(p.trajectory) for p in proposals if p.status == "accepted"]
        return rows, proposals, set(source.memories[site].routes)
    finally:
        await source.teardown()


def routes_of(t) -> list[str]:
    return [route_of(u) for u in row_of(t).urls if u]


def coverage(rows: list[Row], universe: set[str]) -> float:
    routes = site_routes(rows)
    touched = next(iter(routes.values()))[0] if routes else set()
    return round(len(touched & universe) / len(universe), 3) if universe else 0.0


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", default="shop")
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--segments", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    t0 = time.perf_counter()
    templated = await template_route(args.site, args.instances)
    t1 = time.perf_counter()
    explored, proposals, seen = await exploration_route(args.site, args.segments, args.seed,
                                                       [r.instruction for r in templated])
    t2 = time.perf_counter()
    for r in templated:
        r.source = "template"
    known = {args.site: seen}
    table = measures(templated + explored, known)
    universe = site_routes(templated + explored, known)[args.site][0]
    before, after = coverage(templated, universe), coverage(templated + explored, universe)
    template_routes = site_routes(templated).get(args.site, (set(), set()))[0]
    columns = list(table[0]) if table else []
    print(" | ".join(columns))
    for m in table:
        print(" | ".join(str(m[c]) for c in columns))
    reasons = collections.Counter((p.reason or "accepted").split(":")[0] for p in proposals)
    print(f"\nproposals: {len(proposals)}, accepted {sum(p.status == 'accepted' for p in proposals)}; "
          f"outcomes {dict(reasons)}")
    print(f"kinds accepted: {dict(collections.Counter(p.task.template_id for p in proposals if p.status == 'accepted'))}")
    novel = [p for p in proposals if p.status == "accepted" and not set(routes_of(p.trajectory)) <= template_routes]
    print(f"accepted proposals touching a route no template touches: {len(novel)} of {len(explored)}")
    print(f"site routes known: {len(universe)}; route coverage templates {before:.3f} -> "
          f"templates + exploration {after:.3f} (+{after - before:.3f})")
    print(f"time: templates {t1 - t0:.0f} s ({len(templated)} accepted), exploration {t2 - t1:.0f} s "
          f"({len(explored)} accepted)")
    if args.json:
        args.json.write_text(json.dumps({"measures": table, "coverage_templates": before, "coverage_both": after,
                                         "routes": sorted(universe), "outcomes": dict(reasons),
                                         "novel": len(novel), "accepted": len(explored)}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
