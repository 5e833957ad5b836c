"""The whole pipeline against the machine's ceiling: recorded steps/s.

    .venv/bin/python bench/pipeline.py [--episodes 25] [--tasks click-button,...] [--check]
    .venv/bin/python bench/pipeline.py --scaling [--episodes 12]
    .venv/bin/python bench/pipeline.py --end-to-end [--episodes 12] [--check]
    .venv/bin/python bench/pipeline.py --memory [--memory-sizes 1000,10000]

Throughput. The same MiniWoB++ tasks (task, seed) run two ways, taking turns:

* the pipeline: `synth.pipeline.prepare` + `execute` on a pipeline file
  written to a temporary folder (output there too), with the browser, sources
  and ray sections of `pipelines/web.yaml` (its actors x contexts_per_actor
  layout and batch size), only the tasks changed: the `--tasks` templates of
  templates/tasks/miniwob.yaml, `--episodes` seeds each. Everything runs: Ray,
  the source actors, the solvers through BrowserEnv (a screenshot and snapshot
  per step), the judge, staging, the quality gates (web.yaml's: dedup, replay
  verification, ...), the export to shards, manifest and card.
* the ceiling, a bare Playwright loop: one Chromium with as many pages as the
  pipeline has contexts in all (actors x contexts_per_actor), each page taking
  the next episode from a queue: the site's own setup (page load, seed,
  `core.startEpisodeReal()`) and a screenshot, then the exact actions the
  solver took (recorded beforehand: pixels, text, keys) with one screenshot of
  the task area after each, and MiniWoB's reward read at the end. Nothing else.

The bare loop runs before and after the pipeline and the ceiling is the mean of
the two, so load drift on a shared machine hits both sides.

Both count steps/s over the same work. For the pipeline the verdict uses its
steady state: from the first finished batch (Ray up, actors' browsers launched)
to the last, measured with `execute`'s progress callback. The end-to-end figure
(Ray start, actor start-up, quality gates and export included) is printed too,
with the time of each stage. The bare loop is timed after one warm-up episode
per page. Verdict: pipeline / ceiling steps/s, target >= 90%.

Scaling (`--scaling`): the recording steps/s of the same pipeline (replay
off) at 1 and 2 source actors x 1, 2, 4 and 8 contexts per actor, each next
to the bare loop with as many pages, and relative to 1 actor x 1 context.

End to end (`--end-to-end`): the same pipeline twice, recording only (replay
off) and with replay verification of every accepted trajectory as web.yaml
configures it (beside recording), end-to-end steps/s (Ray start to manifest)
each, taking turns twice. Target: with replay >= 0.7 x recording only.

Memory (`--memory`): the driver's peak resident memory (VmHWM) as the task
count grows, each size in a fresh driver process. A real 10k-task run takes
about 40 minutes here, so this is a proxy: the real `prepare` and `execute`
(planning, Ray, the bounded feeding loop, staging, export) with the source
actors replaced by stubs that take each batch, write minimal trajectories (no
steps, no screenshots) to staging and return the same summaries the real actors
return, and replay verification off (it would open a browser per stub). The
driver does the same feeding, staging bookkeeping and export per task as in a
real run; what it does not see is the steps' screenshots, which only the
actors and the export touch (the export writes them in bounded row groups), nor
the replay actors' results. `--check` also fails if the peak grows more than
`--memory-target` times from the smallest to the largest size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import DEFAULT_TASKS, ROOT, Op, load, machine_note, parse_tasks, peak_rss_mb, record_solver_ops, rss_mb, solver_tasks

import yaml  # noqa: E402

TEMPLATES = ROOT / "templates" / "tasks" / "miniwob.yaml"
WEB_YAML = ROOT / "pipelines" / "web.yaml"


def pipeline_yaml(
    folder: Path, names: list[str] | None, seeds: int, name: str = "bench", replay: bool = True, layout: tuple[int, int] | None = None
) -> Path:
    """web.yaml with its tasks and output replaced (and replay off if asked, and
    the solver source's (actors, contexts_per_actor) if given); written into `folder`."""
    from synth.config import PipelineConfig

    spec = yaml.safe_load(WEB_YAML.read_text())
    if layout is not None:
        spec["sources"]["solver"].update(actors=layout[0], contexts_per_actor=layout[1])
    if not replay and "quality" in PipelineConfig.model_fields:
        spec.setdefault("quality", {}).setdefault("replay", {})["enabled"] = False
    spec["name"] = name
    spec["output_dir"] = str(folder / "out")
    spec["tasks"] = [{"templates": str(TEMPLATES), "seeds_per_template": seeds}]
    if names is not None:
        spec["tasks"][0]["include"] = names
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ---------------------------------------------------------------- the ceiling


@dataclass
class Bare:
    episodes: int = 0
    ok: int = 0
    steps: int = 0
    wall: float = 0.0

    @property
    def sps(self) -> float:
        return self.steps / self.wall


async def run_bare(tasks: list[Any], recorded: dict[str, tuple[str, list[Op]]], pages: int) -> Bare:
    """One Chromium, `pages` pages, episodes from a shared queue; per step the
    recorded action and one screenshot of the task area."""
    from playwright.async_api import async_playwright

    from synth.config import load_pipeline
    from synth.schema import Box
    from synth.sites import get_site
    from synth.sites.miniwob import reward_state

    config = load_pipeline(WEB_YAML).browser
    site = get_site("miniwob")
    await site.start()
    out = Bare()

    async def episode(page: Any, task: Any, timed: bool) -> None:
        setup = await site.setup(page, task)
        clip = (setup.area or Box(x=0, y=0, **site.viewport)).model_dump()
        await page.screenshot(clip=clip, type="png")
        mouse, keyboard = page.mouse, page.keyboard
        for op in recorded[task.task_id][1]:
            if op[0] == "click":
                await mouse.click(op[1], op[2])
            elif op[0] == "type":
                await keyboard.type(op[1])
            else:
                await keyboard.press(op[1])
            await page.screenshot(clip=clip, type="png")
        state = await reward_state(page)
        if timed:
            out.episodes += 1
            out.steps += len(recorded[task.task_id][1])
            out.ok += state["raw_reward"] >= 1.0

    from synth.env import launch_browser

    async with async_playwright() as p:
        browser = await launch_browser(p, config)
        try:
            slots = []
            for _ in range(min(pages, len(tasks))):
                context = await browser.new_context(viewport=site.viewport)
                context.set_default_timeout(config.action_timeout_ms)
                slots.append(await context.new_page())
            await asyncio.gather(*(episode(page, task, False) for page, task in zip(slots, tasks)))  # warm-up
            queue: asyncio.Queue = asyncio.Queue()
            for t in tasks:
                queue.put_nowait(t)

            async def worker(page: Any) -> None:
                while not queue.empty():
                    await episode(page, queue.get_nowait(), True)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(page) for page in slots))
            out.wall = time.perf_counter() - t0
        finally:
            await browser.close()
    return out


