"""`synth export OUT --format aguvis|cogagent [--to DIR]`: the native files of
an export (synth/export/native.py), for a run that did not write them
(`export.native` in the pipeline writes them on every run)."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def export_native(
    out_dir: str = typer.Argument(..., help="a pipeline's output folder (with data/steps), e.g. out/web"),
    format: list[str] = typer.Option(..., "--format", "-f", help="aguvis or cogagent (repeatable)"),
    to: Optional[str] = typer.Option(
        None, "--to", help="folder to write (one format: the files go in it; several: <to>/<format>/); "
        "default <out_dir>/native/<format>/",
    ),
    image_root: Optional[str] = typer.Option(
        None, "--image-root", help="CogAgent: the folder the image paths name (default: where they are written), "
        "for a copy trained on elsewhere",
    ),
) -> None:
    """Write Aguvis's stage-1/stage-2 JSON or CogAgent's fine-tune JSONL, with the screenshots as files."""
    from synth.export.native import write_native

    try:
        stats = write_native(out_dir, format, to=to, image_root=image_root)
    except (OSError, ValueError) as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for path, rows in stats.rows.items():
        console.print(f"{path}: {rows} rows", highlight=False)
    console.print(f"{stats.images} image files", highlight=False)
    for fmt, reasons in stats.left_out.items():
        console.print(f"{fmt}: left out {sum(reasons.values())} steps: "
                      + ", ".join(f"{r} ({n})" for r, n in reasons.most_common()), highlight=False)
