"""Helpers the benchmarks share: percentiles, the machine's load, memory,
and replayable actions recorded from synth's solvers.

Import it from a bench script (they run as `bench/<name>.py`, so `bench/` is on
sys.path): `from _common import pct, ...`.
"""

from __future__ import annotations

import math
import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DEFAULT_TASKS = ("click-button", "enter-text", "click-checkboxes", "login-user")

# A replayable action in page pixels, plus the element a click aimed at:
# ("click", x, y, css_selector) | ("type", text) | ("press", key).
Op = tuple


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[min(len(s), max(1, math.ceil(q / 100 * len(s)))) - 1]


def parse_tasks(spec: str) -> list[str]:
    return [t.strip() for t in spec.split(",") if t.strip()]


def load() -> str:
    """The load average (1, 5, 15 minutes)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_note(at_start: str | None = None) -> str:
    """Cores and load average, printed with every result: figures from a busy
    machine are low, their ratios less so. `at_start`: load() when the run began."""
    now = f"load average {load()}"
    if at_start is not None:
        now = f"load average {at_start} at the start, {load()} at the end"
    return f"{os.cpu_count()} cores, {now}"


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    return _proc_status("VmRSS") or 0.0


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return _proc_status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _proc_status(key: str) -> float | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) / 1024 if m else None


def steps_to_ops(steps: list[Any]) -> list[Op]:
    """A recorded episode's steps as the exact page input BrowserEnv sent."""
    ops: list[Op] = []
    for step in steps:
        a = step.action
        if step.error:
            raise RuntimeError(f"step {step.index} ({a.name}) failed: {step.error}")
        if a.name == "click":
            x, y = step.observation.denormalise(a.x, a.y)
            ops.append(("click", x, y, step.element.selector if step.element else ""))
        elif a.name == "type":
            ops.append(("type", a.text or ""))
        elif a.name == "press":
            ops.append(("press", a.key))
        else:
            raise RuntimeError(f"the bench cannot replay {a.name!r}")
    return ops


def solver_tasks(names: list[str], seeds: range) -> list[Any]:
    """MiniWoB tasks (task, seed) with the project's solver for each."""
    from synth.solver import SOLVERS
    from synth.sites.miniwob import make_task

    unknown = [n for n in names if f"miniwob.{n}" not in SOLVERS]
    if unknown:
        raise SystemExit(f"no solver for {unknown}; known: {', '.join(sorted(SOLVERS))}")
    return [make_task(n, seed, solver=f"miniwob.{n}") for n in names for seed in seeds]


async def record_solver_ops(tasks: list[Any], contexts: int = 3) -> dict[str, tuple[str, list[Op]]]:
    """Run each task's solver once through synth (SolverSource, untimed, no
    screenshots: the solvers act on the snapshot) and return, per task id, the
    instruction and the actions it took. Every episode must be accepted."""
    import asyncio

    from synth.env import BrowserConfig
    from synth.sources import SolverSource

    source = SolverSource(browser=BrowserConfig(screenshots=False))
    await source.setup()
    gate = asyncio.Semaphore(contexts)

    async def one(task: Any) -> Any:
        async with gate:
            return await source.run(task)

    try:
        trajectories = await asyncio.gather(*(one(t) for t in tasks))
    finally:
        await source.teardown()
    out: dict[str, tuple[str, list[Op]]] = {}
    for task, tr in zip(tasks, trajectories):
        if tr.status != "accepted":
            raise RuntimeError(f"{task.template_id} seed {task.seed}: the solver's episode was rejected: {tr.reject_reason}")
        out[task.task_id] = (tr.instruction, steps_to_ops(tr.steps))
    return out


def ensure_venv(venv: Path, requirements: list[str], check: str, name: str) -> Path:
    """A peer tool's own venv, created on first use (`python -m venv`, then
    pip install `requirements`); `check` is Python code that must run in it.
    Returns its python; a failed step exits with pip's last lines."""
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", check], capture_output=True).returncode == 0:
        return py
    print(f"creating {venv.relative_to(ROOT)}: pip install {' '.join(requirements)} (once; about a minute) ...", flush=True)
    steps = [[sys.executable, "-m", "venv", str(venv)], [str(py), "-m", "pip", "install", "--quiet", *requirements]]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise SystemExit(f"cannot set up {name}'s venv: {' '.join(cmd)} failed:\n{tail}")
    return py
