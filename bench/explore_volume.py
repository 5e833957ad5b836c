"""Exploration volume of a finished `synth run` (pipelines/explore.yaml), per site.

    .venv/bin/python bench/explore_volume.py out/explore [--json figures.json]

Reads the run's `data/trajectories` shards (nothing is run) and prints, per
site: segments recorded by the explore source (`explore/<site>...`), the
proposals among them (a segment that proposed a task the judge passed on its
own end state), those the quality stage accepted, the rejections by reason
(the gate's first words), the share of accepted proposals of a kind no
template covers, and route coverage of the templates' accepted trajectories
alone vs with the accepted proposals.

A proposal's *kind* is what its judge checks: the state list it matches
(`state_match` path), the route of the view it asks for (`url_match`, paths
with numbers as `{n}` plus query keys), and whether it asks for an answer
(`string_match`). A kind no template covers is one no planned task of the
same site has (same judge targets, whatever the values).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synth.explore.diversity import Row, site_routes  # noqa: E402
from synth.explore.walk import route_of  # noqa: E402


def kind(judge: dict[str, Any]) -> frozenset[tuple[str, str]]:
    """The targets a judge checks, without their values."""
    t = judge.get("type")
    if t in ("all_of", "any_of"):
        return frozenset().union(*(kind(j) for j in judge.get("judges", [])))
    if t == "state_match":
        return frozenset({("state", re.sub(r"\[\d+\]", "[*]", str(judge.get("path"))))})
    if t == "url_match":
        keys = "&".join(sorted((judge.get("query") or {}).keys()))
        return frozenset({("url", route_of(str(judge.get("path") or "/")) + (f"?{keys}" if keys else ""))})
    if t in ("string_match", "fuzzy_match", "number_match"):
        return frozenset({("answer", "")})
    return frozenset({(str(t), "")})


def row_of_urls(r: dict[str, Any]) -> Row:
    """A shard row as the diversity measures read it (the URLs its steps and end touched)."""
    urls = [s["url"] for s in r["steps"] if s["url"]] + ([r["final_url"]] if r["final_url"] else [])
    return Row(r["source"], r["site"], "", urls)


def reason_of(r: dict[str, Any]) -> str:
    why = r["reject_reason"] or ""
    if why.startswith("duplicate: the instruction of a planned task"):
        return "duplicate of a template's instruction"
    return why.split(":")[0] or "rejected"


def figures(out: Path) -> dict[str, Any]:
    rows = pq.read_table(out / "data" / "trajectories",
                         columns=["site", "source", "template_id", "status", "reject_reason", "task_config",
                                  "steps", "final_url"]).to_pylist()
    by_site: dict[str, dict[str, Any]] = {}
    template_kinds: dict[str, set] = collections.defaultdict(set)
    for r in rows:
        if r["source"] != "explore":
            template_kinds[r["site"]].add(kind(json.loads(r["task_config"])["judge"]))
    for site in sorted({r["site"] for r in rows}):
        mine = [r for r in rows if r["site"] == site]
        segments = [r for r in mine if r["source"] == "explore"]
        proposals = [r for r in segments if r["template_id"].count("/") == 2]
        accepted = [r for r in proposals if r["status"] == "accepted"]
        novel = [r for r in accepted if kind(json.loads(r["task_config"])["judge"]) not in template_kinds[site]]
        templated = [row_of_urls(r) for r in mine if r["source"] != "explore" and r["status"] == "accepted"]
        explored = [row_of_urls(r) for r in accepted]
        universe = site_routes(templated + explored).get(site, (set(), set()))[0]
        before = site_routes(templated).get(site, (set(), set()))[0]
        by_site[site] = {
            "segments": len(segments), "proposals": len(proposals), "accepted": len(accepted),
            "rejected": dict(collections.Counter(reason_of(r) for r in segments if r["status"] != "accepted")),
            "novel_share": round(len(novel) / len(accepted), 3) if accepted else 0.0,
            "routes_templates": len(before), "routes_both": len(universe),
            "coverage_templates": round(len(before) / len(universe), 3) if universe else 0.0,
            "accepted_kinds": dict(collections.Counter(r["template_id"].rsplit("/", 1)[-1] for r in accepted)),
        }
    return by_site


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = figures(args.out)
    print("| site | segments | proposals | accepted | novel kind | routes: templates -> with exploration | rejected by reason |")
    print("|---|---|---|---|---|---|---|")
    for site, f in result.items():
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(f["rejected"].items(), key=lambda kv: -kv[1]))
        print(f"| {site} | {f['segments']} | {f['proposals']} | {f['accepted']} | {f['novel_share']:.0%} | "
              f"{f['routes_templates']} -> {f['routes_both']} ({f['coverage_templates']:.0%} -> 100%) | {reasons} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