# ---------------------------------------------------------------- the pipeline


@dataclass
class PipelineRun:
    tasks: int = 0
    judged_ok: int = 0
    accepted: int = 0
    steps: int = 0
    wall: float = 0.0  # execute() end to end
    steady_steps: int = 0
    steady_wall: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage of execute()
    marks: list[tuple[float, int, int, str]] = field(default_factory=list)  # (time, done, steps, stage) per report
    reject_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def sps(self) -> float:
        return self.steady_steps / self.steady_wall if self.steady_wall else 0.0


def run_pipeline(config_path: Path) -> PipelineRun:
    from synth.pipeline import execute, prepare

    plan = prepare(config_path)
    out = PipelineRun(tasks=len(plan.tasks))

    def progress(p: Any) -> None:
        out.marks.append((time.perf_counter(), p.done, p.steps, getattr(p, "stage", "record")))

    t0 = time.perf_counter()
    result = execute(plan, on_progress=progress)
    end = time.perf_counter()
    out.wall = end - t0
    if result.interrupted:
        raise KeyboardInterrupt
    # Passed the judge (reward 1), like the bare loop's ok; and accepted after
    # the quality gates (the manifest).
    out.judged_ok = result.progress.accepted
    out.accepted = result.manifest.get("accepted", result.progress.accepted)
    out.reject_reasons = result.manifest.get("reject_reasons", {})
    out.steps = result.progress.steps
    # Recording: one report per finished batch. Its steady state runs from the
    # first finished batch (Ray up, browsers launched) to the last.
    batches = [m for m in out.marks if m[3] == "record" and m[1] > 0]
    if len(batches) >= 2:
        (ta, _, sa, _), (tb, _, sb, _) = batches[0], batches[-1]
        out.steady_steps, out.steady_wall = sb - sa, tb - ta
    # Stages: when each was first reported (record: from the start of execute).
    starts: dict[str, float] = {"start-up": t0}
    if batches:
        starts["record"] = batches[0][0]
    for t, _, _, stage in out.marks:
        if stage != "record":
            starts.setdefault(stage, t)
    names = sorted(starts, key=starts.get)
    for a, b in zip(names, names[1:] + ["end"]):
        out.stages[a] = (starts.get(b, end)) - starts[a]
    return out


