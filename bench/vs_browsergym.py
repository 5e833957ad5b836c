"""synth against BrowserGym: the same MiniWoB++ episodes, episodes/s and steps/s.

    .venv/bin/python bench/vs_browsergym.py [--episodes 10] [--tasks click-button,...] [--check]

The same episodes (task, seed) with the same actions run through synth and
through BrowserGym (`browsergym-miniwob`), both on the same Chromium and the
same MiniWoB++ pages (the `miniwob` package's HTML: synth serves it over a
local HTTP server, BrowserGym opens it with `MINIWOB_URL=file://...`). Every
step on both sides ends with a screenshot and an accessibility snapshot: synth's
compact snapshot plus a PNG of the task area; BrowserGym's DOM snapshot,
accessibility tree and screenshot, its normal observation.

Actions. A first, untimed pass runs synth's own solvers (solvers/miniwob.py)
through `SolverSource` and keeps each episode's actions: the element each click
aimed at (its CSS selector), the text typed, the key pressed. synth's timed
runs run the same solvers again (checked to act the same); BrowserGym replays
the recorded actions with its own action set, element-targeted as an agent
would use it: `click(bid)` on the same element (its bid read from the page
before the step, not timed), `keyboard_type(text)`, `keyboard_press(key)`.
Element-targeted rather than coordinates because BrowserGym lays MiniWoB out
differently (it removes the instruction bar and zooms), so synth's pixels do
not carry over. Both sides must end each episode with reward 1 (MiniWoB's own
reward code); the table counts it.

Runners, each timed after a warm-up (Playwright started, browser launched):

* synth, the way the pipeline runs it: `pipelines/web.yaml`'s layout (actors x
  contexts_per_actor: one process with one browser per actor, that many
  episodes at once on each) with SolverSource and BrowserEnv, judge included.
* synth, one process, one context: episodes one after the other.
* BrowserGym, its normal loop: one env per task, `reset(seed)` per episode
  (a new task browser and chat browser each time), `step(action)` per step.
* with `--bg-procs N`: also N BrowserGym processes at once, splitting the
  episodes.

BrowserGym pins playwright==1.44, so it runs in its own venv,
bench/.venv-browsergym (created on first use: pip install browsergym-miniwob),
as a subprocess (bench/_browsergym_worker.py) that prints its timings as JSON.
It runs with `slow_mo=0, pre_observation_delay=0` (its defaults add 100 ms per
Playwright call and 0.5 s per step) and its page seed set to the task seed,
as synth's site does, so both sides get the same episode (the utterances are
compared).

Verdict: synth's episodes/s in the pipeline layout over BrowserGym's single
env, target >= 8x. The runners take turns (`--rounds`), so load drift hits all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import DEFAULT_TASKS, ROOT, Op, ensure_venv, load, machine_note, parse_tasks, record_solver_ops, solver_tasks, steps_to_ops

from synth.env import BrowserEnv, find_chromium  # noqa: E402
from synth.schema import Action, Observation, Task  # noqa: E402
from synth.sources import SolverSource  # noqa: E402

BG_VENV = ROOT / "bench" / ".venv-browsergym"
BG_WORKER = ROOT / "bench" / "_browsergym_worker.py"
BG_REQUIREMENT = "browsergym-miniwob==0.14.3"


# ---------------------------------------------------------------- synth side


class TimedEnv(BrowserEnv):
    """BrowserEnv with reset and each step timed from the outside."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reset_ms: float | None = None
        self.steps_ms: list[float] = []

    async def reset(self, task: Task) -> Observation:
        t0 = time.perf_counter()
        obs = await super().reset(task)
        self.reset_ms = (time.perf_counter() - t0) * 1000
        return obs

    async def step(self, action: Action) -> Observation:
        t0 = time.perf_counter()
        obs = await super().step(action)
        self.steps_ms.append((time.perf_counter() - t0) * 1000)
        return obs


