"""What the report shows, read through `synth.query` (DuckDB views over the
output, local or on an object store): one row per trajectory for the browser
and the plots, the funnel per source and template, and each trajectory's
steps with its screenshots made small.

`data/trajectories` holds every trajectory, accepted and rejected (`status`,
`reject_reason`), and `data/steps` the steps of both, so staging is not read."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import duckdb

from synth import storage
from synth.report_html.thumbs import Thumbnails

# The order a trajectory meets the stages in (synth.quality.stage.assess), and
# the `reject_reason` prefix each stage writes when it rejects one.
STAGES = ("episode", "judge", "review", "consistency", "dedup", "replay", "minimality")
_PREFIX = {"error": "episode", "judge": "judge", "review": "review", "consistency": "consistency",
           "duplicate": "dedup", "replay": "replay", "minimality": "minimality",
           # an exploration segment whose evidence gave no task its own end passes and its start fails
           "no proposal": "judge", "end state": "judge", "trivial": "judge",
           # a model found its instruction and trajectory disagree (synth.explore.check)
           "instruction check": "consistency"}


def rejecting_stage(status: str | None, reject_reason: str | None) -> str | None:
    """The stage that rejected a trajectory (None if accepted)."""
    if status == "accepted":
        return None
    prefix = (reject_reason or "").split(":", 1)[0].strip()
    return _PREFIX.get(prefix, "other")


def judge_spend_recorded(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether this output's verdicts carry what judging spent (LLM judges
    record tokens and dollars in the verdict; older outputs do not)."""
    columns = {name: str(kind) for name, kind, *_ in con.sql("DESCRIBE trajectories").fetchall()}
    return "cost_usd" in columns.get("verdict", "") and "tokens_in" in columns.get("verdict", "")


def index_rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """One row per trajectory: what the browser lists and the plots count."""
    judge = ("coalesce(verdict.tokens_in, 0) + coalesce(verdict.tokens_out, 0) AS judge_tokens, "
             "coalesce(verdict.cost_usd, 0) AS judge_cost" if judge_spend_recorded(con)
             else "0 AS judge_tokens, 0.0 AS judge_cost")
    rel = con.sql(
        f"""SELECT trajectory_id AS id, task_id, template_id AS template, source,
                  coalesce(source_detail, '') AS detail, coalesce(instruction, '') AS instruction, status,
                  coalesce(reject_reason, '') AS reason,
                  num_steps AS steps, coalesce(tokens_in, 0) AS tokens_in, coalesce(tokens_out, 0) AS tokens_out,
                  coalesce(cost_usd, 0) AS cost, coalesce(duration_s, 0) AS seconds, {judge},
                  started_at, verdict.passed AS judge_passed, error IS NOT NULL AS errored
           FROM trajectories ORDER BY template_id, source, trajectory_id"""
    )
    rows = [dict(zip(rel.columns, r)) for r in rel.fetchall()]
    for r in rows:
        r["stage"] = rejecting_stage(r["status"], r["reason"])
        r["cost"] = round(float(r["cost"]), 6)
        r["judge_cost"] = round(float(r["judge_cost"]), 6)
        r["seconds"] = round(float(r["seconds"]), 2)
    return rows


def verification_seconds(out_dir: storage.Location) -> dict[str, tuple[float, float]]:
    """Per trajectory, the seconds its replays and minimality tries took
    (`quality/replay/`, the replay gate's cache, every setting it was
    verified under): the quality stages that spend browser time. Empty for
    an output verified before replays were timed."""
    fs, root = storage.resolve(out_dir)
    spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in storage.read_parquet_rows(fs, storage.join(root, "quality", "replay")):
        if r.get("replay_s") is None:
            continue  # cached before replays were timed
        spent[r["trajectory_id"]][0] += r["replay_s"]
        spent[r["trajectory_id"]][1] += r.get("minimality_s") or 0.0
    return {tid: (a, b) for tid, (a, b) in spent.items()}


def with_verification_seconds(rows: list[dict[str, Any]], spent: dict[str, tuple[float, float]]) -> None:
    for r in rows:
        r["replay_s"], r["minimality_s"] = spent.get(r["id"], (0.0, 0.0))


