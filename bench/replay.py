"""What a verification replay costs against the recording it verifies.

    .venv/bin/python bench/replay.py [--episodes 12] [--tasks click-button,...] [--contexts 3] [--rounds 2] [--check]

The same MiniWoB++ episodes (task, seed) two ways, in this process, on one
Chromium each, `--contexts` episodes at once, taking turns for `--rounds`:

* recording: SolverSource as a source actor runs it (pooled pages, the
  solver through BrowserEnv, a settled observation with snapshot and
  screenshot per step, the judge);
* replay: the Replayer as the replay gate runs it (the recorded steps, a
  cold pooled page per replay: caches and storage emptied; no screenshot,
  no snapshot; a settled page and the recorded target at its point before
  each action; the judge).

Cost per step = wall time / steps at the same concurrency. Verdict: replay
cost / recording cost, target <= 0.4 (with both on the same cores, the
end-to-end rate of record + verify is at most 1 / (1 + that ratio) of
recording alone). Also printed: the ratio with a fresh context per replay
instead of a cold pooled page, what reuse saves.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_TASKS, machine_note, load, parse_tasks, solver_tasks  # noqa: E402

from synth.env import BrowserConfig, BrowserEnv  # noqa: E402
from synth.quality.replay import ReplayJob, Replayer, steps_of  # noqa: E402
from synth.sources import SolverSource  # noqa: E402


class FreshContextReplayer(Replayer):
    """A fresh context per replay (the alternative the cold pooled page beats)."""

    async def env(self, task):
        return BrowserEnv(await self.browser(), await self.site(task.site), self.browser_config, pages=None)


async def timed(fn, items, contexts: int) -> tuple[float, list]:
    gate = asyncio.Semaphore(contexts)

    async def one(item):
        async with gate:
            return await fn(item)

    t0 = time.perf_counter()
    out = await asyncio.gather(*(one(i) for i in items))
    return time.perf_counter() - t0, out


async def main(args: argparse.Namespace) -> int:
    tasks = solver_tasks(parse_tasks(args.tasks), range(args.episodes))
    at_start = load()
    source = SolverSource(browser=BrowserConfig())
    replay_config = BrowserConfig(screenshots=False, snapshots=False)
    replayer, fresh = Replayer(browser=replay_config), FreshContextReplayer(browser=replay_config)
    for s in (source, replayer, fresh):
        await s.setup()
    record_s, replay_s, fresh_s = [], [], []
    try:
        # warm-up: browsers, pools, the static server
        await timed(source.run, tasks[: args.contexts], args.contexts)
        for _ in range(args.rounds):
            secs, trajectories = await timed(source.run, tasks, args.contexts)
            rejected = [t for t in trajectories if t.status != "accepted"]
            if rejected:
                raise SystemExit(f"recording rejected {len(rejected)}: {rejected[0].reject_reason}")
            steps = sum(len(t.steps) for t in trajectories)
            record_s.append(secs / steps)
            jobs = [ReplayJob(t.trajectory_id, task, steps_of(t)) for t, task in zip(trajectories, tasks)]
            secs, results = await timed(replayer.verify, jobs, args.contexts)
            failed = [r for r in results if not r.passed]
            if failed:
                raise SystemExit(f"replay failed {len(failed)}: {failed[0].reason}")
            replay_s.append(secs / steps)
            secs, _ = await timed(fresh.verify, jobs, args.contexts)
            fresh_s.append(secs / steps)
    finally:
        for s in (source, replayer, fresh):
            await s.teardown()

    rec, rep, frs = (statistics.mean(x) * 1000 for x in (record_s, replay_s, fresh_s))
    ratio = rep / rec
    print(f"\nreplay against recording, {len(tasks)} MiniWoB++ episodes x {args.rounds} rounds "
          f"({', '.join(parse_tasks(args.tasks))}), {args.contexts} at once; {machine_note(at_start)}")
    print(f"{'':<44}{'ms/step':>9}{'ratio':>8}")
    print(f"{'recording (pooled pages, screenshots)':<44}{rec:>9.1f}{1.0:>8.2f}")
    print(f"{'replay, cold pooled page (the gate)':<44}{rep:>9.1f}{ratio:>8.2f}")
    print(f"{'replay, fresh context per replay':<44}{frs:>9.1f}{frs / rec:>8.2f}")
    met = ratio <= args.target
    print(f"target: replay / recording cost per step <= {args.target} ({'met' if met else 'NOT met'}); "
          f"record + verify on the same cores is bounded by {1 / (1 + ratio):.2f} of recording alone")
    return 0 if met or not args.check else 1


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=12, help="seeds per task")
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    ap.add_argument("--contexts", type=int, default=3, help="episodes at once (as contexts_per_actor)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--target", type=float, default=0.4)
    ap.add_argument("--check", action="store_true")
    return ap.parse_args()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
