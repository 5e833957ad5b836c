"""The `synth` command: run | query | stats | push | replay | tasks | annotate."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from synth import storage
from synth.config import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
tasks_app = typer.Typer(no_args_is_help=True, help="Inspect task templates and their instances.")
app.add_typer(tasks_app, name="tasks")
sites_app = typer.Typer(no_args_is_help=True, help="The sites synth knows, and what a solver sees on them.")
app.add_typer(sites_app, name="sites")
from annotation_ui.cli import annotate_app  # noqa: E402 - registered next to the other sub-apps
app.add_typer(annotate_app, name="annotate")
from synth.webarena_import import import_app  # noqa: E402
tasks_app.add_typer(import_app, name="import")
from synth.export.native_cli import export_native  # noqa: E402
app.command("export")(export_native)
from synth.judges_cli import judges_app  # noqa: E402
app.add_typer(judges_app, name="judges")
# Piped output (CI logs, `| less`) is not cut to rich's 80-column default.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
out = Console(width=None if sys.stdout.isatty() else 160)

DEFAULT_OUT = "out/web"


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


PLUGIN_OPTION = typer.Option(
    None, "--plugin", "-p",
    help="a module to import first, whose @register_site, @register_solver, ... run (repeatable); installed "
    "packages' synth.* entry points load anyway",
)


def _plugins(modules: Optional[list[str]]) -> None:
    from synth.plugins import PluginError, load_modules

    try:
        load_modules(modules or [], (os.getcwd(),))
    except PluginError as e:
        fail(str(e))


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="pipeline YAML, e.g. pipelines/web.yaml"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join (default $RAY_ADDRESS or local)"),
    limit: Optional[int] = typer.Option(None, help="run only the first N tasks (for a quick look)"),
) -> None:
    """Run the pipeline: record, judge, stage, write shards. Re-running resumes."""
    from synth import pipeline as pl

    try:
        plan = pl.prepare(pipeline, limit)
    except ConfigError as e:
        fail(str(e))
    for kind, reason in plan.skipped.items():
        console.print(f"[yellow]skipping source {kind}[/]: {escape(reason)}")
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("accepted [green]{task.fields[accepted]}[/] rejected [red]{task.fields[rejected]}[/] "
                   "{task.fields[rate]:.1f} steps/s"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console) as bar:
        task_bar = bar.add_task(f"{plan.config.name} tasks", total=None, accepted=0, rejected=0, rate=0.0)

        replay_bar = None

        def show(p: pl.Progress) -> None:
            nonlocal replay_bar
            bar.update(task_bar, total=p.total, completed=p.done, accepted=p.accepted, rejected=p.rejected, rate=p.steps_per_s)
            if p.replay_total and replay_bar is None:
                replay_bar = bar.add_task("replay verification", total=p.replay_total, accepted=0, rejected=0, rate=0.0)
            if replay_bar is not None:
                bar.update(replay_bar, total=p.replay_total, completed=p.replayed, accepted=p.replay_passed,
                           rejected=p.replay_failed, rate=p.replay_steps_per_s)

        try:
            result = pl.execute(plan, address=address, on_progress=show)
        except KeyboardInterrupt:
            bar.stop()
            console.print(f"[yellow]interrupted[/]: what finished is kept in {storage.child(plan.out_dir, 'staging')}. "
                          "Run the same command again to resume.")
            raise typer.Exit(130) from None
        except pl.PipelineError as e:
            bar.stop()
            fail(f"{e}\nWhat finished is kept in {storage.child(plan.out_dir, 'staging')}; "
                 "run the same command to resume.", code=1)
        show(result.progress)
    p = result.progress
    if result.interrupted:
        console.print(
            f"[yellow]interrupted[/]: {p.done} of {p.total} tasks are in {storage.child(result.out_dir, 'staging')} "
            f"({p.accepted} accepted this run). Run the same command again to resume."
        )
        raise typer.Exit(130)
    m = result.manifest
    for kind, reason in p.stopped.items():
        console.print(f"[yellow]source {kind} stopped early[/]: {escape(reason)}")
    if p.skipped:
        console.print(f"resumed: {p.skipped} tasks were already done and were skipped")
    _summary(m, result.out_dir)


def _summary(m: dict, out_dir: str) -> None:
    table = Table(title=f"{m['name']}: {out_dir}", show_lines=False)
    for col in ("template", "trajectories", "accepted"):
        table.add_column(col, justify="right" if col != "template" else "left")
    for t, n in m["by_template"].items():
        table.add_row(t, str(n), str(m["accepted_by_template"].get(t, 0)))
    out.print(table)
    out.print(
        f"[bold]{m['accepted']} accepted[/] / {m['trajectories']} trajectories over "
        f"{len(m['accepted_by_template'])} templates, {m['accepted_steps']} accepted steps. "
        f"Shards: {storage.child(out_dir, 'data')}   Card: {storage.child(out_dir, 'README.md')}"
    )
    if m["reject_reasons"]:
        out.print("rejections: " + ", ".join(f"{k} {v}" for k, v in m["reject_reasons"].items()))
    for source, cost in (m.get("cost_usd_by_source") or {}).items():
        if cost:
            accepted = m["accepted_by_source"].get(source, 0)
            per = f"${cost / accepted:.4f} per accepted trajectory" if accepted else "no accepted trajectory"
            out.print(f"cost of {source}: ${cost:.4f} ({per})")
    gates = m.get("gates")
    if gates:
        r = gates["replay"]
        out.print(
            f"gates: judge {gates['judge']['passed']}/{gates['judge']['in']} passed, "
            f"consistency -{gates['consistency']['rejected']}, duplicates -{gates['dedup']['rejected']}, "
            f"replay {r['passed']} passed / {r['rejected']} failed ({r['cached']} cached, {r['not_sampled']} not sampled), "
            f"minimality -{gates['minimality']['rejected']}"
            + (f"; replay took {r['seconds']:,.0f} s, minimality {gates['minimality'].get('seconds', 0):,.0f} s of browser time"
               if r.get("seconds") else "")
        )


def _checked(out_dir: str) -> str:
    """The output location, or exit 2 with what is wrong with it."""
    try:
        storage.check(out_dir)
    except storage.StorageError as e:
        fail(f"{out_dir if not e.hides_input else 'the output URI'}: {e}")
    return out_dir


def _connect(out_dir: str):
    import pyarrow as pa

    from synth.query import connect

    try:
        return connect(_checked(out_dir))
    except FileNotFoundError as e:
        fail(str(e))
    except (OSError, pa.ArrowException) as e:  # an object store that does not answer, or says no
        fail(f"{out_dir}: cannot read: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


@app.command()
def query(
    sql: str = typer.Argument(..., help="SQL over the views trajectories, steps and staging"),
    out_dir: str = typer.Option(DEFAULT_OUT, "--out", "-o", help="a pipeline's output folder or URI (s3://...)"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | csv | json"),
) -> None:
    """Run DuckDB SQL over a run's shards."""
    import duckdb

    con = _connect(out_dir)
    try:
        rel = con.sql(sql)
    except duckdb.Error as e:
        fail(f"query failed: {e}")
    if rel is None:
        return
    cols, rows = rel.columns, rel.fetchall()
    if fmt == "json":
        out.print_json(json.dumps([dict(zip(cols, r, strict=True)) for r in rows], default=str))
    elif fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    else:
        table = Table(*cols)
        for r in rows:
            table.add_row(*(_cell(v) for v in r))
        out.print(table)


