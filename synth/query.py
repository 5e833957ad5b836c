"""DuckDB over a run's output: views `trajectories`, `steps` and `staging`."""

from __future__ import annotations

import duckdb
import pyarrow.dataset as ds

from synth import storage

VIEWS = {
    "trajectories": "data/trajectories",
    "steps": "data/steps",
    "staging": "staging",
}


def connect(out_dir: storage.Location) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per table that exists under `out_dir`.

    Local Parquet files DuckDB reads itself (`read_parquet`). Files on an
    object store are handed to it as pyarrow datasets opened with the output's
    filesystem: DuckDB scans a registered Arrow dataset lazily, reading only
    the columns and row groups a query needs, so no DuckDB extension (httpfs)
    and no download is needed."""
    fs, root = storage.resolve(out_dir)
    con = duckdb.connect()
    made = []
    for view, folder in VIEWS.items():
        files = storage.list_files(fs, storage.join(root, folder), ".parquet")
        if not files:
            continue
        if storage.is_local(fs):
            pattern = storage.join(root, folder, "*.parquet").replace("'", "''")
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{pattern}')")
        else:
            con.register(view, ds.dataset(files, format="parquet", filesystem=fs))
        made.append(view)
    if not made:
        raise FileNotFoundError(f"{out_dir}: no shards or staging here; run `synth run PIPELINE` first")
    return con


def stats_tables(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[list[str], list[tuple]]]:
    """The tables `synth stats` prints."""
    queries = {
        "by source": """
            SELECT source, count(*) AS trajectories,
                   count(*) FILTER (status = 'accepted') AS accepted,
                   round(100.0 * count(*) FILTER (status = 'accepted') / count(*), 1) AS yield_pct,
                   sum(num_steps) AS steps, round(sum(cost_usd), 4) AS cost_usd
            FROM trajectories GROUP BY ALL ORDER BY source""",
        "by template": """
            SELECT template_id, source, count(*) AS trajectories,
                   count(*) FILTER (status = 'accepted') AS accepted,
                   round(avg(num_steps), 2) AS avg_steps
            FROM trajectories GROUP BY ALL ORDER BY template_id, source""",
        "by verdict": """
            SELECT status, verdict.passed AS judge_passed,
                   coalesce(split_part(reject_reason, ':', 1), '') AS reason, count(*) AS trajectories
            FROM trajectories GROUP BY ALL ORDER BY trajectories DESC""",
    }
    # LLM-driven sources: tokens, dollars and yield per template, with a total
    # per model; cost per accepted trajectory is what a data lead budgets by.
    if con.sql("SELECT count(*) FROM trajectories WHERE source = 'bootstrap'").fetchall()[0][0]:
        queries["bootstrap by template"] = """
            SELECT coalesce(source_detail, '') AS model,
                   coalesce(template_id, '(all)') AS template_id,
                   count(*) AS trajectories,
                   count(*) FILTER (status = 'accepted') AS accepted,
                   round(100.0 * count(*) FILTER (status = 'accepted') / count(*), 1) AS yield_pct,
                   count(*) FILTER (hinted) AS hinted,
                   sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
                   round(sum(cost_usd), 4) AS cost_usd,
                   round(sum(cost_usd) / nullif(count(*) FILTER (status = 'accepted'), 0), 5) AS usd_per_accepted
            FROM trajectories WHERE source = 'bootstrap'
            GROUP BY GROUPING SETS ((source_detail, template_id), (source_detail))
            ORDER BY model, GROUPING(template_id), template_id"""
    # Judges that call a model (llm_judge): what judging cost, apart from the
    # sources' own cost (older data has no judge cost: the table is left out).
    if _judge_cost_recorded(con):
        queries["judge cost by source"] = """
            SELECT source, coalesce(json_extract_string(task_config, '$.judge.type'), '') AS judge,
                   count(*) AS judged, sum(verdict.tokens_in) AS tokens_in, sum(verdict.tokens_out) AS tokens_out,
                   round(sum(verdict.cost_usd), 4) AS cost_usd
            FROM trajectories WHERE verdict.tokens_in > 0 OR verdict.cost_usd > 0
            GROUP BY ALL ORDER BY source, judge"""
    # Recovery variants (synth.recovery): kept and dropped per template and
    # mistake kind (source_detail is "<solver>:<kind>@<step>"), with the reason.
    if con.sql("SELECT count(*) FROM trajectories WHERE source = 'recovery'").fetchall()[0][0]:
        queries["recovery variants"] = r"""
            SELECT template_id, coalesce(nullif(regexp_extract(source_detail, ':([a-z-]+)@', 1), ''), '(none)') AS kind,
                   count(*) AS variants, count(*) FILTER (status = 'accepted') AS accepted,
                   count(*) FILTER (status <> 'accepted') AS dropped,
                   coalesce(any_value(left(regexp_replace(reject_reason, ' at [a-z_]+\.py:\d+$', ''), 100))
                            FILTER (status <> 'accepted'), '') AS a_reason
            FROM trajectories WHERE source = 'recovery' GROUP BY ALL ORDER BY template_id, kind"""
    # Real mistakes the quality stage found and labelled in other sources'
    # trajectories (synth/quality/mistakes.py), the kind read off the mistake
    # step: typed text, a chosen option, a click that left the page or not.
    if _found_mistakes(con):
        queries["detected mistakes"] = """
            WITH s AS (SELECT trajectory_id, source, template_id, status, unnest(steps) AS step
                       FROM trajectories WHERE source <> 'recovery'),
                 m AS (SELECT *, lead(split_part(step.url, '#', 1))
                                   OVER (PARTITION BY trajectory_id ORDER BY step.index) AS next_url FROM s)
            SELECT source, template_id,
                   CASE step.action.name WHEN 'type' THEN 'typo' WHEN 'select' THEN 'wrong-option'
                        ELSE CASE WHEN next_url <> split_part(step.url, '#', 1) THEN 'wrong-page'
                                  ELSE 'wrong-click' END END AS kind,
                   count(*) AS mistakes, count(DISTINCT trajectory_id) AS trajectories,
                   count(DISTINCT trajectory_id) FILTER (status = 'accepted') AS accepted
            FROM m WHERE step.role = 'mistake' GROUP BY ALL ORDER BY source, template_id, kind"""
    out = {}
    for title, sql in queries.items():
        rel = con.sql(sql)
        out[title] = (rel.columns, rel.fetchall())
    # instruction diversity and route coverage of accepted trajectories (synth.explore.diversity)
    from synth.explore.diversity import exploration_table, stats_table

    columns, rows = stats_table(con)
    if rows:
        out["diversity by source and site"] = (columns, rows)
    columns, rows = exploration_table(con)
    if rows:
        out["exploration by site: proposals, novel kinds, route coverage over the templates"] = (columns, rows)
    return out


def _found_mistakes(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether a trajectory of a source other than recovery variants has a
    step labelled a mistake (older data has no step roles: no)."""
    columns = dict((name, str(kind)) for name, kind, *_ in con.sql("DESCRIBE trajectories").fetchall())
    if "reflection" not in columns.get("steps", ""):  # (written with the step's role; `element` has a role too)
        return False
    sql = """SELECT count(*) FROM (SELECT unnest(steps) AS step FROM trajectories WHERE source <> 'recovery')
             WHERE step.role = 'mistake'"""
    return con.sql(sql).fetchall()[0][0] > 0


def _judge_cost_recorded(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether `trajectories` has judge costs, and any of them is not zero."""
    columns = dict((name, str(kind)) for name, kind, *_ in con.sql("DESCRIBE trajectories").fetchall())
    if "cost_usd" not in columns.get("verdict", ""):
        return False
    sql = "SELECT count(*) FROM trajectories WHERE verdict.tokens_in > 0 OR verdict.cost_usd > 0"
    return con.sql(sql).fetchall()[0][0] > 0
