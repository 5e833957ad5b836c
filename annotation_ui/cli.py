"""`synth annotate`: the labeler queue and its web page.

    synth annotate add-user alice --role labeler     # prints alice's token once
    synth annotate enqueue pipelines/web.yaml -t 'miniwob/click-*' -n 20
    synth annotate serve                             # http://127.0.0.1:8700
    synth annotate status
    synth annotate users | disable NAME | enable NAME | rotate NAME | revoke NAME
    synth annotate agreement [--disagreements]

Everything reads the pipeline (default `pipelines/web.yaml` when it exists):
its `sources.human` section (queue file, lease, guidelines), its output folder
(whose staging the review pages show) and its browser settings. `--db` and
`--out` override; the queue file defaults to `<output_dir>/annotations.db`
(`<cache_dir>/annotations.db` when output_dir is on an object store: SQLite
needs a local disk).
"""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from synth import storage
from synth.config import ConfigError, HumanSourceConfig, PipelineConfig, load_pipeline

annotate_app = typer.Typer(no_args_is_help=True, help="Human annotation: the labeler queue and its web page.")
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
DEFAULT_PIPELINE = Path("pipelines/web.yaml")

PIPELINE_OPT = typer.Option(None, "--pipeline", "-p", help="pipeline YAML (default pipelines/web.yaml if present)")
DB_OPT = typer.Option(None, "--db", help="queue file (default <output_dir>/annotations.db from the pipeline)")
OUT_OPT = typer.Option(None, "--out", "-o", help="the pipeline's output folder or URI, for reviewing its staging")


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@dataclass
class Resolved:
    pipeline: Path | None
    config: PipelineConfig | None
    human: HumanSourceConfig
    db: Path
    out_dir: str | None


def resolve(pipeline: Path | None, db: Path | None, out: str | None) -> Resolved:
    from annotation_ui.harvest import db_path

    if pipeline is None and DEFAULT_PIPELINE.exists():
        pipeline = DEFAULT_PIPELINE
    config = None
    if pipeline is not None:
        try:
            config = load_pipeline(pipeline)
        except ConfigError as e:
            fail(str(e))
    human = config.sources.human if config else HumanSourceConfig()
    out_dir = out if out is not None else (config.output_dir if config else None)
    if db is None:
        db = db_path(human, out_dir, config.cache_dir if config else None) if out_dir is not None else Path(human.db)
    return Resolved(pipeline, config, human, db, out_dir)


def _guidelines(r: Resolved) -> str:
    if r.human.guidelines_file:
        base = r.pipeline.parent if r.pipeline else Path(".")
        path = base / r.human.guidelines_file
        try:
            return path.read_text()
        except OSError as e:
            fail(f"sources.human.guidelines_file: cannot read {path}: {e.strerror}")
    return r.human.guidelines


def _site_options(r: Resolved) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for sel in r.config.tasks if r.config else []:
        for site, opts in sel.site_options.items():
            out.setdefault(site, {}).update(opts)
    for site, opts in r.human.site_options.items():
        out.setdefault(site, {}).update(opts)
    return out