def funnel(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per source and template (and a total per source): how many were
    attempted, judged, passed each stage and were accepted, what generating
    and judging them spent, the seconds replay and minimality spent on them
    (rows without `replay_s`: none), and dollars (generating and judging)
    per accepted trajectory.

    A trajectory rejected at a stage passed every stage before it, so the
    count past a stage is the count attempted less those rejected there or
    earlier."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["source"], r["template"])].append(r)
        groups[(r["source"], "")].append(r)
    out = []
    for (source, template), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] == "", kv[0][1])):
        rejected_at = Counter(r["stage"] for r in members if r["stage"])
        passed, left = {}, len(members)
        for stage in STAGES:
            left -= rejected_at.get(stage, 0)
            passed[stage] = left
        accepted = sum(r["status"] == "accepted" for r in members)
        cost = sum(r["cost"] for r in members)
        judge_cost = sum(r["judge_cost"] for r in members)
        out.append({
            "source": source, "template": template or "(all)", "total": not template,
            "attempted": len(members), "judged": passed["episode"],
            **{f"passed_{s}": passed[s] for s in STAGES[1:]},
            "other": rejected_at.get("other", 0), "accepted": accepted,
            "tokens_in": sum(r["tokens_in"] for r in members), "tokens_out": sum(r["tokens_out"] for r in members),
            "cost": round(cost, 4), "seconds": round(sum(r["seconds"] for r in members), 1),
            "judge_tokens": sum(r["judge_tokens"] for r in members), "judge_cost": round(judge_cost, 4),
            "replay_s": round(sum(r.get("replay_s", 0.0) for r in members), 1),
            "minimality_s": round(sum(r.get("minimality_s", 0.0) for r in members), 1),
            "usd_per_accepted": round((cost + judge_cost) / accepted, 5) if accepted else None,
        })
    return out