# ---------------------------------------------------------------- scaling


def run_scaling(names: list[str], episodes: int, actors: list[int], contexts: list[int]) -> int:
    """Recording steps/s of the pipeline for each (actors, contexts per actor),
    next to the bare loop with as many pages in all (replay off: recording only)."""
    tasks = solver_tasks(names, range(episodes))
    load_at_start = load()
    recorded = asyncio.run(record_solver_ops(tasks))
    rows = []
    for a in actors:
        for c in contexts:
            print(f"{a} actor(s) x {c} context(s): bare loop, then pipeline ...", flush=True)
            bare = asyncio.run(run_bare(tasks, recorded, a * c))
            with tempfile.TemporaryDirectory(prefix="synth-bench-scaling-") as tmp:
                run = run_pipeline(pipeline_yaml(Path(tmp), names, episodes, replay=False, layout=(a, c)))
            rows.append((a, c, run, bare))
    if any(run.sps == 0 for _, _, run, _ in rows):
        raise SystemExit("a layout finished in fewer than 2 batches, so it has no steady state: raise --episodes")
    base = rows[0][2].sps
    print()
    print(f"machine: {machine_note(load_at_start)}; {len(tasks)} episodes of {', '.join(names)}, replay off")
    head = f"{'actors':>6}{'contexts/actor':>16}{'pipeline steps/s':>18}{'vs 1x1':>8}{'bare loop steps/s':>19}{'pipeline / bare':>17}"
    print(head)
    print("-" * len(head))
    for a, c, run, bare in rows:
        print(f"{a:>6}{c:>16}{run.sps:>18.2f}{run.sps / base:>7.2f}x{bare.sps:>19.2f}{run.sps / bare.sps:>17.0%}")
    print("(pipeline: recording steady state, first to last finished batch; bare loop: 1 browser, actors x contexts pages)")
    return 0


# ---------------------------------------------------------------- memory


