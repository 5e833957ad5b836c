"""`synth stats --html`: one self-contained HTML page a data lead can open or
attach: plots of yield, cost, steps, actions, rejections and labelers; the
funnel per source and template; and a browser of every trajectory, accepted
or rejected, with its actions drawn on its screenshots and its verdicts.

Nothing is fetched: the Vega runtime, the plot specs, the trajectories and
their screenshots (small PNGs, each trajectory's parsed only when opened) are
all in the one file, so it renders the same offline, in a CI artifact or an
email."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb
import jinja2

from synth import storage
from synth.query import connect, stats_tables
from synth.report_html import charts, data
from synth.report_html.thumbs import BUDGET_MB, Thumbnails


def _asset(name: str) -> str:
    return resources.files("synth.report_html").joinpath(name).read_text()


_PAGE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(_asset("page.html"))


def _json(value: Any) -> str:
    """JSON safe inside a <script> element (no `</script>` can end it early)."""
    return json.dumps(value, separators=(",", ":"), default=str).replace("<", "\\u003c")


def _link(**filters: Any) -> str:
    """The page's link to the trajectory list filtered by `filters`."""
    kept = {k: v for k, v in filters.items() if v not in (None, "", "(all)")}
    return "#list?" + urlencode(kept)


def _gates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    g = manifest.get("gates") or {}
    if not g:
        return []
    judge, replay = g["judge"], g["replay"]
    return [
        {"name": "judge", "stage": "judge", "in": judge["in"], "rejected": judge["in"] - judge["passed"], "detail": ""},
        {"name": "review", "stage": "review", "in": g["review"]["reviewed"], "rejected": g["review"]["rejected"], "detail": ""},
        {"name": "consistency", "stage": "consistency", "in": g["consistency"]["in"], "rejected": g["consistency"]["rejected"],
         "detail": ", ".join(f"{k} {v}" for k, v in g["consistency"]["by_flag"].items())},
        {"name": "dedup", "stage": "dedup", "in": g["dedup"]["in"], "rejected": g["dedup"]["rejected"],
         "detail": f"threshold {g['dedup']['threshold']}"},
        {"name": "replay", "stage": "replay", "in": replay["in"], "rejected": replay["rejected"],
         "detail": f"{replay['replayed']} replayed, {replay['cached']} cached, {replay['not_sampled']} not sampled, "
                   f"{replay['promoted']} promoted" + _seconds(replay)},
        {"name": "minimality", "stage": "minimality", "in": replay["passed"], "rejected": g["minimality"]["rejected"],
         "detail": f"mode {g['minimality']['mode']}, {g['minimality']['steps_dropped']} steps dropped"
                   + _seconds(g["minimality"])},
    ]


def _seconds(gate: dict[str, Any]) -> str:
    """A gate's browser time, where the manifest records it."""
    return f", {gate['seconds']:,.1f} s of browser time" if gate.get("seconds") else ""


def _stage_costs(manifest: dict[str, Any], judge_recorded: bool, verification_timed: bool) -> str:
    """What the funnel cannot show per trajectory, said plainly."""
    said = [] if judge_recorded else ["This output's verdicts record no judging spend (older data, or no LLM judge)."]
    mono = (manifest.get("gates") or {}).get("monologue") or {}
    if mono.get("cost_usd"):
        said.append(f"The monologue gate spent ${mono['cost_usd']:,.4f} on {mono.get('generated', 0)} steps in all.")
    if verification_timed:
        said.append("Replay and minimality spend only browser time: the seconds each trajectory's replays and "
                    "minimality tries took (counted where the trajectory stands, whatever became of it). "
                    "Consistency and dedup spend neither tokens nor browser time.")
    else:
        said.append("Replay and minimality spend only browser time, which this output does not record "
                    "(it was verified before replays were timed).")
    return " ".join(said)


def _plots(rows: list[dict[str, Any]], actions: list[dict[str, Any]], agreement: list[dict[str, Any]]) -> list[dict[str, Any]]:
    points = charts.over_time(rows)
    no_labelers = "No labeler data in this run: no trajectory came from the human source."
    no_overlap = ("No labeler agreement in this run: no task was done by two labelers." if any(r["source"] == "human" for r in rows)
                  else no_labelers)
    made = [
        ("accepted-over-time", "Accepted trajectories over time", charts.accepted_over_time(points) if points else None,
         "No trajectory records when it ran."),
        ("cost-over-time", "Cost over time", charts.cost_over_time(points) if points else None, "No trajectory records when it ran."),
        ("steps-per-trajectory", "Steps per trajectory", charts.steps_per_trajectory(rows) if rows else None, "No trajectories."),
        ("actions-by-kind", "Actions by kind", charts.actions_by_kind(actions) if actions else None, "No steps."),
        ("rejections", "Rejections per gate and template", charts.rejections(rows), "Nothing was rejected."),
        ("labeler-throughput", "Labeler throughput", charts.labeler_throughput(rows), no_labelers),
        ("labeler-agreement", "Labeler agreement", charts.labeler_agreement(agreement), no_overlap),
    ]
    return [{"id": f"plot-{i}", "title": t, "spec": spec, "empty": empty} for i, t, spec, empty in made]


