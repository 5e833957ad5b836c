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

And, per site explored, what exploration added (`exploration_figures`):
segments, proposals, accepted, rejections by reason, the share of accepted
proposals of a kind no template covers, and route coverage of the templates'
accepted trajectories alone vs with the accepted proposals. A proposal's
*kind* is what its judge checks (`judge_kind`): the state list it matches,
the route of the view it asks for, whether it asks for an answer; a kind no
template covers is one no planned task of the same site has.
"""

from __future__ import annotations

import collections
import json
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


def judge_kind(judge: dict[str, Any]) -> frozenset[tuple[str, str]]:
    """The targets a judge checks, without their values."""
    t = judge.get("type")
    if t in ("all_of", "any_of"):
        return frozenset().union(*(judge_kind(j) for j in judge.get("judges", [])))
    if t == "state_match":
        return frozenset({("state", re.sub(r"\[\d+\]", "[*]", str(judge.get("path"))))})
    if t == "url_match":
        keys = "&".join(sorted((judge.get("query") or {}).keys()))
        return frozenset({("url", route_of(str(judge.get("path") or "/")) + (f"?{keys}" if keys else ""))})
    if t in ("string_match", "fuzzy_match", "number_match"):
        return frozenset({("answer", "")})
    return frozenset({(str(t), "")})


def _reason(reject_reason: str | None) -> str:
    why = reject_reason or ""
    if why.startswith("duplicate: the instruction of a planned task"):
        return "duplicate of a template's instruction"
    return why.split(":")[0] or "rejected"


def exploration_figures(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per site with explore trajectories, what exploration added. `rows`:
    every trajectory (accepted or not) with site, source, template_id,
    status, reject_reason, task_config and urls (its steps' and final URLs)."""
    rows = list(rows)
    template_kinds: dict[str, set] = collections.defaultdict(set)
    for r in rows:
        if r["source"] != "explore" and r["task_config"]:
            template_kinds[r["site"]].add(judge_kind(json.loads(r["task_config"])["judge"]))
    out: dict[str, dict[str, Any]] = {}
    for site in sorted({r["site"] for r in rows if r["source"] == "explore"}):
        mine = [r for r in rows if r["site"] == site]
        segments = [r for r in mine if r["source"] == "explore"]
        proposals = [r for r in segments if r["template_id"].count("/") == 2]  # explore/<site>/<kind>
        accepted = [r for r in proposals if r["status"] == "accepted"]
        novel = [r for r in accepted if judge_kind(json.loads(r["task_config"])["judge"]) not in template_kinds[site]]
        templated = [Row(r["source"], site, "", r["urls"]) for r in mine if r["source"] != "explore" and r["status"] == "accepted"]
        explored = [Row(r["source"], site, "", r["urls"]) for r in accepted]
        both = site_routes(templated + explored).get(site, (set(), set()))[0]
        alone = site_routes(templated).get(site, (set(), set()))[0]
        out[site] = {
            "segments": len(segments), "proposals": len(proposals), "accepted": len(accepted),
            "rejected": dict(collections.Counter(_reason(r["reject_reason"]) for r in segments if r["status"] != "accepted")),
            "novel_share": round(len(novel) / len(accepted), 3) if accepted else 0.0,
            "routes_templates": len(alone), "routes_both": len(both),
            "coverage_templates": round(len(alone) / len(both), 3) if both else 0.0,
            "accepted_kinds": dict(collections.Counter(r["template_id"].rsplit("/", 1)[-1] for r in accepted)),
        }
    return out


EXPLORATION_COLUMNS = ["source", "site", "segments", "proposals", "accepted", "novel kind",
                       "routes: templates -> with exploration", "rejected by reason"]


def exploration_row(site: str, f: dict[str, Any]) -> tuple:
    """One site's figures as `synth stats`, the report and bench/explore_volume.py print them."""
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(f["rejected"].items(), key=lambda kv: -kv[1]))
    return ("explore", site, f["segments"], f["proposals"], f["accepted"], f"{f['novel_share']:.0%}",
            f"{f['routes_templates']} -> {f['routes_both']} ({f['coverage_templates']:.0%} -> 100%)", reasons or "-")


EXPLORATION_SQL = """
    SELECT site, source, template_id, status, reject_reason, task_config,
           list_filter(list_append(list_transform(steps, lambda s: s.url), final_url), lambda u: u IS NOT NULL AND u <> '') AS urls
    FROM trajectories"""


def exploration_table(con: Any) -> tuple[list[str], list[tuple]]:
    """`synth stats`'s exploration table (empty without explore trajectories)."""
    have = {name for name, *_ in con.sql("DESCRIBE trajectories").fetchall()}
    if "task_config" not in have or not con.sql("SELECT count(*) FROM trajectories WHERE source = 'explore'").fetchall()[0][0]:
        return [], []
    rel = con.sql(EXPLORATION_SQL)
    figures = exploration_figures(dict(zip(rel.columns, r)) for r in rel.fetchall())
    return EXPLORATION_COLUMNS, [exploration_row(site, f) for site, f in figures.items()]