class TimedSolverSource(SolverSource):
    """SolverSource as the pipeline's actors use it, keeping each episode's env
    so its timings can be read after `run`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.envs: dict[str, TimedEnv] = {}

    async def env(self, task: Task) -> BrowserEnv:
        env = TimedEnv(await self.browser(), await self.site(task.site), self.browser_config, self._pages)
        self.envs[task.task_id] = env
        return env


def same_actions(a: list[Op], b: list[Op]) -> bool:
    """Same kinds, same click targets, texts and keys (pixels may differ by layout)."""
    key = lambda op: (op[0], op[3]) if op[0] == "click" else tuple(op)  # noqa: E731
    return [key(o) for o in a] == [key(o) for o in b]


async def _synth_worker_async(conn: Any, tasks_json: list[dict], contexts: int) -> None:
    source = TimedSolverSource()
    await source.setup()
    tasks = [Task.model_validate(t) for t in tasks_json]
    gate = asyncio.Semaphore(contexts)

    async def one(task: Task) -> dict[str, Any]:
        async with gate:
            tr = await source.run(task)
        env = source.envs.pop(task.task_id)
        try:
            ops = steps_to_ops(tr.steps)
        except RuntimeError:
            ops = []  # a failed step: counted as not ok and not the same
        return {
            "task_id": task.task_id,
            "ok": tr.status == "accepted",
            "error": tr.reject_reason,
            "ops": ops,
            "reset_ms": env.reset_ms,
            "steps_ms": env.steps_ms,
        }

    try:
        # Warm-up: the first `contexts` episodes fill the page pool, as on a running actor.
        await asyncio.gather(*(one(t) for t in tasks[:contexts]))
        conn.send("ready")
        conn.recv()  # go
        start = time.monotonic()
        episodes = await asyncio.gather(*(one(t) for t in tasks))
        end = time.monotonic()
    finally:
        await source.teardown()
    conn.send({"start": start, "end": end, "episodes": episodes, "lookup_ms": 0.0})


def _synth_worker(conn: Any, tasks_json: list[dict], contexts: int) -> None:
    try:
        asyncio.run(_synth_worker_async(conn, tasks_json, contexts))
    except BaseException as e:  # noqa: BLE001 - the parent reports it
        conn.send({"fatal": f"{type(e).__name__}: {e}"})


def run_synth(tasks: list[Task], procs: int, contexts: int) -> list[dict[str, Any]]:
    """`procs` worker processes, each one SolverSource (one browser) running up
    to `contexts` episodes at once, started together after their warm-up."""
    ctx = mp.get_context("spawn")
    chunks = split(tasks, procs)
    workers = []
    for chunk in chunks:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_synth_worker, args=(child, [t.model_dump(mode="json") for t in chunk], contexts))
        p.start()
        workers.append((p, parent))
    for p, conn in workers:
        msg = conn.recv()
        if msg != "ready":
            raise RuntimeError(f"synth worker failed: {msg.get('fatal', msg)}")
    for _, conn in workers:
        conn.send("go")
    results = []
    for p, conn in workers:
        msg = conn.recv()
        if "fatal" in msg:
            raise RuntimeError(f"synth worker failed: {msg['fatal']}")
        results.append(msg)
        p.join()
    return results


# ---------------------------------------------------------------- BrowserGym side


def ensure_browsergym(requirement: str) -> Path:
    """BrowserGym's own venv (it pins playwright==1.44): created on first use."""
    return ensure_venv(BG_VENV, [requirement], "import browsergym.miniwob", "BrowserGym")


