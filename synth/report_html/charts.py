"""The report's plots as Vega-Lite specs built with Altair, their data inline.

Altair (Vega-Lite) rather than Plotly: the page carries the Vega runtime once,
about 0.9 MB from vl-convert's offline bundle, where plotly.js is 4.8 MB; the
specs are small JSON and render to SVG with no network."""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import altair as alt

WIDTH = 460
NARROW = 300  # horizontal bars: their labels (template names) take the rest


def _data(rows: list[dict[str, Any]]) -> alt.Data:
    return alt.Data(values=rows)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def over_time(rows: list[dict[str, Any]], buckets: int = 120) -> list[dict[str, Any]]:
    """Accepted trajectories and dollars (generating and judging), cumulative per source, at each
    point in time a trajectory finished (bucketed so a long run stays small)."""
    done = [r for r in rows if r.get("started_at")]
    if not done:
        return []
    ends = [r["started_at"] + (r["seconds"] or 0) for r in done]
    t0, t1 = min(ends), max(ends)
    step = max((t1 - t0) / buckets, 1.0)
    per: dict[str, Counter] = {}
    for r, end in zip(done, ends):
        b = math.floor((end - t0) / step)
        c = per.setdefault(r["source"], Counter())
        c[(b, "accepted")] += r["status"] == "accepted"
        c[(b, "cost")] += r["cost"] + r.get("judge_cost", 0.0)
    out = []
    for source, c in sorted(per.items()):
        acc = cost = 0.0
        for b in sorted({b for b, _ in c}):
            acc += c[(b, "accepted")]
            cost += c[(b, "cost")]
            out.append({"source": source, "time": _iso(t0 + (b + 1) * step), "accepted": acc, "cost": round(cost, 6)})
    return out


_TIME_TIP = alt.Tooltip("time:T", timeUnit="utcyearmonthdatehoursminutesseconds", title="finished (UTC)")


def _time_axis(points: list[dict[str, Any]]) -> alt.X:
    """Time in UTC on a 24-hour clock (Vega's default is the viewer's zone,
    12-hour), the days the run spans in the title, seconds for a short run."""
    times = sorted(p["time"] for p in points)
    days = sorted({t[:10] for t in times})
    span = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
    clock = "%H:%M:%S" if times[0][:16] == times[-1][:16] or len(points) < 3 else "%H:%M"
    return alt.X("time:T", title=f"finished (UTC, {span})", scale=alt.Scale(type="utc"),
                 axis=alt.Axis(format=clock if len(days) == 1 else "%m-%d " + clock, labelOverlap=True))


def accepted_over_time(points: list[dict[str, Any]]) -> dict[str, Any]:
    return (
        alt.Chart(_data(points), title="Accepted trajectories over time")
        .mark_line(point=False, interpolate="step-after")
        .encode(x=_time_axis(points), y=alt.Y("accepted:Q", title="accepted (cumulative)"),
                color=alt.Color("source:N"), tooltip=["source:N", _TIME_TIP, "accepted:Q"])
        .properties(width=WIDTH, height=220).to_dict()
    )


def cost_over_time(points: list[dict[str, Any]]) -> dict[str, Any]:
    free = not any(p["cost"] for p in points)
    title = alt.TitleParams("Cost over time (USD, cumulative)",
                            subtitle="No trajectory in this run recorded a cost (solvers and labelers are free)." if free else "")
    return (
        alt.Chart(_data(points), title=title)
        .mark_line(interpolate="step-after")
        .encode(x=_time_axis(points), y=alt.Y("cost:Q", title="USD"),
                color=alt.Color("source:N"), tooltip=["source:N", _TIME_TIP, alt.Tooltip("cost:Q", format="$.4f")])
        .properties(width=WIDTH, height=220).to_dict()
    )


