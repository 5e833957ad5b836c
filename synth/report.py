"""`synth stats --html`: one self-contained HTML page a data lead can open or
attach: yield, cost and rejection reasons per source and template, and what
each quality gate took out. No scripts and no network: tables and CSS bars,
so it renders the same offline, in a CI artifact or an email."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jinja2

from synth import storage
from synth.query import connect, stats_tables

_PAGE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ name }}: synth report</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d232a;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #dde2e7}
.sub{color:#5b6570} .cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{border:1px solid #dde2e7;border-radius:8px;padding:.6rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.4rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0} th,td{padding:.25rem .5rem;text-align:left;border-bottom:1px solid #eef1f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:flex;height:.9rem;background:#eef1f4;border-radius:3px;overflow:hidden;min-width:12rem}
.ok{background:#2f9e66} .no{background:#d9534f}
</style></head><body>
<h1>{{ name }}</h1>
<div class="sub">{{ out_dir }} · made {{ made }} · runs {{ runs|join(", ") }}</div>
<div class="cards">
{% for label, value in cards %}<div class="card">{{ label }}<b>{{ value }}</b></div>{% endfor %}
</div>
{% if gates %}<h2>Quality gates</h2>
<table><tr><th>gate</th><th>in</th><th>rejected</th><th>detail</th></tr>
{% for g in gates %}<tr><td>{{ g.name }}</td><td class="n">{{ g["in"] }}</td><td class="n">{{ g.rejected }}</td><td>{{ g.detail }}</td></tr>{% endfor %}
</table>{% endif %}
<h2>Yield by template</h2>
<table><tr><th>template</th><th>source</th><th>accepted</th><th>total</th><th></th></tr>
{% for r in templates %}<tr><td>{{ r.template }}</td><td>{{ r.source }}</td><td class="n">{{ r.accepted }}</td><td class="n">{{ r.total }}</td>
<td><div class="bar"><div class="ok" style="width:{{ r.pct }}%"></div><div class="no" style="width:{{ 100 - r.pct }}%"></div></div></td></tr>{% endfor %}
</table>
{% if reasons %}<h2>Rejection reasons</h2>
<table><tr><th>reason</th><th>trajectories</th><th></th></tr>
{% for reason, n, pct in reasons %}<tr><td>{{ reason }}</td><td class="n">{{ n }}</td><td><div class="bar"><div class="no" style="width:{{ pct }}%"></div></div></td></tr>{% endfor %}
</table>{% endif %}
{% for title, cols, rows in tables %}<h2>{{ title }}</h2>
<table><tr>{% for c in cols %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for v in row %}<td{% if v is number %} class="n"{% endif %}>{{ v if v is not none else "" }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endfor %}
</body></html>
"""
)


def _gates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    g = manifest.get("gates") or {}
    if not g:
        return []
    judge, replay = g["judge"], g["replay"]
    return [
        {"name": "judge", "in": judge["in"], "rejected": judge["in"] - judge["passed"], "detail": ""},
        {"name": "review", "in": g["review"]["reviewed"], "rejected": g["review"]["rejected"], "detail": ""},
        {"name": "consistency", "in": g["consistency"]["in"], "rejected": g["consistency"]["rejected"],
         "detail": ", ".join(f"{k} {v}" for k, v in g["consistency"]["by_flag"].items())},
        {"name": "dedup", "in": g["dedup"]["in"], "rejected": g["dedup"]["rejected"],
         "detail": f"threshold {g['dedup']['threshold']}"},
        {"name": "replay", "in": replay["in"], "rejected": replay["rejected"],
         "detail": f"{replay['replayed']} replayed, {replay['cached']} cached, {replay['not_sampled']} not sampled, "
                   f"{replay['promoted']} promoted"},
        {"name": "minimality", "in": replay["passed"], "rejected": g["minimality"]["rejected"],
         "detail": f"mode {g['minimality']['mode']}, {g['minimality']['steps_dropped']} steps dropped"},
    ]


def render(out_dir: storage.Location) -> str:
    fs, root = storage.resolve(out_dir)
    manifest_path = storage.join(root, "manifest.json")
    if not storage.exists(fs, manifest_path):
        raise FileNotFoundError(f"{out_dir}: no manifest.json; run `synth run PIPELINE` first")
    m = json.loads(storage.read_text(fs, manifest_path))
    con = connect(out_dir)
    per_template = con.sql(
        """SELECT template_id, source, count(*) FILTER (status = 'accepted'), count(*)
           FROM trajectories GROUP BY ALL ORDER BY 1, 2"""
    ).fetchall()
    total, accepted, cost = m["trajectories"], m["accepted"], m.get("cost_usd", 0.0)
    cards = [
        ("trajectories", f"{total:,}"),
        ("accepted", f"{accepted:,}"),
        ("yield", f"{100 * accepted / total:.1f}%" if total else "-"),
        ("accepted steps", f"{m['accepted_steps']:,}"),
        ("cost", f"${cost:,.2f}"),
        ("$ / accepted", f"${cost / accepted:,.4f}" if accepted and cost else "-"),
    ]
    rejected = sum(m["reject_reasons"].values()) or 1
    return _PAGE.render(
        name=m["name"],
        out_dir=str(out_dir),
        made=time.strftime("%Y-%m-%d %H:%M"),
        runs=m.get("run_ids", []),
        cards=cards,
        gates=_gates(m),
        templates=[
            {"template": t, "source": s, "accepted": a, "total": n, "pct": round(100 * a / n, 1) if n else 0}
            for t, s, a, n in per_template
        ],
        reasons=[(k, v, round(100 * v / rejected, 1)) for k, v in sorted(m["reject_reasons"].items(), key=lambda kv: -kv[1])],
        tables=[(title, cols, rows) for title, (cols, rows) in stats_tables(con).items()],
    )


def write(out_dir: storage.Location, path: Path | str | None = None) -> str:
    """Write the report to the local `path`, else to `report.html` in the
    output (local or not); returns where."""
    html = render(out_dir)
    if path:
        Path(path).write_text(html)
        return str(path)
    fs, root = storage.resolve(out_dir)
    storage.write_atomic(fs, storage.join(root, "report.html"), html)
    return storage.child(out_dir, "report.html")