@annotate_app.command()
def serve(
    pipeline: Optional[Path] = PIPELINE_OPT,
    db: Optional[Path] = DB_OPT,
    out: Optional[str] = OUT_OPT,
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8700, help="port to listen on"),
    lease_seconds: Optional[float] = typer.Option(None, help="override sources.human.lease_seconds"),
    login_attempts: int = typer.Option(10, help="failed login attempts per client address per minute"),
    login_attempts_per_user: int = typer.Option(
        10, help="failed login attempts per user (their token's key id) per minute, from any address; "
        "whoever fails this often on purpose locks that user out for a minute"),
    log_level: str = typer.Option("info", help="debug | info | warning"),
    forwarded_allow_ips: Optional[str] = typer.Option(
        None, help="behind a TLS proxy: the proxy's address(es), comma separated; their X-Forwarded-Proto and "
        "X-Forwarded-For are trusted (https origin checks, Secure cookies, per-client login limits)"),
    ssl_certfile: Optional[Path] = typer.Option(None, help="serve HTTPS directly with this certificate (PEM)"),
    ssl_keyfile: Optional[Path] = typer.Option(None, help="the certificate's private key (PEM)"),
) -> None:
    """Serve the labeler, review and admin pages (JSON logs on stderr)."""
    import uvicorn

    from annotation_ui import logs
    from annotation_ui.server import Settings, create_app
    from synth.env import BrowserConfig

    r = resolve(pipeline, db, out)
    if lease_seconds is not None and lease_seconds <= 0:
        fail("--lease-seconds must be positive")
    settings = Settings(
        db=r.db,
        out_dir=r.out_dir,
        lease_seconds=lease_seconds or r.human.lease_seconds,
        max_skips=r.human.max_skips,
        guidelines=_guidelines(r),
        browser=r.config.browser if r.config else BrowserConfig(),
        site_options=_site_options(r),
        login_attempts=login_attempts,
        login_attempts_per_user=login_attempts_per_user,
    )
    logs.setup(log_level)
    from annotation_ui.store import Store

    store = Store(r.db)
    counts, users = store.counts(), len(store.users())
    store.close()
    console.print(f"annotation server on [bold]http://{host}:{port}[/]  queue {escape(str(r.db))} "
                  f"({counts['queued']} queued, {counts['done']} done)  reviewing {escape(str(r.out_dir or '-'))}")
    if not users:
        console.print("[yellow]no users yet[/]: synth annotate add-user NAME --role labeler|reviewer|admin")
    if not counts["queued"] and not counts["leased"]:
        console.print("[yellow]the queue is empty[/]: enable sources.human in the pipeline and `synth run` it, "
                      "or `synth annotate enqueue PIPELINE -t 'miniwob/*' -n 20`")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        fail("--ssl-certfile and --ssl-keyfile go together")
    tls = {"ssl_certfile": str(ssl_certfile), "ssl_keyfile": str(ssl_keyfile)} if ssl_certfile else {}
    proxy = {"proxy_headers": True, "forwarded_allow_ips": forwarded_allow_ips} if forwarded_allow_ips else {
        "proxy_headers": False}
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=True,
                log_level=log_level.lower(), **proxy, **tls)


@annotate_app.command("add-user")
def add_user(
    name: str = typer.Argument(..., help="user name (letters, digits, . _ - @)"),
    role: str = typer.Option(..., "--role", help="labeler | reviewer | admin"),
    pipeline: Optional[Path] = PIPELINE_OPT,
    db: Optional[Path] = DB_OPT,
    out: Optional[str] = OUT_OPT,
) -> None:
    """Create a user and print their login token (shown once; only its hash is stored)."""
    from annotation_ui.store import Store

    r = resolve(pipeline, db, out)
    try:
        token = Store(r.db).add_user(name, role)
    except ValueError as e:
        fail(str(e))
    console.print(f"user [bold]{escape(name)}[/] ({role}) added to {escape(str(r.db))}. "
                  "Their token, shown only this once:")
    typer.echo(token)


def _change_user(r: Resolved, change: Any, name: str) -> Any:
    from annotation_ui.store import Store

    if not r.db.exists():
        fail(f"no queue at {r.db}")
    try:
        return change(Store(r.db), name)
    except ValueError as e:
        fail(str(e))


@annotate_app.command()
def users(pipeline: Optional[Path] = PIPELINE_OPT, db: Optional[Path] = DB_OPT) -> None:
    """The users: name, role, disabled or not."""
    from annotation_ui.store import Store

    r = resolve(pipeline, db, None)
    if not r.db.exists():
        fail(f"no queue at {r.db}")
    table = Table("name", "role", "state")
    for u in Store(r.db).users():
        table.add_row(u["name"], u["role"], "disabled" if u["disabled"] else "active")
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@annotate_app.command()
def disable(name: str, pipeline: Optional[Path] = PIPELINE_OPT, db: Optional[Path] = DB_OPT) -> None:
    """Lock a user out now: sessions end, the token stops working, a held task goes back to the queue."""
    _change_user(resolve(pipeline, db, None), lambda s, n: s.set_disabled(n, True), name)
    console.print(f"user [bold]{escape(name)}[/] disabled")


@annotate_app.command()
def enable(name: str, pipeline: Optional[Path] = PIPELINE_OPT, db: Optional[Path] = DB_OPT) -> None:
    """Let a disabled user in again with their existing token."""
    _change_user(resolve(pipeline, db, None), lambda s, n: s.set_disabled(n, False), name)
    console.print(f"user [bold]{escape(name)}[/] enabled")