def steps_per_trajectory(rows: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter((r["steps"] or 0, r["status"]) for r in rows)
    data = [{"steps": s, "status": st, "trajectories": n} for (s, st), n in sorted(counts.items())]
    return (
        alt.Chart(_data(data), title="Steps per trajectory")
        .mark_bar()
        .encode(x=alt.X("steps:O", title="steps"), y=alt.Y("trajectories:Q", stack=True),
                color=alt.Color("status:N", scale=alt.Scale(domain=["accepted", "rejected"], range=["#2f9e66", "#d9534f"])),
                tooltip=["steps:O", "status:N", "trajectories:Q"])
        .properties(width=WIDTH, height=220).to_dict()
    )


def actions_by_kind(actions: list[dict[str, Any]]) -> dict[str, Any]:
    return (
        alt.Chart(_data(actions), title="Actions by kind")
        .mark_bar()
        .encode(y=alt.Y("kind:N", sort="-x", title=None), x=alt.X("n:Q", title="steps"),
                color=alt.Color("source:N"), tooltip=["kind:N", "source:N", "n:Q"])
        .properties(width=NARROW, height=alt.Step(18)).to_dict()
    )


def rejections(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Rejections per gate and template; None when nothing was rejected."""
    counts = Counter((r["template"], r["stage"]) for r in rows if r["stage"])
    if not counts:
        return None
    data = [{"template": t, "gate": g, "rejected": n} for (t, g), n in sorted(counts.items())]
    return (
        alt.Chart(_data(data), title="Rejections per gate and template")
        .mark_bar()
        .encode(y=alt.Y("template:N", sort="-x", title=None), x=alt.X("rejected:Q", stack=True),
                color=alt.Color("gate:N"), tooltip=["template:N", "gate:N", "rejected:Q"])
        .properties(width=NARROW, height=alt.Step(16)).to_dict()
    )


def labeler_throughput(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Trajectories each labeler finished per hour; None without labelers."""
    human = [r for r in rows if r["source"] == "human" and r.get("started_at")]
    if not human:
        return None
    counts = Counter(
        (r["detail"] or "?", _iso(3600 * math.floor((r["started_at"] + r["seconds"]) / 3600))[:13].replace("T", " ") + ":00",
         r["status"]) for r in human
    )
    data = [{"labeler": lab, "hour": h, "status": st, "trajectories": n} for (lab, h, st), n in sorted(counts.items())]
    return (
        alt.Chart(_data(data), title="Labeler throughput (trajectories per hour)")
        .mark_bar()
        .encode(x=alt.X("hour:O", title="hour (UTC)"), y=alt.Y("trajectories:Q", stack=True),
                color=alt.Color("labeler:N"), tooltip=["labeler:N", "hour:O", "status:N", "trajectories:Q"])
        .properties(width=WIDTH, height=220).to_dict()
    )


AGREEMENT_MEASURES = (("outcome_agreement", "same outcome"), ("sequence_agreement", "same sequence"),
                      ("step_agreement", "step agreement"))


def labeler_agreement(agreement: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Agreement per template on tasks two labelers did (rows of
    `annotation_ui.agreement.table`; a measure that is None is not drawn);
    None without overlap."""
    if not agreement:
        return None
    data = [{"template": a["template_id"], "measure": m, "agreement": a[k], "pairs": a["pairs"]}
            for a in agreement for k, m in AGREEMENT_MEASURES if a.get(k) is not None]
    return (
        alt.Chart(_data(data), title="Labeler agreement per template")
        .mark_bar()
        .encode(y=alt.Y("template:N", title=None), yOffset="measure:N",
                x=alt.X("agreement:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
                color=alt.Color("measure:N"), tooltip=["template:N", "measure:N", alt.Tooltip("agreement:Q", format=".0%"), "pairs:Q"])
        .properties(width=NARROW).to_dict()
    )


@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script (window.vegaEmbed), from
    vl-convert's offline bundle for the Vega-Lite version Altair writes.

    vl-convert bundles it on each call (seconds of JavaScript tooling), so the
    result is kept in the user's cache folder per vl-convert and Vega-Lite
    version."""
    import vl_convert as vlc

    version = "_".join(alt.SCHEMA_VERSION.split(".")[:2])  # v6.4.1 -> v6_4, as Altair's own inline HTML does
    cached = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synth" / f"vega-{vlc.__version__}-{version}.js"
    if cached.is_file():
        return cached.read_text()
    try:
        bundle = vlc.javascript_bundle(vl_version=version)
    except (ValueError, RuntimeError):  # a vl-convert that does not know this Vega-Lite version: its own
        bundle = vlc.javascript_bundle()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(bundle)
        tmp.replace(cached)
    except OSError:  # a read-only home: bundle again next time
        pass
    return bundle