def memory_child(n: int, folder: Path) -> dict[str, Any]:
    """One driver process: plan `n` tasks, feed them to stub actors, export."""
    import ray

    import synth.pipeline as sp
    from synth import staging
    from synth.schema import Task, Trajectory, Verdict, trajectory_id

    @ray.remote
    class StubActor:
        """The real SourceActor's interface, no browser: each task becomes a
        minimal accepted trajectory in staging."""

        def __init__(self, kind: str, options: dict, staging_dir: str, name: str, contexts: int) -> None:
            self.staging_dir, self.name = staging_dir, name

        def run_batch(self, tasks: list[dict], seq: int) -> list[dict]:
            trajectories = []
            for t in tasks:
                task = Task.model_validate(t)
                trajectories.append(
                    Trajectory(
                        trajectory_id=trajectory_id(task.task_id, "solver", task.solver or "", 0),
                        task_id=task.task_id, template_id=task.template_id, site=task.site, seed=task.seed,
                        source="solver", source_detail=task.solver or "", instruction="stub",
                        verdict=Verdict(passed=True, score=1.0), status="accepted",
                    )
                )
            staging.write_batch(self.staging_dir, trajectories, f"{self.name}-{seq:06d}")
            return [{"task_id": t.task_id, "status": t.status, "steps": 0} for t in trajectories]

        def shutdown(self) -> None:
            pass

    # The driver looks SourceActor up in synth.pipeline when it starts the pool.
    if not hasattr(sp, "SourceActor"):
        raise SystemExit("synth.pipeline has no SourceActor to stand in for: update bench/pipeline.py --memory")
    sp.SourceActor = StubActor
    start = rss_mb()
    from synth.tasks import tasks_from

    seeds = math.ceil(n / len(tasks_from(TEMPLATES, None, 1)))
    plan = sp.prepare(pipeline_yaml(folder, None, seeds, name=f"mem{n}", replay=False), limit=n)
    planned = rss_mb()
    # The peak so far (VmHWM) as each stage of execute() ends: record, quality, export.
    through: dict[str, float] = {}
    stage = ["record"]

    def progress(p: Any) -> None:
        now = getattr(p, "stage", "record")
        if now != stage[0]:
            through[stage[0]] = peak_rss_mb()
            stage[0] = now

    t0 = time.perf_counter()
    result = sp.execute(plan, on_progress=progress)
    through[stage[0]] = peak_rss_mb()
    return {
        "tasks": len(plan.tasks),
        "done": result.progress.done,
        "start_mb": start,
        "planned_mb": planned,
        "through": through,
        "peak_mb": peak_rss_mb(),
        "seconds": time.perf_counter() - t0,
    }