def run_browsergym(
    py: Path, tasks: list[Task], recorded: dict[str, tuple[str, list[Op]]], procs: int, chromium: str, tmp: Path
) -> list[dict[str, Any]]:
    """`procs` BrowserGym worker processes on contiguous shares of the episodes,
    started together after their warm-up episode."""
    from synth.sites.miniwob import HTML_DIR

    workers = []
    for i, chunk in enumerate(split(tasks, procs)):
        spec = {
            "chromium": chromium,
            "miniwob_url": (HTML_DIR / "miniwob").as_uri() + "/",
            "warmup": True,
            "wait_for_go": True,
            "episodes": [
                {"task": t.params["task"], "seed": t.seed, "task_id": t.task_id,
                 "ops": [[op[0], op[3]] if op[0] == "click" else list(op) for op in recorded[t.task_id][1]]}
                for t in chunk
            ],
        }
        spec_path = tmp / f"bg-{procs}-{i}.json"
        spec_path.write_text(json.dumps(spec))
        err = open(tmp / f"bg-{procs}-{i}.stderr", "w")
        p = subprocess.Popen(
            [str(py), str(BG_WORKER), str(spec_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
        )
        workers.append((p, err, spec["episodes"]))

    def fail(p: subprocess.Popen, err: Any, what: str) -> None:
        p.kill()
        err.close()
        tail = "\n".join(Path(err.name).read_text().strip().splitlines()[-15:])
        raise RuntimeError(f"BrowserGym worker {what} (exit {p.wait()}); its stderr ends:\n{tail}")

    for p, err, _ in workers:
        if p.stdout.readline().strip() != "READY":
            fail(p, err, "did not get ready")
    for p, _, _ in workers:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p, err, episodes in workers:
        line = p.stdout.readline()
        if not line.startswith("RESULT "):
            fail(p, err, "gave no result")
        res = json.loads(line[len("RESULT "):])
        for ep, sent in zip(res["episodes"], episodes):
            ep["task_id"] = sent["task_id"]
        res["lookup_ms"] = sum(ep["lookup_ms"] for ep in res["episodes"])
        results.append(res)
        p.wait()
        err.close()
    return results


# ---------------------------------------------------------------- report


def split(items: list[Any], n: int) -> list[list[Any]]:
    """n contiguous, near-equal, non-empty shares."""
    n = max(1, min(n, len(items)))
    return [items[i * len(items) // n : (i + 1) * len(items) // n] for i in range(n)]


@dataclass
class Runner:
    name: str
    layout: str
    episodes: int = 0
    ok: int = 0
    steps_ms: list[float] = field(default_factory=list)
    resets_ms: list[float] = field(default_factory=list)
    wall: float = 0.0
    same: int = 0  # episodes whose instruction and actions match the recording
    errors: list[tuple[str, str]] = field(default_factory=list)  # (task id, error)

    def add(self, results: list[dict[str, Any]], check: Any) -> None:
        """Merge one timed run: per-process results, wall from the first start
        to the last end (BrowserGym's untimed bid lookups taken out)."""
        self.wall += max(r["end"] - r["lookup_ms"] / 1000 for r in results) - min(r["start"] for r in results)
        for r in results:
            for ep in r["episodes"]:
                self.episodes += 1
                self.same += bool(check(ep))  # may fill in ok and error
                self.ok += bool(ep["ok"])
                if ep.get("reset_ms") is not None:
                    self.resets_ms.append(ep["reset_ms"])
                self.steps_ms.extend(ep["steps_ms"])
                if ep.get("error"):
                    self.errors.append((ep["task_id"], ep["error"]))

    @property
    def eps(self) -> float:
        return self.episodes / self.wall

    @property
    def sps(self) -> float:
        return len(self.steps_ms) / self.wall


def table(rows: list[Runner]) -> str:
    head = (
        f"{'runner':<12}{'layout':<24}{'episodes':>9}{'reward 1':>10}{'steps':>7}"
        f"{'median reset ms':>17}{'median step ms':>16}{'steps/s':>9}{'episodes/s':>12}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        med = lambda v: f"{statistics.median(v):.0f}" if v else "-"  # noqa: E731
        lines.append(
            f"{r.name:<12}{r.layout:<24}{r.episodes:>9}{f'{r.ok}/{r.episodes}':>10}{len(r.steps_ms):>7}"
            f"{med(r.resets_ms):>17}{med(r.steps_ms):>16}{r.sps:>9.2f}{r.eps:>12.2f}"
        )
    return "\n".join(lines)


def chromium_version(path: str | None) -> str:
    if not path:
        return "Playwright's Chromium"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return f"{path} ({out})" if out else path


# ---------------------------------------------------------------- main


def main(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    from synth.config import load_pipeline

    names = parse_tasks(args.tasks)
    tasks = solver_tasks(names, range(args.episodes))
    web = load_pipeline(ROOT / "pipelines" / "web.yaml").sources.solver
    procs = args.procs or web.actors
    contexts = args.contexts or web.contexts_per_actor
    chromium = find_chromium("auto")
    if chromium is None:
        print("BrowserGym needs a Chromium path: set $SYNTH_CHROMIUM or install /usr/bin/chromium", file=sys.stderr)
        return 2
    bg_python = ensure_browsergym(args.browsergym)
    started, load_at_start = time.perf_counter(), load()

    recorded = asyncio.run(record_solver_ops(tasks))
    n_steps = sum(len(ops) for _, ops in recorded.values())
    print(
        f"recorded {len(tasks)} episodes ({n_steps} steps) with synth's solvers: {', '.join(names)}, "
        f"seeds 0..{args.episodes - 1}",
        flush=True,
    )

    def synth_check(ep: dict[str, Any]) -> bool:
        return same_actions(ep["ops"], recorded[ep["task_id"]][1])

    def bg_check(ep: dict[str, Any]) -> bool:
        ep["ok"] = ep["reward"] == 1.0 and not ep["errors"]
        if ep["errors"]:
            ep["error"] = "; ".join(ep["errors"])
        return ep["goal"] == recorded[ep["task_id"]][0]

    synth_main = Runner("synth", f"{procs} proc{'s' if procs > 1 else ''} x {contexts} contexts")
    synth_one = Runner("synth", "1 proc x 1 context")
    bg_one = Runner("BrowserGym", "1 env (its normal loop)")
    bg_many = Runner("BrowserGym", f"{args.bg_procs} procs x 1 env")
    bg_versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="synth-vs-bg-") as tmp:
        def synth_run() -> None:
            synth_main.add(run_synth(tasks, procs, contexts), synth_check)

        def synth_single() -> None:
            synth_one.add(run_synth(tasks, 1, 1), synth_check)

        def bg_single() -> None:
            results = run_browsergym(bg_python, tasks, recorded, 1, chromium, Path(tmp))
            bg_versions.update(results[0]["versions"])
            bg_one.add(results, bg_check)

        def bg_parallel() -> None:
            bg_many.add(run_browsergym(bg_python, tasks, recorded, args.bg_procs, chromium, Path(tmp)), bg_check)

        plan = [("synth", synth_run), ("synth 1 context", synth_single), ("BrowserGym", bg_single)]
        if args.bg_procs > 1:
            plan.append((f"BrowserGym x{args.bg_procs}", bg_parallel))
        for r in range(args.rounds):
            for name, fn in plan if r % 2 == 0 else reversed(plan):
                print(f"round {r + 1}/{args.rounds}: {name} ...", flush=True)
                fn()
    elapsed = time.perf_counter() - started

    rows = [synth_main, synth_one, bg_one] + ([bg_many] if args.bg_procs > 1 else [])
    print()
    print(
        f"BrowserGym {bg_versions.get('browsergym', '?')} (playwright {bg_versions.get('playwright', '?')}): "
        f"slow_mo=0, pre_observation_delay=0, its page seed set to the task seed, "
        f"MINIWOB_URL=file://.../miniwob/html/miniwob/; synth {version('synth')} (playwright {version('playwright')})"
    )
    print(f"Chromium: {chromium_version(chromium)}, both sides; machine: {machine_note(load_at_start)}")
    print(
        "per step: synth = resolve, action, compact snapshot, PNG of the task area, Step record; BrowserGym = its "
        "action, DOM snapshot, AX tree, screenshot (its default observation). Actions: synth's solvers; "
        "BrowserGym replays them as click(bid) on the same element, keyboard_type, keyboard_press."
    )
    print()
    print(table(rows))
    print()
    print(
        f"same episodes: BrowserGym's goal equals synth's instruction in {bg_one.same + bg_many.same}/"
        f"{bg_one.episodes + bg_many.episodes}; synth's timed runs took the recorded actions in "
        f"{synth_main.same + synth_one.same}/{synth_main.episodes + synth_one.episodes}"
    )
    names_of = {t.task_id: f"{t.params['task']} seed {t.seed}" for t in tasks}
    for r in rows:
        for task_id, e in r.errors[:3]:
            print(f"  {r.name} ({r.layout}) failed {names_of.get(task_id, task_id)}: {e}")
        if len(r.errors) > 3:
            print(f"  ... and {len(r.errors) - 3} more")
    print(f"({args.rounds} round(s), {len(tasks)} episodes per runner per round; {elapsed:.0f} s)")
    print()
    ratio = synth_main.eps / bg_one.eps
    print(f"synth 1 context / BrowserGym 1 env: {synth_one.eps / bg_one.eps:.2f}x episodes/s, {synth_one.sps / bg_one.sps:.2f}x steps/s")
    if args.bg_procs > 1:
        print(
            f"synth {synth_main.layout} / BrowserGym {bg_many.layout}: "
            f"{synth_main.eps / bg_many.eps:.2f}x episodes/s, {synth_main.sps / bg_many.sps:.2f}x steps/s"
        )
    print(f"synth {synth_main.layout} / BrowserGym 1 env: {synth_main.sps / bg_one.sps:.2f}x steps/s")
    print(f"synth / BrowserGym episodes/s = {ratio:.2f}x (target >= {args.target:g}x)  [synth in pipelines/web.yaml's layout]")
    failed = sum(r.episodes - r.ok for r in rows) + sum(r.episodes - r.same for r in rows)
    if args.check:
        if ratio < args.target:
            print(f"FAIL: synth runs {ratio:.2f}x BrowserGym's episodes/s (target {args.target:g}x)", file=sys.stderr)
            return 1
        if failed:
            print(f"FAIL: {failed} episode(s) did not reach reward 1 or differed between the sides", file=sys.stderr)
            return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=10, help="episodes (seeds 0..N-1) per task (default 10)")
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help=f"comma-separated MiniWoB tasks (default {','.join(DEFAULT_TASKS)})")
    ap.add_argument("--procs", type=int, default=0, help="synth worker processes (default: pipelines/web.yaml's actors)")
    ap.add_argument("--contexts", type=int, default=0, help="episodes at once per synth process (default: web.yaml's contexts_per_actor)")
    ap.add_argument("--bg-procs", type=int, default=0, help="also run N BrowserGym processes at once (default: off)")
    ap.add_argument("--rounds", type=int, default=1, help="timed passes per runner, the order flipping each time (default 1)")
    ap.add_argument("--target", type=float, default=8.0, help="the episodes/s ratio --check enforces (default 8)")
    ap.add_argument("--check", action="store_true", help="exit 1 if synth / BrowserGym episodes/s is below --target or an episode failed")
    ap.add_argument("--browsergym", default=BG_REQUIREMENT, help=f"what to pip install into {BG_VENV.relative_to(ROOT)} if missing (default {BG_REQUIREMENT})")
    args = ap.parse_args(argv)
    if args.episodes < 1 or args.rounds < 1 or args.procs < 0 or args.contexts < 0 or args.bg_procs < 0:
        ap.error("--episodes and --rounds must be at least 1, the counts non-negative")
    return args


if __name__ == "__main__":
    sys.exit(main(parse_args()))
