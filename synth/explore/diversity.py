"""Diversity and coverage of accepted trajectories, per source and site.

- distinct instructions (normalised text);
- distinct-3: distinct word 3-grams over all 3-grams of the instructions
  (1.0: no phrase repeats; templates repeat their frame in every instance);
- near-duplicate clusters: groups of instructions with a word 3-gram Jaccard
  similarity >= 0.8 (synth.quality.dedup), and how many have more than one member;
- route coverage: the share of the site's routes (pages with numbers as
  `{n}`, query keys kept: synth.explore.walk.route_of) that the trajectories'
  steps touch, and of its forms (routes where a field was typed into or a
  select chosen). The site's routes are the union over every row given,
  plus any routes the caller knows (an exploration's map);
- step counts: min, median, mean, max.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from synth.explore.walk import route_of
from synth.quality.dedup import near_duplicate_groups
from synth.schema import Trajectory

FORM_ACTIONS = ("type", "select")


@dataclass
class Row:
    """What the measures read of one trajectory."""

    source: str
    site: str
    instruction: str
    urls: list[str]
    form_urls: list[str] = field(default_factory=list)
    num_steps: int = 0


def row_of(t: Trajectory) -> Row:
    urls = [s.observation.url for s in t.steps] + ([t.final_url] if t.final_url else [])
    forms = [s.observation.url for s in t.steps if s.action.name in FORM_ACTIONS]
    return Row(t.source, t.site, t.instruction, urls, forms, len(t.steps))


def _words(text: str) -> list[str]:
    return re.findall(r"[\w#'.-]+", text.lower())


def distinct_n(texts: Sequence[str], n: int = 3) -> float:
    grams = [tuple(w[i:i + n]) for w in map(_words, texts) for i in range(max(0, len(w) - n + 1))]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def clusters(texts: Sequence[str], threshold: float = 0.8) -> tuple[int, int]:
    """(clusters, clusters with more than one member) among the texts."""
    if not texts:
        return 0, 0
    groups = near_duplicate_groups([" ".join(_words(t)) for t in texts], threshold)
    sizes: dict[int, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    return len(sizes), sum(1 for s in sizes.values() if s > 1)


def site_routes(rows: Iterable[Row], known: dict[str, set[str]] | None = None) -> dict[str, tuple[set[str], set[str]]]:
    """Per site, (routes, form routes): every route any row touched, plus `known`."""
    out: dict[str, tuple[set[str], set[str]]] = {}
    for r in rows:
        routes, forms = out.setdefault(r.site, (set(), set()))
        routes.update(route_of(u) for u in r.urls if u)
        forms.update(route_of(u) for u in r.form_urls if u)
    for site, extra in (known or {}).items():
        out.setdefault(site, (set(), set()))[0].update(extra)
    return out


def measures(rows: Sequence[Row], known: dict[str, set[str]] | None = None) -> list[dict[str, Any]]:
    """One dict of measures per (source, site), sorted by site then source."""
    universe = site_routes(rows, known)
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.source, r.site), []).append(r)
    out = []
    for (source, site), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        texts = [r.instruction for r in rs]
        n_clusters, dup_clusters = clusters(texts)
        routes = {route_of(u) for r in rs for u in r.urls if u}
        forms = {route_of(u) for r in rs for u in r.form_urls if u}
        all_routes, all_forms = universe[site]
        steps = [r.num_steps for r in rs]
        out.append({
            "source": source, "site": site, "trajectories": len(rs),
            "distinct_instructions": len({" ".join(_words(t)) for t in texts}),
            "distinct_3": distinct_n(texts), "clusters": n_clusters, "dup_clusters": dup_clusters,
            "routes": len(routes), "route_coverage": round(len(routes) / len(all_routes), 3) if all_routes else 0.0,
            "forms": len(forms), "form_coverage": round(len(forms) / len(all_forms), 3) if all_forms else 0.0,
            "steps_min": min(steps), "steps_median": statistics.median(steps),
            "steps_mean": round(statistics.fmean(steps), 2), "steps_max": max(steps),
        })
    return out


def table(rows: Sequence[Row], known: dict[str, set[str]] | None = None) -> tuple[list[str], list[tuple]]:
    """The measures as (columns, rows), the shape `synth stats` prints."""
    ms = measures(rows, known)
    columns = ["source", "site", "accepted", "distinct", "distinct_3", "clusters", "dup_clusters", "route_cov",
               "form_cov", "steps min/med/mean/max"]
    return (columns if ms else []), [
        (m["source"], m["site"], m["trajectories"], m["distinct_instructions"], m["distinct_3"], m["clusters"],
         m["dup_clusters"], f"{m['route_coverage']} ({m['routes']})", f"{m['form_coverage']} ({m['forms']})",
         f"{m['steps_min']}/{m['steps_median']}/{m['steps_mean']}/{m['steps_max']}")
        for m in ms]


STATS_SQL = """
    SELECT source, site, instruction, num_steps,
           list_transform(steps, lambda s: s.url) AS urls,
           list_transform(list_filter(steps, lambda s: s.action.name IN ('type', 'select')), lambda s: s.url) AS form_urls,
           final_url
    FROM trajectories WHERE status = 'accepted'"""


def stats_table(con: Any) -> tuple[list[str], list[tuple]]:
    """`synth stats`'s diversity table, from the trajectories view (DuckDB);
    empty for a table without the columns it reads."""
    have = {name for name, *_ in con.sql("DESCRIBE trajectories").fetchall()}
    if not {"source", "site", "instruction", "num_steps", "steps", "final_url", "status"} <= have:
        return [], []
    rows = [Row(src, site, inst or "", [u for u in (urls or []) if u] + ([final] if final else []),
                [u for u in (forms or []) if u], n or 0)
            for src, site, inst, n, urls, forms, final in con.sql(STATS_SQL).fetchall()]
    return table(rows)