def action_counts(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Actions by kind and source, over every recorded step."""
    rel = con.sql(
        """SELECT source, s.action.name AS kind, count(*) AS n
           FROM (SELECT source, unnest(steps) AS s FROM trajectories)
           GROUP BY ALL ORDER BY n DESC"""
    )
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def _action_key(step: dict[str, Any]) -> tuple:
    """A step as two labelers would agree on it: the kind of action, the
    element it acted on, and what it typed or pressed."""
    a, el = step.get("action") or {}, step.get("element") or {}
    return a.get("name"), el.get("role"), el.get("name"), a.get("text"), a.get("key")


def labeler_agreement(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The report's fallback when the annotation queue is not on this machine
    (`annotation_ui.agreement` is the measure): per template, over tasks two
    or more labelers did in the export, the share of pairs with the same
    judge outcome and with the same actions (kind, element, text per step),
    with no minimality reduction and no step-level score. Rows in
    `annotation_ui.agreement.table`'s shape, `step_agreement` None."""
    rel = con.sql(
        """SELECT template_id, task_id, source_detail, verdict.passed, steps
           FROM trajectories WHERE source = 'human'"""
    )
    by_task: dict[tuple[str, str], list[tuple[str, bool, list[tuple]]]] = defaultdict(list)
    for template, task, labeler, passed, steps in rel.fetchall():
        by_task[(template, task)].append((labeler or "", bool(passed), [_action_key(s) for s in steps or []]))
    per_template: dict[str, Counter] = defaultdict(Counter)
    tasks: dict[str, set[str]] = defaultdict(set)
    for (template, task), done in by_task.items():
        for i, a in enumerate(done):
            for b in done[i + 1:]:
                if a[0] == b[0]:
                    continue
                c = per_template[template]
                tasks[template].add(task)
                c["pairs"] += 1
                c["same_outcome"] += a[1] == b[1]
                c["same_actions"] += a[2] == b[2]
                c["disagreements"] += a[1:] != b[1:]
    return [
        {"template_id": t, "tasks": len(tasks[t]), "pairs": c["pairs"],
         "outcome_agreement": round(c["same_outcome"] / c["pairs"], 4),
         "sequence_agreement": round(c["same_actions"] / c["pairs"], 4), "step_agreement": None,
         "disagreements": c["disagreements"]}
        for t, c in sorted(per_template.items())
    ]


def _verdicts(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    rel = con.sql(
        """SELECT trajectory_id AS id, template_id AS template, source, source_detail AS detail, instruction,
                  status, reject_reason AS reason, verdict, error, answer, duplicate_of, replay_passed,
                  consistency_flags, review, num_steps, final_url
           FROM trajectories"""
    )
    return {r[0]: dict(zip(rel.columns, r)) for r in rel.fetchall()}


def _overlay(step: dict[str, Any]) -> dict[str, Any]:
    """Where the action lands, as fractions of the screenshot: the point (and
    a drag's end), the scroll amount, and the target element's box."""
    a, area, el = step["action"] or {}, step["area"] or {}, step["element"] or {}
    o: dict[str, Any] = {}
    if a.get("x") is not None and a.get("y") is not None:
        o["x"], o["y"] = a["x"], a["y"]
    if a.get("x2") is not None and a.get("y2") is not None:
        o["x2"], o["y2"] = a["x2"], a["y2"]
    if a.get("dx") or a.get("dy"):
        o["dx"], o["dy"] = a.get("dx") or 0, a.get("dy") or 0
    box, w, h = el.get("box"), area.get("width"), area.get("height")
    if box and w and h:
        o["box"] = [(box["x"] - area["x"]) / w, (box["y"] - area["y"]) / h, box["width"] / w, box["height"] / h]
    return o


def _step(step: dict[str, Any], thumbs: Thumbnails | None) -> dict[str, Any]:
    a, el, mono = step["action"] or {}, step["element"] or {}, step["monologue"] or {}
    shot = (step.get("screenshot") or {}).get("bytes")
    src, w, h = thumbs.uri(shot) if (thumbs and shot) else ("", 0, 0)
    if thumbs is None:
        missing = "left out (--no-screenshots)"
    elif src:
        missing = ""
    elif shot and thumbs.left_out:
        missing = f"left out: the report's {thumbs.budget / 1e6:g} MB of screenshots were spent"
    else:
        missing = "none recorded"
    return {
        "i": step["step_index"], "url": step["url"], "action": a.get("name"), "text": step["action_text"],
        "args": {k: a[k] for k in ("text", "key") if a.get(k)},
        "element": " ".join(x for x in (el.get("role"), json.dumps(el["name"]) if el.get("name") else "") if x),
        "thought": mono.get("thought") or "", "error": step["error"] or "",
        "img": src, "w": w, "h": h, "missing": missing, "overlay": _overlay(step),
    }


def trajectory_details(
    con: duckdb.DuckDBPyConnection, thumbs: Thumbnails | None, batch: int = 256
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each trajectory with its verdicts and its steps (screenshots as small
    data URIs unless `thumbs` is None).

    The steps are read in the order they are stored, not sorted (a sort would
    hold every screenshot of the run in memory at once), and a trajectory is
    given out as soon as all its steps are in: the export writes a
    trajectory's steps together, so only one is pending at a time."""
    verdicts = _verdicts(con)
    expected = dict(con.sql("SELECT trajectory_id, count(*) FROM steps GROUP BY ALL").fetchall())
    cols = "trajectory_id, step_index, url, area, action, action_text, element, monologue, error"
    if thumbs is not None:
        cols += ", screenshot"
    cur = con.execute(f"SELECT {cols} FROM steps")
    names = [d[0] for d in cur.description]
    pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
    while chunk := cur.fetchmany(batch):
        for values in chunk:
            s = dict(zip(names, values))
            tid = s["trajectory_id"]
            pending[tid].append(_step(s, thumbs))
            if len(pending[tid]) == expected[tid]:
                steps = sorted(pending.pop(tid), key=lambda step: step["i"])
                if tid in verdicts:
                    yield tid, {**verdicts.pop(tid), "steps": steps}
    for tid, v in verdicts.items():  # trajectories with no step rows
        yield tid, {**v, "steps": []}
