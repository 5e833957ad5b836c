"""`synth judges eval`: the accuracy table of every judge of a pipeline."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

judges_app = typer.Typer(no_args_is_help=True, help="How far each judge can be trusted, measured.")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def accuracy_table(title: str, rows: dict, first: str) -> Table:
    table = Table(title=title)
    for col in (first, "labelled", "negative", "TP", "FP", "TN", "FN", "precision", "recall", "kappa",
                "FP after\ngates"):
        table.add_column(col, justify="left" if col == first else "right")
    for name, a in rows.items():
        fp = f"[red]{a.fp}[/]" if a.fp else "0"
        table.add_row(escape(name), str(a.n), str(a.negatives), str(a.tp), fp, str(a.tn), str(a.fn),
                      _fmt(a.precision), _fmt(a.recall), _fmt(a.kappa), str(a.fp_after_gates))
    return table


def _pairs(pipeline: Path, include: list[str] | None):
    """(site, template) of every task selection of the pipeline (plugins
    loaded, as `synth run` plans them) and the pipeline's site options."""
    from synth.config import ConfigError
    from synth.pipeline import pipeline_site_options, prepare

    plan = prepare(pipeline)
    pairs = [(site, tpl) for site, tpl, _ in plan.tasks.selections
             if not include or tpl.id in include or f"{site}/{tpl.id}" in include]
    known = {tpl.id for _, tpl, _ in plan.tasks.selections} | {f"{s}/{t.id}" for s, t, _ in plan.tasks.selections}
    unknown = [i for i in include or [] if i not in known]
    if unknown:
        raise ConfigError(f"--include: no template {unknown} in {pipeline}")
    return plan.config, pairs, pipeline_site_options(plan.config)


def _review_labels(reviews: Path | None, config, measured: set[str]) -> tuple[list, str]:
    """Reviewers' verdicts in an annotation queue as labels (`--reviews`,
    default the pipeline's own queue when there is one; see
    `annotation_ui.judge_labels`), for the templates measured here, and the
    line that says what they added. An override of the judge (a reviewer
    accepting what it failed) is one of its false rejects."""
    from annotation_ui.harvest import db_path
    from annotation_ui.judge_labels import review_labels

    db = reviews if reviews is not None else db_path(config.sources.human, config.output_dir, config.cache_dir)
    if not db.is_file():
        if reviews is not None:
            raise FileNotFoundError(f"--reviews: no annotation queue at {db}")
        return [], ""
    found = review_labels(db, config.output_dir)
    items = [i for i in found if i.template_id in measured]
    overrides = sum(not i.judge_passed and i.correct for i in items)
    said = (f"{len(items)} labels from reviews in {db}, {overrides} of them overrides of the judge "
            "(counted as its false rejects)")
    if len(found) > len(items):
        said += f"; {len(found) - len(items)} on templates not measured here left out"
    return items, said


@judges_app.command("eval")
def judges_eval(
    pipeline: Path = typer.Argument(..., help="pipeline YAML whose templates to measure, e.g. pipelines/web.yaml"),
    instances: int = typer.Option(8, "-n", "--instances", min=1, help="instances per template (each gives a "
                                  "solver run, its replay and up to 6 perturbations)"),
    include: Optional[list[str]] = typer.Option(None, "--include", help="only these template ids (repeatable)"),
    concurrency: int = typer.Option(2, "--concurrency", "-c", min=1, help="episodes at once (one browser)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the labelled set and figures here"),
    min_precision: float = typer.Option(1.0, help="target precision per template"),
    min_recall: float = typer.Option(0.99, help="target recall per template"),
    min_labelled: int = typer.Option(30, help="labelled trajectories each template should have"),
    disagreements: int = typer.Option(3, help="disagreements printed per template"),
    reviews: Optional[Path] = typer.Option(None, "--reviews", help="an annotation queue (SQLite) whose reviewers' "
                                           "verdicts count as labels too, an override of the judge as its false "
                                           "reject (default: the pipeline's human queue, when it exists)"),
) -> None:
    """Label solver runs and perturbed replays with an oracle that shares no
    code with the judges (the site's own verdict or its whole end state
    against the reference solver's), and print each judge's precision,
    recall and kappa per template and per judge type, reviewers' verdicts
    on the pipeline's human queue counted as labels too. Exit 1 when a
    template misses the targets."""
    from synth.config import ConfigError
    from synth.env import BrowserConfig
    from synth.judge_eval import count_episodes, evaluate

    console = Console(stderr=True)
    out = Console(width=None if sys.stdout.isatty() else 200)  # piped: the table whole, not cut to 80 columns
    try:
        config, pairs, options = _pairs(pipeline, include)
        reviewed, said = _review_labels(reviews, config, {f"{site}/{tpl.id}" for site, tpl in pairs})
    except (ConfigError, OSError) as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}")
        raise typer.Exit(2)
    columns = [TextColumn("[bold]judging"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as bar:
        task_bar = bar.add_task("episodes", total=count_episodes(pairs, instances))
        report = asyncio.run(evaluate(
            pairs, instances=instances, concurrency=concurrency,
            browser=config.browser.model_copy(update={"screenshots": False}), site_options=options,
            on_episode=lambda: bar.advance(task_bar),
        ))
    report.items.extend(reviewed)
    if said:
        out.print(said, highlight=False, soft_wrap=True)
    labels = "the oracle and reviews" if reviewed else "the oracle"
    out.print(accuracy_table(f"judge accuracy per template (labels: {labels})", report.by_template(), "template"))
    out.print(accuracy_table("per judge type", report.by_judge(), "judge"))
    for tid, acc in report.by_template().items():
        for item in acc.disagreements[:disagreements]:
            verdict = "accepted" if item.judge_passed else "rejected"
            out.print(f"[yellow]{escape(tid)}[/] seed {item.seed} {escape(item.kind)}: judge {verdict} "
                      f"({escape(item.judge_reason[:120])}), oracle: {escape(item.oracle[:160])}", soft_wrap=True)
    for tid, why in report.problems.items():
        out.print(f"[red]{escape(tid)}[/]: {escape(why)}", soft_wrap=True)
    below = report.below(min_precision, min_recall, min_labelled)
    for tid, why in below.items():
        out.print(f"[red]below target[/] {escape(tid)}: {escape(why)}", soft_wrap=True)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_json(), indent=1, default=str))
        out.print(f"written: {json_out}")
    n = len(report.items)
    out.print(f"{len(report.by_template())} templates, {n} labelled trajectories, "
              f"{sum(a.fp for a in report.by_template().values())} false accepts, "
              f"{sum(a.fn for a in report.by_template().values())} false rejects")
    if below or report.problems:
        raise typer.Exit(1)
