"""Exploration volume of a finished `synth run` (pipelines/explore.yaml), per site.

    .venv/bin/python bench/explore_volume.py out/explore [--json figures.json]

Reads the run's `data/trajectories` shards (nothing is run) and prints, per
site: segments recorded by the explore source (`explore/<site>...`), the
proposals among them (a segment that proposed a task the judge passed on its
own end state), those the quality stage accepted, the rejections by reason
(the gate's first words), the share of accepted proposals of a kind no
template covers, and route coverage of the templates' accepted trajectories
alone vs with the accepted proposals.

The figures are `synth.explore.diversity.exploration_figures`, the table
`synth stats` and the HTML report show (kinds are defined there).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synth.explore.diversity import exploration_figures, exploration_row  # noqa: E402


def figures(out: Path) -> dict[str, Any]:
    rows = pq.read_table(out / "data" / "trajectories",
                         columns=["site", "source", "template_id", "status", "reject_reason", "task_config",
                                  "steps", "final_url"]).to_pylist()
    for r in rows:
        r["urls"] = [s["url"] for s in r.pop("steps") if s["url"]] + ([r["final_url"]] if r["final_url"] else [])
    return exploration_figures(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = figures(args.out)
    print("| site | segments | proposals | accepted | novel kind | routes: templates -> with exploration | rejected by reason |")
    print("|---|---|---|---|---|---|---|")
    for site, f in result.items():
        print("| " + " | ".join(map(str, exploration_row(site, f)[1:])) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