def _cell(v: object) -> str:
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    s = str(v)
    return s if len(s) <= 120 else s[:117] + "..."


@app.command()
def stats(
    out_dir: str = typer.Argument(DEFAULT_OUT, help="a pipeline's output folder or URI (s3://...)"),
    html: bool = typer.Option(False, "--html", help="also write a self-contained HTML report"),
    html_path: Optional[Path] = typer.Option(None, "--html-path", help="where (default OUT/report.html)"),
    screenshots: bool = typer.Option(True, "--screenshots/--no-screenshots",
                                     help="put every step's screenshot in the HTML report (small PNGs; leave them out for a much smaller file)"),
) -> None:
    """Counts per source, template and verdict; with --html, a report with plots, the funnel and a trajectory browser."""
    from synth.query import stats_tables

    con = _connect(out_dir)
    if html or html_path:
        from synth.report import write

        try:
            console.print(f"report: {write(out_dir, html_path, screenshots)}")
        except FileNotFoundError as e:
            fail(str(e))
    for title, (cols, rows) in stats_tables(con).items():
        table = Table(*cols, title=title)
        for r in rows:
            table.add_row(*(_cell(v) for v in r))
        out.print(table)
    _agreement(out_dir, labelled=con.sql("SELECT count(*) FROM trajectories WHERE source = 'human'").fetchall()[0][0])