def _agreement(out_dir: storage.Location, manifest: dict[str, Any], con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Labelers' agreement from the output's annotation queue (the measure
    `synth stats` prints), each disagreement with links to its two
    trajectories; where the queue is not on this machine, the cruder measure
    the exported trajectories allow, and the page says which it shows."""
    from annotation_ui import agreement

    run = agreement.for_output(out_dir, manifest)
    if run.found:
        table, pairs = run.table, run.disagreements
        note = (f"From the annotation queue {run.db}, as `synth stats` prints it: every pair of labelers of a task, "
                "compared on the judge's outcome, on the action sequence once the steps the minimality gate would "
                "drop are left out, and step by step (2 × common steps / all steps). Click a trajectory of a "
                "disagreement to open it.")
    else:
        table, pairs = data.labeler_agreement(con), []
        note = (f"The annotation queue ({run.db}) is not on this machine, so this compares the exported trajectories "
                "as recorded: the same outcome and the same actions (kind, element, text), with no minimality "
                "reduction, no step-level agreement and no list of disagreements.")
    for row in table:
        row["link"] = _link(source="human", template=row["template_id"])
    return {"shown": run.found or bool(table), "note": note, "table": table, "disagreements": pairs}


def _tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, list[str], list[tuple[str, tuple]]]]:
    """`synth stats`'s tables, each row linked to its trajectories."""
    out = []
    for title, (cols, rows) in stats_tables(con).items():
        linked = []
        for r in rows:
            row = dict(zip(cols, r))
            stage = data.rejecting_stage(row.get("status"), row.get("reason")) if row.get("reason") else None
            linked.append((_link(source=row.get("source"), template=row.get("template_id"), status=row.get("status"),
                                 stage=stage), r))
        out.append((title, cols, linked))
    return out


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether `synth.query.connect` made `name` (a view over local files, or
    an Arrow dataset registered for an object store)."""
    try:
        con.sql(f"SELECT 1 FROM {name} LIMIT 0").fetchall()
        return True
    except duckdb.CatalogException:
        return False


def render(out_dir: storage.Location, screenshots: bool = True, screenshot_mb: float = BUDGET_MB) -> str:
    """The report of the output at `out_dir`. Screenshots take at most
    `screenshot_mb` of it (the rest of a large run's steps are shown without
    theirs); `screenshots=False` leaves them all out (a much smaller page,
    steps and verdicts still shown)."""
    fs, root = storage.resolve(out_dir)
    manifest_path = storage.join(root, "manifest.json")
    if not storage.exists(fs, manifest_path):
        raise FileNotFoundError(f"{out_dir}: no manifest.json; run `synth run PIPELINE` first")
    m = json.loads(storage.read_text(fs, manifest_path))
    con = connect(out_dir)
    con.execute("SET enable_progress_bar = false")  # reading every step's screenshot would draw one on the terminal
    rows = data.index_rows(con)
    verified = data.verification_seconds(out_dir)
    data.with_verification_seconds(rows, verified)
    judge_recorded = data.judge_spend_recorded(con)
    has_steps = _has_table(con, "steps")
    total, accepted, cost = m["trajectories"], m["accepted"], m.get("cost_usd", 0.0)
    cards = [
        ("trajectories", f"{total:,}"),
        ("accepted", f"{accepted:,}"),
        ("yield", f"{100 * accepted / total:.1f}%" if total else "-"),
        ("accepted steps", f"{m['accepted_steps']:,}"),
        ("cost", f"${cost:,.2f}"),
        ("$ / accepted", f"${cost / accepted:,.4f}" if accepted and cost else "-"),
    ]
    funnel = data.funnel(rows)
    for f in funnel:
        f["link"] = _link(source=f["source"], template=f["template"])
        f["pct"] = round(100 * f["accepted"] / f["attempted"], 1) if f["attempted"] else 0
    rejected = sum(m["reject_reasons"].values()) or 1
    thumbs = Thumbnails(budget_mb=screenshot_mb) if screenshots else None
    details = data.trajectory_details(con, thumbs) if has_steps else iter(())
    agreement = _agreement(out_dir, m, con)
    plots = _plots(rows, data.action_counts(con), agreement["table"])
    page = _PAGE.render(
        name=m["name"],
        out_dir=str(out_dir),
        made=time.strftime("%Y-%m-%d %H:%M"),
        runs=m.get("run_ids", []),
        cards=cards,
        plots=plots,
        specs=_json({p["id"]: p["spec"] for p in plots if p["spec"]}),
        funnel=funnel,
        agreement=agreement,
        stage_costs=_stage_costs(m, judge_recorded, bool(verified)),
        verification_timed=bool(verified),
        judge_recorded=judge_recorded,
        gates=_gates(m),
        reasons=[(k, v, round(100 * v / rejected, 1), _link(stage=data.rejecting_stage("rejected", k)))
                 for k, v in sorted(m["reject_reasons"].items(), key=lambda kv: -kv[1])],
        tables=_tables(con),
        index=_json([{k: r[k] for k in ("id", "template", "source", "detail", "status", "stage", "reason", "steps",
                                         "instruction")} for r in rows]),
        details=((tid, _json(d)) for tid, d in details),
        css=_asset("page.css"),
        js=_asset("page.js"),
        vega=charts.vega_bundle().replace("</script", "<\\/script"),
    )
    return page.replace("<!--SCREENSHOTS-->", _screenshots_note(thumbs), 1)


def _screenshots_note(thumbs: Thumbnails | None) -> str:
    """Said under the browser's heading, once the screenshots are encoded."""
    if thumbs is None:
        return "Screenshots are left out of this report (--no-screenshots)."
    if thumbs.left_out:
        return (f"{thumbs.left_out:,} screenshots are left out: this report carries at most "
                f"{thumbs.budget / 1e6:g} MB of them.")
    return ""


def write(out_dir: storage.Location, path: Path | str | None = None, screenshots: bool = True) -> str:
    """Write the report to the local `path`, else to `report.html` in the
    output (local or not); returns where."""
    html = render(out_dir, screenshots)
    if path:
        Path(path).write_text(html)
        return str(path)
    fs, root = storage.resolve(out_dir)
    storage.write_atomic(fs, storage.join(root, "report.html"), html)
    return storage.child(out_dir, "report.html")
