"""MiniWoB++ as a site: the `miniwob` package's own pages and reward code.

The pages are served by a small static HTTP server in each worker process
(file:// URLs would work for most tasks, but not for all, and an HTTP origin is
what the other sites use too). An episode is MiniWoB's own: `Math.seedrandom`
with the task seed (as the gym environment does), `core.startEpisodeReal()`,
and the utterance as the instruction. Judging reads MiniWoB's globals.
"""

from __future__ import annotations

import functools
import http.server
import os
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

import miniwob
from playwright.async_api import Page

from synth.schema import Box, JudgeSpec, Task, stable_id
from synth.sites.base import Setup, Site, register_site

HTML_DIR = Path(os.path.dirname(miniwob.__file__)) / "html"


def task_names() -> list[str]:
    """Every MiniWoB++ task the installed package ships."""
    return sorted(p.stem for p in (HTML_DIR / "miniwob").glob("*.html"))


def make_task(name: str, seed: int = 0, solver: str | None = None) -> Task:
    """One MiniWoB++ episode as a Task, with the id the templates give it
    (for tests, benchmarks and notebooks that skip the template files)."""
    template_id = f"miniwob/{name}"
    return Task(
        task_id=stable_id("task", template_id, {"task": name}, seed),
        template_id=template_id,
        site="miniwob",
        params={"task": name},
        judge=JudgeSpec(type="miniwob_reward"),
        solver=solver,
        seed=seed,
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A context closed mid-load hangs up on us: expected, not an error.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class StaticServer:
    """A threaded static file server on a free loopback port."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


_server: StaticServer | None = None
_server_lock = threading.Lock()


def shared_server() -> StaticServer:
    """One static server per process, shared by every MiniWoB site object."""
    global _server
    with _server_lock:
        if _server is None:
            _server = StaticServer(HTML_DIR)
        return _server


@register_site
class MiniWoBSite(Site):
    name: ClassVar[str] = "miniwob"
    viewport: ClassVar[dict[str, int]] = {"width": 500, "height": 320}
    # MiniWoB's own gym environment reuses one page for every episode without
    # even reloading it; a new document per episode is stricter. Measured on
    # 2 cores: 5.1 episodes/s reusing pages against 1.9 with fresh contexts.
    reuse_page: ClassVar[bool] = True
    # A task's 10 s timer ends the episode with reward -1. The recording ran
    # within it; a replay on a loaded machine (load 60+, a settle wait per
    # action) can overrun it with the very same actions, and fail a correct
    # trajectory for the machine's speed.
    replay_options: ClassVar[dict[str, Any]] = {"episode_max_time_ms": 600_000}

    def __init__(self, base_url: str | None = None, episode_max_time_ms: int | None = None) -> None:
        """`base_url`: serve the pages from elsewhere (a MiniWoB checkout);
        `episode_max_time_ms`: override the tasks' own time limits (people and
        LLM agents are slower than the 10 s most tasks allow)."""
        self.base_url = base_url
        self.episode_max_time_ms = episode_max_time_ms

    async def start(self) -> None:
        if self.base_url is None:
            self.base_url = shared_server().url

    def url(self, task: Task) -> str:
        name = task.params.get("task")
        if not name:
            raise ValueError(f"task {task.task_id} ({task.template_id}) has no params.task (the MiniWoB task name)")
        return f"{self.base_url}/miniwob/{name}.html"

    async def setup(self, page: Page, task: Task) -> Setup:
        await self.start()
        await page.goto(self.url(task), wait_until="load")
        info = await page.evaluate(
            """([seed, maxTime]) => {
                if (maxTime !== null) core.EPISODE_MAX_TIME = maxTime;
                Math.seedrandom(seed);
                core.startEpisodeReal();
                const r = document.getElementById('wrap').getBoundingClientRect();
                return {utterance: core.getUtterance(), area: [r.left, r.top, r.width, r.height]};
            }""",
            [task.seed, self.episode_max_time_ms],
        )
        x, y, w, h = info["area"]
        # #wrap holds the task; outside it are MiniWoB's reward display and timers.
        return Setup(instruction=info["utterance"], area=Box(x=x, y=y, width=w, height=h), root="#wrap")

    async def state(self, page: Page, task: Task) -> dict[str, Any]:
        return await reward_state(page)

    async def episode_done(self, page: Page) -> bool:
        """MiniWoB's episode end: after it the page offers START, a new episode."""
        return bool(await page.evaluate("() => typeof WOB_DONE_GLOBAL !== 'undefined' && !!WOB_DONE_GLOBAL"))

    def outcome(self, state: Any) -> bool | None:
        """MiniWoB's task code decided: the episode ended with a positive raw reward."""
        return bool(state.get("done")) and float(state.get("raw_reward", 0)) > 0


async def reward_state(page: Page) -> dict[str, Any]:
    """MiniWoB's own episode outcome: raw reward (not time-discounted), done, reason."""
    raw, done, reason, reward = await page.evaluate(
        "() => [WOB_RAW_REWARD_GLOBAL, WOB_DONE_GLOBAL, WOB_REWARD_REASON, WOB_REWARD_GLOBAL]"
    )
    return {"raw_reward": float(raw), "done": bool(done), "reason": reason, "reward": float(reward)}
