"""Real applications as sites: what an episode's clean start costs.

    .venv/bin/python bench/apps.py [--sites mybooks,trac,datasette] [--resets 20] [--levels 1,2,4] [--episodes 12] [--check]

For each configured application site (synth/sites/app.py), in this process:

* start: a fresh instance (process start until it answers, its data copied),
  the baseline: what a per-episode restart would cost;
* reset: an instance back to the pristine data while it keeps running (what
  every episode pays), median and p95 over `--resets`; the verdict is the
  median against the target (under 1 s; WebArena resets its sites in
  minutes) and the ratio start / reset;
* episodes/s at each concurrency level: `--episodes` minimal episodes (lease
  an instance, reset, log in, open the start page in a fresh browser context,
  read the state for judges, release), `level` at once, one Chromium; each
  level gets its own instances (one per concurrent episode).

Sites whose application is not installed are skipped with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load, machine_note, pct  # noqa: E402

from playwright.async_api import async_playwright  # noqa: E402

from synth.env import BrowserConfig, BrowserEnv, launch_browser  # noqa: E402
from synth.schema import JudgeSpec, Task  # noqa: E402
from synth.sites import SITES  # noqa: E402
from synth.sites.app import AppSite, _fill  # noqa: E402


def missing(cls: type[AppSite]) -> str | None:
    """Why the site's application cannot start here, or None."""
    if cls.config.command is None:
        return None
    exe = _fill(cls.config.command, port=0, data="", here=cls.here)[0]
    return None if shutil.which(exe) or Path(exe).exists() else f"{exe} not found"


def task(site: str, i: int) -> Task:
    return Task(task_id=f"bench{i}", template_id=f"{site}/bench", site=site, seed=i,
                judge=JudgeSpec(type="string_match", expected="-"))


async def bench_site(name: str, browser, resets: int, levels: list[int], episodes: int) -> dict:
    cls = SITES[name]
    t0 = time.perf_counter()
    cls.pristine(0)
    build_s = time.perf_counter() - t0
    site = cls()
    starts = []
    try:
        for _ in range(3):
            t0 = time.perf_counter()
            inst = await site._launch()
            starts.append(time.perf_counter() - t0)
            await asyncio.to_thread(inst.stop)
        inst = await site._launch()
        times = []
        for _ in range(resets):
            t0 = time.perf_counter()
            await inst.reset(0)
            times.append(time.perf_counter() - t0)
        await asyncio.to_thread(inst.stop)
    finally:
        await site.stop()
    rates = {}
    for level in levels:
        site = cls()
        gate = asyncio.Semaphore(level)

        async def one(i: int) -> None:
            async with gate:
                env = BrowserEnv(browser, site, BrowserConfig(screenshots=False))
                try:
                    await env.reset(task(name, i))
                    await site.state(env.page, env.task)
                finally:
                    await env.close()

        try:
            await asyncio.gather(*(one(i) for i in range(level)))  # instances started: not what is measured
            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(episodes)))
            rates[level] = episodes / (time.perf_counter() - t0)
        finally:
            await site.stop()
    return {"build_s": build_s, "start_s": statistics.median(starts), "reset_ms": 1000 * statistics.median(times),
            "reset_p95_ms": 1000 * pct(times, 95), "rates": rates}


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", default="mybooks,trac,datasette")
    ap.add_argument("--resets", type=int, default=20)
    ap.add_argument("--levels", default="1,2,4")
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--target-ms", type=float, default=1000.0)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    started = load()
    levels = [int(x) for x in args.levels.split(",")]
    results, skipped = {}, {}
    async with async_playwright() as p:
        browser = await launch_browser(p, BrowserConfig())
        for name in [s.strip() for s in args.sites.split(",") if s.strip()]:
            cls = SITES.get(name)
            if cls is None or not issubclass(cls, AppSite):
                skipped[name] = "not a configured application site" if cls else "not registered (install its plugin)"
                continue
            why = missing(cls)
            if why:
                skipped[name] = why
                continue
            print(f"  {name}: ...", flush=True)
            results[name] = await bench_site(name, browser, args.resets, levels, args.episodes)
        await browser.close()
    print(f"\napplication sites: clean start per episode ({machine_note(started)})")
    head = f"{'site':<10} {'start s':>8} {'reset ms':>9} {'p95 ms':>7} {'start/reset':>11} " + " ".join(
        f"{f'ep/s @{n}':>8}" for n in levels)
    print(head)
    print("-" * len(head))
    ok = bool(results)
    for name, r in results.items():
        ratio = r["start_s"] * 1000 / max(r["reset_ms"], 1e-3)
        print(f"{name:<10} {r['start_s']:>8.2f} {r['reset_ms']:>9.1f} {r['reset_p95_ms']:>7.1f} {ratio:>10.0f}x " +
              " ".join(f"{r['rates'][n]:>8.2f}" for n in levels))
        ok &= r["reset_ms"] < args.target_ms
    for name, why in skipped.items():
        print(f"{name:<10} skipped: {why}")
    print(f"target: median reset < {args.target_ms:.0f} ms on every site ({'met' if ok else 'NOT met'})")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