def run_memory(sizes: list[int], target: float, check: bool) -> int:
    rows, load_at_start = [], load()
    for n in sizes:
        print(f"memory: driver with {n} tasks ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="synth-bench-mem-") as tmp:
            done = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(n), "--memory-dir", tmp],
                capture_output=True, text=True,
            )
        lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            print(f"the {n}-task driver failed (exit {done.returncode}):\n{tail}", file=sys.stderr)
            return 2
        rows.append(json.loads(lines[-1][len("RESULT "):]))
    print()
    print(f"machine: {machine_note(load_at_start)}")
    stages = list(dict.fromkeys(k for r in rows for k in r["through"]))
    head = f"{'tasks':>7}{'fed':>7}{'imports MB':>12}{'planned MB':>12}" + "".join(
        f"{f'peak to {k} end MB':>24}" for k in stages
    ) + f"{'run s':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['tasks']:>7}{r['done']:>7}{r['start_mb']:>12.0f}{r['planned_mb']:>12.0f}"
            + "".join(f"{r['through'].get(k, float('nan')):>24.0f}" for k in stages)
            + f"{r['seconds']:>8.1f}"
        )
    small, large = rows[0], rows[-1]
    growth = large["peak_mb"] / small["peak_mb"]
    per_1k = (large["peak_mb"] - small["peak_mb"]) / max(1, large["tasks"] - small["tasks"]) * 1000
    print()
    print("(stub actors: no browser; the driver's work per task is the real one, see the module docstring)")
    print(
        f"driver peak memory {large['tasks']} / {small['tasks']} tasks = {growth:.2f}x "
        f"(+{per_1k:.1f} MB per 1,000 tasks; target <= {target:g}x)"
    )
    if check and growth > target:
        print(f"FAIL: the driver's peak memory grows {growth:.2f}x (target {target:g}x)", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- main


def run_end_to_end(names: list[str], episodes: int, target: float, check: bool) -> int:
    """pipelines/web.yaml end to end on the same episodes, twice in this
    process, taking turns: recording only (replay off), then with replay
    verification of every accepted trajectory (web.yaml's quality section:
    replays beside recording). Verdict: end-to-end steps/s with replay /
    without, target >= `target`."""
    started = load()
    runs: dict[str, list[PipelineRun]] = {"recording only": [], "with replay": []}
    for _ in range(2):
        for label, replay in (("recording only", False), ("with replay", True)):
            with tempfile.TemporaryDirectory(prefix="synth-bench-e2e-") as tmp:
                print(f"{label} ...", flush=True)
                runs[label].append(run_pipeline(pipeline_yaml(Path(tmp), names, episodes, replay=replay)))
    web = yaml.safe_load(WEB_YAML.read_text())
    print(f"\nend to end, pipelines/web.yaml layout (solver {web['sources']['solver']}, replay "
          f"{web['quality']['replay']}), {len(names)} MiniWoB++ tasks x {episodes} seeds; {machine_note(started)}")
    head = f"{'run':<18}{'episodes':>9}{'accepted':>9}{'steps':>7}{'seconds':>9}{'steps/s':>9}   stages"
    print(head)
    print("-" * len(head))
    rate = {}
    for label, rs in runs.items():
        for r in rs:
            stages = ", ".join(f"{k} {v:.1f}" for k, v in r.stages.items())
            print(f"{label:<18}{r.tasks:>9}{r.accepted:>9}{r.steps:>7}{r.wall:>9.1f}{r.steps / r.wall:>9.2f}   {stages}")
        rate[label] = statistics.fmean(r.steps / r.wall for r in rs)
    ratio = rate["with replay"] / rate["recording only"]
    print(f"end-to-end steps/s with replay / recording only = {ratio:.2f} (target >= {target:.2f}: "
          f"{'met' if ratio >= target else 'NOT met'})")
    return 1 if check and ratio < target else 0


def main(args: argparse.Namespace) -> int:
    if args.end_to_end:
        return run_end_to_end(parse_tasks(args.tasks), args.episodes, args.e2e_target, args.check)
    if args.memory_child:
        print("RESULT " + json.dumps(memory_child(args.memory_child, Path(args.memory_dir))), flush=True)
        return 0
    if args.memory:
        return run_memory(sorted(args.memory_sizes), args.memory_target, args.check)
    if args.scaling:
        return run_scaling(parse_tasks(args.tasks), args.episodes, [1, 2], [1, 2, 4, 8])

    from synth.config import load_pipeline

    names = parse_tasks(args.tasks)
    tasks = solver_tasks(names, range(args.episodes))
    web = load_pipeline(WEB_YAML)
    layout = web.sources.solver
    pages = layout.actors * layout.contexts_per_actor
    started, load_at_start = time.perf_counter(), load()
    recorded = asyncio.run(record_solver_ops(tasks))
    print(
        f"recorded {len(tasks)} episodes ({sum(len(o) for _, o in recorded.values())} steps) with synth's solvers: "
        f"{', '.join(names)}, seeds 0..{args.episodes - 1}",
        flush=True,
    )
    print("bare loop (1/2) ...", flush=True)
    bare = [asyncio.run(run_bare(tasks, recorded, pages))]
    with tempfile.TemporaryDirectory(prefix="synth-bench-pipeline-") as tmp:
        print(f"pipeline ({layout.actors} actors x {layout.contexts_per_actor} contexts, batch {web.ray.batch_size}) ...", flush=True)
        run = run_pipeline(pipeline_yaml(Path(tmp), names, args.episodes))
        shards = sorted(p.relative_to(Path(tmp) / "out").as_posix() for p in (Path(tmp) / "out" / "data").rglob("*.parquet"))
    print("bare loop (2/2) ...", flush=True)
    bare.append(asyncio.run(run_bare(tasks, recorded, pages)))
    elapsed = time.perf_counter() - started
    ceiling = statistics.fmean(b.sps for b in bare)

    print()
    print(f"machine: {machine_note(load_at_start)}")
    head = f"{'runner':<34}{'episodes':>9}{'ok':>7}{'steps':>7}{'seconds':>9}{'steps/s':>9}"
    print(head)
    print("-" * len(head))
    for i, b in enumerate(bare, 1):
        print(f"{f'bare loop, 1 browser x {pages} pages ({i})':<34}{b.episodes:>9}{b.ok:>7}{b.steps:>7}{b.wall:>9.1f}{b.sps:>9.2f}")
    print(f"{'pipeline, recording (steady)':<34}{'':>9}{'':>7}{run.steady_steps:>7}{run.steady_wall:>9.1f}{run.sps:>9.2f}")
    print(f"{'pipeline, end to end':<34}{run.tasks:>9}{run.judged_ok:>7}{run.steps:>7}{run.wall:>9.1f}{run.steps / run.wall:>9.2f}")
    print()
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in run.stages.items())
    print(
        f"pipeline: {layout.actors} actors x {layout.contexts_per_actor} contexts, batch {web.ray.batch_size}, as in "
        f"pipelines/web.yaml, quality gates as configured there; its stages: {stages}"
    )
    print(
        "  (start-up: Ray and the actors' browsers up to the first finished batch; record: from there to the last "
        "batch, the steady state the verdict uses; ok: episodes that reached reward 1)"
    )
    print(f"  wrote {len(shards)} shard file(s); {elapsed:.0f} s in all")
    print(f"  after the quality gates {run.accepted} of {run.tasks} accepted" + (f"; rejected: {run.reject_reasons}" if run.reject_reasons else ""))
    if run.steps != bare[0].steps:
        print(f"note: the pipeline recorded {run.steps} steps, the bare loop replayed {bare[0].steps}")
    ratio = run.sps / ceiling
    print(f"ceiling (mean of the bare runs) = {ceiling:.2f} steps/s")
    print(f"pipeline / ceiling steps/s = {ratio:.0%} (target >= {args.target:.0%})  [steady state]")
    if args.check:
        if ratio < args.target:
            print(f"FAIL: the pipeline reaches {ratio:.0%} of the bare loop's steps/s (target {args.target:.0%})", file=sys.stderr)
            return 1
        failed = (run.tasks - run.judged_ok) + sum(b.episodes - b.ok for b in bare)
        if failed:
            print(f"FAIL: {failed} episode(s) did not reach reward 1", file=sys.stderr)
            return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=25, help="seeds per task (default 25)")
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help=f"comma-separated MiniWoB tasks (default {','.join(DEFAULT_TASKS)})")
    ap.add_argument("--target", type=float, default=0.9, help="the pipeline / ceiling ratio --check enforces (default 0.9)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed or a trajectory was rejected")
    ap.add_argument("--scaling", action="store_true", help="steps/s at 1, 2 actors x 1, 2, 4, 8 contexts instead")
    ap.add_argument("--end-to-end", action="store_true",
                    help="end-to-end steps/s with replay verification against recording only instead")
    ap.add_argument("--e2e-target", type=float, default=0.7, help="the --end-to-end ratio --check enforces (default 0.7)")
    ap.add_argument("--memory", action="store_true", help="measure the driver's peak memory for --memory-sizes tasks instead")
    ap.add_argument(
        "--memory-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000],
        help="task counts for --memory (default 1000,10000)",
    )
    ap.add_argument("--memory-target", type=float, default=1.25, help="largest / smallest peak --check enforces (default 1.25)")
    ap.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--memory-dir", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.episodes < 1:
        ap.error("--episodes must be at least 1")
    return args


if __name__ == "__main__":
    sys.exit(main(parse_args()))
