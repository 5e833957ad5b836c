"""Bootstrap throughput: accepted trajectories per minute against concurrency.

    .venv/bin/python bench/bootstrap.py [--levels 1,4,16,32,64] [--delay 1.0] [--mix default|long] [--check]

The mock OpenAI-compatible server (bootstrap.mock_server) runs in its own
process and answers every request after a fixed delay (1 s), as a remote
model would. One BootstrapSource (one Chromium, as one Ray actor would have)
runs MiniWoB++ episodes with N of them in flight at once, for N in --levels,
through the whole stack: prompt, screenshot, the `openai` client with its
limits and retries, parsing, BrowserEnv, the judge. The cache is off, every
episode is a new seed.

Each level runs `--rounds` x N episodes (at least --min-episodes) of a mix of
tasks the mock agent solves (2 to 6 model calls each) and reports accepted
trajectories per minute. If synth were free, throughput would grow linearly
with N until the server or the machine saturates: the `scaling` column is
throughput(N) / (N x throughput(1)), and the target is >= 0.8 up to N = 32 on
a 2-core machine, i.e. the time goes to waiting on the model, not to synth.
`--check` exits 1 when a level up to 32 is below the target.

The table also shows what an episode costs on the synth side: the model's
wait is `calls x delay`; `overhead/call` is the rest of an episode's time per
model call (browser observation, action, prompt building, HTTP, parsing),
which is what grows when the machine, not the server, is the limit. The CPU
columns split an episode's CPU time between this Python process (the agent
loop, the client, BrowserEnv's Python side), Chromium, Playwright's driver
and the mock server, read from /proc, so a run on a busy machine still says
where the time goes: the last line turns the CPU per episode into the
throughput ceiling of this machine with every core free.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from synth.config import BootstrapSourceConfig  # noqa: E402
from synth.sites.miniwob import make_task  # noqa: E402

from bootstrap.source import BootstrapSource  # noqa: E402

MIXES = {
    "default": ("click-button", "click-checkboxes", "enter-text", "login-user", "click-option", "click-tab"),
    # long episodes (5-7 model calls): a page load is spread over more calls
    "long": ("login-user", "enter-password", "enter-text", "choose-list"),
}
MIX = MIXES["default"]
PARTS = ("python", "chromium", "driver", "server")


def cpu_by_part() -> dict[str, float]:
    """CPU seconds used so far by this process and its descendants, by kind:
    this Python process (synth + bootstrap), Chromium, Playwright's driver,
    the mock server. Linux /proc; empty elsewhere."""
    hz = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, float, str]] = {}
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline") as f:
                cmd = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        procs[pid] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / hz, cmd)
    me = os.getpid()
    tree, grew = {me}, True
    while grew:
        grew = False
        for pid, (ppid, _, _) in procs.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    out = dict.fromkeys(PARTS, 0.0)
    for pid in tree:
        if pid not in procs:
            continue
        _, cpu, cmd = procs[pid]
        kind = (
            "python" if pid == me
            else "server" if "mock_server" in cmd
            else "chromium" if "chrom" in cmd
            else "driver"
        )
        out[kind] += cpu
    return out


def start_server(delay: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bootstrap.mock_server", "--port", "0", "--delay", str(delay)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("mock OpenAI server on "):
        proc.kill()
        raise SystemExit(f"the mock server did not start: {line} {proc.stderr.read()[-2000:]}")
    return proc, line.rsplit(" ", 1)[-1]


async def level(src: BootstrapSource, n: int, episodes: int, seed0: int) -> dict:
    tasks = [make_task(MIX[i % len(MIX)], seed=seed0 + i) for i in range(episodes)]
    gate = asyncio.Semaphore(n)
    calls_before = src.client.stats.calls

    async def one(t):
        async with gate:
            started = time.perf_counter()
            tr = await src.run(t)
            return tr, time.perf_counter() - started

    cpu0 = cpu_by_part()
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(t) for t in tasks))
    elapsed = time.perf_counter() - t0
    cpu1 = cpu_by_part()
    cpu_ms = {k: (cpu1.get(k, 0.0) - cpu0.get(k, 0.0)) * 1000 / episodes for k in cpu1}
    accepted = sum(1 for tr, _ in results if tr.status == "accepted")
    calls = src.client.stats.calls - calls_before
    episode_s = sum(d for _, d in results) / len(results)
    rejected = [tr.reject_reason for tr, _ in results if tr.status != "accepted"]
    errors = [tr.error for tr, _ in results if tr.error]
    return {
        "n": n,
        "episodes": episodes,
        "accepted": accepted,
        "elapsed": elapsed,
        "per_min": accepted / elapsed * 60,
        "calls_per_episode": calls / episodes,
        "episode_s": episode_s,
        "rejected": rejected[:3],
        "errors": len(errors),
        "screenshot_timeouts": sum("screenshot" in e.lower() for e in errors),
        "cpu_ms": cpu_ms,
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,4,16,32,64")
    ap.add_argument("--delay", type=float, default=1.0, help="the server's answer delay (s)")
    ap.add_argument("--rounds", type=int, default=3, help="episodes per level = rounds x N")
    ap.add_argument("--min-episodes", type=int, default=8)
    ap.add_argument("--target", type=float, default=0.8)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--mix", choices=sorted(MIXES), default="default", help="which MiniWoB++ tasks (default: 2-6 calls each)")
    args = ap.parse_args()
    global MIX
    MIX = MIXES[args.mix]
    levels = [int(x) for x in args.levels.split(",")]

    proc, url = start_server(args.delay)
    config = BootstrapSourceConfig(
        enabled=True, base_url=url, model="mock-agent", cache_path=None, max_concurrency=max(levels),
        contexts_per_actor=max(levels), request_timeout_s=60,
    )
    src = BootstrapSource(config=config)
    await src.setup()
    rows = []
    try:
        await level(src, 2, 4, seed0=10_000)  # warm-up: browser, pages, server connections
        seed = 0
        for n in levels:
            episodes = max(args.min_episodes, args.rounds * n)
            rows.append(await level(src, n, episodes, seed))
            seed += episodes
            r = rows[-1]
            print(f"  N={n:3d}: {r['accepted']}/{r['episodes']} accepted in {r['elapsed']:.1f} s", file=sys.stderr)
    finally:
        await src.teardown()
        proc.terminate()
        proc.wait(10)

    base = rows[0]["per_min"] / rows[0]["n"]
    load = os.getloadavg()
    print(f"\nbootstrap throughput, {args.mix} task mix, server delay {args.delay:g} s, {os.cpu_count()} cores, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'':>82}CPU ms per episode")
    header = (
        f"{'N':>4} {'episodes':>8} {'accepted':>8} {'s':>6} {'accepted/min':>12} {'scaling':>7} {'calls/ep':>8} "
        f"{'episode s':>9} {'overhead/call':>13} {'errors':>6} {' '.join(f'{p:>8}' for p in PARTS)}"
    )
    print(header)
    print("-" * len(header))
    failed = False
    for r in rows:
        scaling = r["per_min"] / (r["n"] * base) if base else 0.0
        overhead = r["episode_s"] / r["calls_per_episode"] - args.delay if r["calls_per_episode"] else 0.0
        cpu = " ".join(f"{r['cpu_ms'].get(p, 0.0):>8.0f}" for p in PARTS)
        print(f"{r['n']:>4} {r['episodes']:>8} {r['accepted']:>8} {r['elapsed']:>6.1f} {r['per_min']:>12.1f} "
              f"{scaling:>7.2f} {r['calls_per_episode']:>8.2f} {r['episode_s']:>9.2f} {overhead * 1000:>10.0f} ms "
              f"{r['errors']:>6} {cpu}")
        if r["n"] <= 32 and scaling < args.target:
            failed = True
        if r["rejected"]:
            print(f"     rejected e.g.: {r['rejected']}")
    print(f"target: scaling >= {args.target} up to N = 32 ({'met' if not failed else 'NOT met'})")
    lost = sum(r["screenshot_timeouts"] for r in rows)
    print(f"episodes lost to screenshot timeouts: {lost} (target 0; at N={rows[-1]['n']}: "
          f"{rows[-1]['screenshot_timeouts']})")
    failed = failed or lost > 0
    if rows and rows[-1]["cpu_ms"]:
        per_episode = sum(rows[-1]["cpu_ms"].values())
        ceiling = (os.cpu_count() or 1) * 1000 / per_episode * 60 if per_episode else 0.0
        share = {p: rows[-1]["cpu_ms"].get(p, 0.0) / per_episode for p in PARTS} if per_episode else {}
        print(
            f"CPU per episode at N={rows[-1]['n']}: {per_episode:.0f} ms "
            f"({', '.join(f'{p} {v:.0%}' for p, v in share.items())}); "
            f"with every core free that caps throughput at ~{ceiling:.0f} accepted/min."
        )
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