@annotate_app.command()
def rotate(name: str, pipeline: Optional[Path] = PIPELINE_OPT, db: Optional[Path] = DB_OPT) -> None:
    """Issue a new token (printed once); the old one and its sessions stop working."""
    token = _change_user(resolve(pipeline, db, None), lambda s, n: s.rotate_token(n), name)
    console.print(f"user [bold]{escape(name)}[/]: old token revoked. The new token, shown only this once:")
    typer.echo(token)


@annotate_app.command()
def revoke(name: str, pipeline: Optional[Path] = PIPELINE_OPT, db: Optional[Path] = DB_OPT) -> None:
    """Revoke a user's token (a leaked one): sessions end; `rotate` issues a new one."""
    _change_user(resolve(pipeline, db, None), lambda s, n: s.revoke_token(n), name)
    console.print(f"user [bold]{escape(name)}[/]: token revoked; `synth annotate rotate {escape(name)}` issues a new one")


@annotate_app.command()
def enqueue(
    pipeline: Optional[Path] = typer.Argument(None, help="pipeline YAML (default pipelines/web.yaml)"),
    template: list[str] = typer.Option([], "--template", "-t", help="template ids or patterns ('miniwob/click-*')"),
    limit: Optional[int] = typer.Option(None, "-n", "--limit", help="at most this many tasks"),
    slots: int = typer.Option(1, help="labelers per task (overlap)"),
    db: Optional[Path] = DB_OPT,
) -> None:
    """Put tasks of a pipeline in the queue now (without a `synth run`).
    Without --template, the pipeline's `sources.human.select` decides."""
    from annotation_ui.harvest import select
    from annotation_ui.store import Store
    from synth.pipeline import plan

    r = resolve(pipeline, db, None)
    if r.config is None:
        fail("no pipeline: pass one, e.g. synth annotate enqueue pipelines/web.yaml")
    try:
        tasks = plan(r.config, r.pipeline.parent.resolve())
    except ConfigError as e:
        fail(str(e))
    if template:
        chosen = [(t, "manual") for t in tasks if any(fnmatch.fnmatchcase(t.template_id, p) for p in template)]
    else:
        chosen = select(r.human, tasks, storage.child(r.out_dir, "staging"))
    chosen = chosen[:limit] if limit is not None else chosen
    added = Store(r.db).enqueue_many([(t, slots, reason, 0) for t, reason in chosen])
    console.print(f"{added} new queue items for {len(chosen)} tasks in {escape(str(r.db))}")


@annotate_app.command()
def agreement(pipeline: Optional[Path] = PIPELINE_OPT, db: Optional[Path] = DB_OPT,
              disagreements: bool = typer.Option(False, "--disagreements", help="list the pairs that disagree")) -> None:
    """Agreement per template between labelers of the same task (overlap)."""
    from annotation_ui import agreement as ag

    r = resolve(pipeline, db, None)
    if not r.db.exists():
        fail(f"no queue at {r.db}")
    out = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(*ag.COLUMNS)
    for row in ag.agreement_table(r.db):
        table.add_row(*ag.cells(row))
    out.print(table)
    if disagreements:
        for p in ag.disagreements(r.db):
            out.print(ag.describe(p), highlight=False, soft_wrap=True)


@annotate_app.command()
def status(pipeline: Optional[Path] = PIPELINE_OPT, db: Optional[Path] = DB_OPT) -> None:
    """The queue by state and the people by what they did."""
    from annotation_ui.store import Store

    r = resolve(pipeline, db, None)
    if not r.db.exists():
        fail(f"no queue at {r.db}")
    store = Store(r.db)
    out = Console(width=None if sys.stdout.isatty() else 160)
    out.print("queue: " + ", ".join(f"{k} {v}" for k, v in store.counts().items()))
    table = Table("name", "role", "holding", "submitted", "judge passed", "skipped", "reviews given")
    for p in store.per_labeler():
        table.add_row(p["name"], p["role"], str(p["holding"]), str(p["submitted"]), str(p["passed"]),
                      str(p["skipped"]), str(p["reviews_given"]))
    out.print(table)