def _agreement(out_dir: str, labelled: int) -> None:
    """Labelers' agreement per template on the tasks several of them did, and
    the pairs that disagree, from the output's annotation queue (where its
    trajectories keep what the minimality gate would drop); one line when the
    output has labelers' trajectories but its queue is not on this machine."""
    from annotation_ui import agreement as ag

    run = ag.for_output(out_dir)
    if not run.found:
        if labelled:
            out.print(f"labeler agreement: no annotation queue at {run.db} on this machine", highlight=False)
        return
    if not run.table:
        out.print(f"labeler agreement: no task in {run.db} was done by two labelers", highlight=False)
        return
    table = Table(*ag.COLUMNS, title=f"labeler agreement ({run.db})")
    for r in run.table:
        table.add_row(*ag.cells(r))
    out.print(table)
    for d in run.disagreements:
        out.print(f"disagreement: {ag.describe(d)}", highlight=False, soft_wrap=True)


@app.command()
def push(
    out_dir: str = typer.Argument(..., help="a pipeline's output folder or URI, e.g. out/web"),
    repo: str = typer.Option(..., "--repo", help="dataset repo id on the Hub, e.g. you/web-trajectories"),
    public: bool = typer.Option(False, "--public", help="create the repo public, or make an existing private one public (default: a new repo is private)"),
    token: Optional[str] = typer.Option(None, "--token", envvar="HF_TOKEN", help="Hub token (default: $HF_TOKEN or your login)", show_default=False),
    revision: Optional[str] = typer.Option(None, help="branch to push to (created from main if missing)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be uploaded and stop"),
) -> None:
    """Upload the dataset (shards, card, manifest) to the Hugging Face Hub, in one commit."""
    from synth.export.hub import explain, plan_push, push as push_to_hub

    try:
        plan = plan_push(_checked(out_dir))
    except (OSError, ValueError) as e:  # FileNotFoundError, and an object store's errors
        fail(str(e))
    console.print(f"{len(plan.files)} files, {plan.bytes / 2**20:.1f} MiB from {plan.folder} -> datasets/{repo}"
                  + (f"@{revision}" if revision else "")
                  + (" (copied to a temporary folder first)" if storage.is_remote(plan.folder) else ""))
    if dry_run:
        for f in plan.files:
            out.print(f, highlight=False)
        return
    if not sys.stderr.isatty():  # progress bars off a terminal are noise: push says a line per phase instead
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    try:
        result = push_to_hub(out_dir, repo, private=not public, token=token, revision=revision,
                             say=lambda line: console.print(line, highlight=False, markup=False))
    except Exception as e:  # noqa: BLE001 - network, auth: in full, never the token
        fail(f"push to {repo} failed: {explain(e, repo, token)}", code=1)
    out.print(f"pushed: {result.url} ({result.added} files, {len(result.deleted)} stale files deleted)",
              highlight=False)


@app.command()
def replay(
    out_dir: str = typer.Argument(DEFAULT_OUT, help="a synth output folder or URI (its data/trajectories shards)"),
    template: Optional[list[str]] = typer.Option(None, "--template", "-t", help="only these template ids (repeatable)"),
    limit: Optional[int] = typer.Option(None, help="replay only the first N accepted trajectories"),
    concurrency: int = typer.Option(3, "--concurrency", "-c", min=1, help="replays at once (one browser)"),
    plugin: Optional[list[str]] = PLUGIN_OPTION,
) -> None:
    """Replay the accepted trajectories of a published dataset from its shards
    alone (task_config, actions, targets, waits), each in a fresh browser
    context, and check each judge passes again. Exit 1 if any fails."""
    import asyncio

    from synth.quality.published import replay_published

    _plugins(plugin)
    columns = [TextColumn("[bold]replaying"), BarColumn(), MofNCompleteColumn(),
               TextColumn("failed [red]{task.fields[failed]}[/]"), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as bar:
        task_bar = bar.add_task("replays", total=limit, failed=0)
        failed = 0

        def advance(job, result) -> None:
            nonlocal failed
            failed += not result.passed
            bar.update(task_bar, advance=1, failed=failed)

        try:
            report = asyncio.run(replay_published(_checked(out_dir), concurrency=concurrency, templates=template,
                                                  limit=limit, on_result=advance))
        except (FileNotFoundError, ValueError) as e:
            fail(str(e))
    table = Table("template", "replayed", "passed", "relocated")
    for name, c in sorted(report.by_template.items()):
        table.add_row(name, str(c["replayed"]), str(c["passed"]), str(c["relocated"]))
    out.print(table)
    for tid, reason in list(report.failed.items())[:20]:
        out.print(f"[red]failed[/] {tid}: {escape(reason)}", highlight=False)
    out.print(f"{report.passed} of {report.replayed} accepted trajectories replayed from the shards"
              + (f"; {report.relocated} found a target by its selector" if report.relocated else ""))
    if report.failed:
        raise typer.Exit(1)


@tasks_app.command("list")
def tasks_list(
    templates: Path = typer.Argument(Path("templates/tasks"), help="template file or folder"),
    plugin: Optional[list[str]] = PLUGIN_OPTION,
) -> None:
    """Templates with their site, judge, solver and seed range."""
    from synth.tasks import load_templates

    _plugins(plugin)
    try:
        pairs = load_templates(templates)
    except ConfigError as e:
        fail(str(e))
    table = Table("template", "judge", "solver", "seeds", "max steps", "difficulty")
    for site, t in pairs:
        table.add_row(f"{site}/{t.id}", t.judge.type, t.solver or "-", f"{t.seeds.start}..{t.seeds.start + t.seeds.count - 1}",
                      str(t.max_steps), t.difficulty or "-")
    out.print(table)


@tasks_app.command("sample")
def tasks_sample(
    templates: Path = typer.Argument(..., help="template file or folder"),
    n: int = typer.Option(5, "-n", help="instances per template"),
    plugin: Optional[list[str]] = PLUGIN_OPTION,
) -> None:
    """A few instances of each template as JSON lines."""
    from synth.tasks import load_templates, instantiate

    _plugins(plugin)
    try:
        pairs = load_templates(templates)
        for site, t in pairs:
            for task in instantiate(site, t, seeds=min(n, t.seeds.count)):
                out.print_json(task.model_dump_json())
    except ConfigError as e:
        fail(str(e))


@tasks_app.command("validate")
def tasks_validate(
    templates: list[Path] = typer.Argument(..., help="template files or folders, e.g. templates/tasks/shop"),
    instances: int = typer.Option(5, "-n", "--instances", min=1, help="instances per prototype to run"),
    concurrency: int = typer.Option(2, "--concurrency", "-c", min=1, help="episodes at once (one browser)"),
    include: Optional[list[str]] = typer.Option(None, "--include", help="only these template ids (repeatable)"),
    min_distinct: int = typer.Option(50, "--min-distinct", help="distinct instances each prototype must yield"),
    screenshots: bool = typer.Option(False, "--screenshots", help="take screenshots (slower; judges do not need them)"),
    plugin: Optional[list[str]] = PLUGIN_OPTION,
) -> None:
    """Run each prototype's solver (its judge must pass) and negative controls
    (no-op, a wrong answer, another instance's end state: its judge must fail).
    Exit 1 on any failure."""
    import asyncio

    from synth.env import BrowserConfig
    from synth.validate import CONTROLS, count_episodes, validate

    _plugins(plugin)
    try:
        total = count_episodes(list(templates), instances, include)
    except ConfigError as e:
        fail(str(e))
    columns = [TextColumn("[bold]validating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as bar:
        task_bar = bar.add_task("episodes", total=total)
        try:
            reports = asyncio.run(
                validate(list(templates), instances=instances, concurrency=concurrency, include=include,
                         browser=BrowserConfig(screenshots=screenshots), min_distinct=min_distinct,
                         on_episode=lambda: bar.advance(task_bar))
            )
        except ConfigError as e:
            bar.stop()
            fail(str(e))
    table = Table(title="task prototypes: solver pass rate and false accepts of negative controls")
    table.add_column("prototype")
    table.add_column("difficulty")
    table.add_column("distinct", justify="right")
    table.add_column("runs", justify="right")
    table.add_column("solver pass", justify="right")
    table.add_column("avg steps", justify="right")
    for name in CONTROLS:
        table.add_column(f"{name}\nfalse accepts", justify="right")
    table.add_column("false accept\nrate", justify="right")
    table.add_column("result")
    for r in reports:
        cells = []
        for name in CONTROLS:
            c = r.controls[name]
            cells.append(f"{c.false_accepts}/{c.runs}" if c.runs else "-")
        steps = f"{r.solver_steps / r.solver_passes:.1f}" if r.solver_passes else "-"
        distinct = "-" if r.distinct is None else f"{r.distinct}/{r.seeds}"
        control_runs = sum(c.runs for c in r.controls.values())
        rate = f"{r.false_accepts / control_runs:.0%}" if control_runs else "-"
        table.add_row(
            r.template_id, r.difficulty or "-", distinct, str(r.instances),
            f"{r.solver_passes}/{r.instances} ({r.pass_rate:.0%})", steps, *cells, rate,
            "[green]ok[/]" if r.ok else "[red]FAIL[/]",
        )
    out.print(table)
    for r in reports:  # what a control could not test (not a failure), so a pass is read for what it covers
        for note in r.notes:
            out.print(f"[dim]{escape(r.template_id)}[/]: {escape(note)}", soft_wrap=True)
    failed = [r for r in reports if not r.ok]
    for r in failed:
        for problem in r.problems:
            out.print(f"[red]{escape(r.template_id)}[/]: {escape(problem)}", soft_wrap=True)
        for failure in r.solver_failures[:3]:
            out.print(f"[red]{escape(r.template_id)}[/] solver failed: {escape(failure)}", soft_wrap=True)
        for name, c in r.controls.items():
            for example in c.examples[:3]:
                out.print(f"[red]{escape(r.template_id)}[/] {name} was accepted: {escape(example)}", soft_wrap=True)
    runs = sum(r.instances for r in reports)
    passes = sum(r.solver_passes for r in reports)
    false_accepts = sum(r.false_accepts for r in reports)
    control_runs = sum(c.runs for r in reports for c in r.controls.values())
    out.print(
        f"{len(reports)} prototypes: solvers passed {passes}/{runs}, "
        f"false accepts {false_accepts}/{control_runs} control runs; "
        + (f"[red]{len(failed)} failed[/]" if failed else "[green]all ok[/]")
    )
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()


@sites_app.command("list")
def sites_list(plugin: Optional[list[str]] = PLUGIN_OPTION) -> None:
    """Every registered site, with where it comes from."""
    from synth.sites import SITES
    from synth.sites.app import AppSite

    _plugins(plugin)
    table = Table("site", "kind", "defined in")
    for name in SITES:
        cls = SITES[name]
        kind = "application (YAML)" if issubclass(cls, AppSite) else "Python class"
        where = str(getattr(cls, "here", "")) if issubclass(cls, AppSite) else cls.__module__
        table.add_row(name, kind, where)
    out.print(table)


@sites_app.command("snapshot")
def sites_snapshot(
    site: str = typer.Argument(..., help="a site name, e.g. shop, miniwob, trac"),
    target: str = typer.Argument(..., help="a path or URL on the site, a template id, or a MiniWoB++ task name"),
    seed: int = typer.Option(0, help="the seed of a template's or MiniWoB++ task's instance"),
    compare: bool = typer.Option(False, "--compare", help="also show Chromium's role and name where they differ"),
    templates: Optional[Path] = typer.Option(None, help="where to find the template id (default templates/tasks)"),
    plugin: Optional[list[str]] = PLUGIN_OPTION,
) -> None:
    """Print the snapshot a solver sees on a page: element ids, roles, names
    and boxes, indented as the page nests them."""
    from synth.probe import print_snapshot_sync

    _plugins(plugin)
    try:
        print_snapshot_sync(site, target, seed=seed, compare=compare, templates=templates)
    except (KeyError, ValueError, ConfigError) as e:
        fail(str(e))
