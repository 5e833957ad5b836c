"""One episode, start to verdict, the same for every source.

`run_episode` resets a BrowserEnv on the task, lets a policy drive it, judges
the page at the end and returns the Trajectory. Whatever goes wrong (a solver
exception, a crashed page, a timeout) ends as a rejected trajectory carrying
the error and the steps made so far; it never escapes to the caller.
"""

from __future__ import annotations

import asyncio
import re
import time
import traceback
from typing import Any, Awaitable, Callable

from synth import __version__
from synth.env import BrowserEnv
from synth.judges import JudgeContext, run_judge
from synth.schema import Observation, Step, Task, Trajectory, Verdict, trajectory_id

Policy = Callable[[BrowserEnv, Observation], Awaitable[None]]


TIMED_OUT = "timed out"


def timed_out(error: str | None) -> bool:
    """The episode's error (or a replay's reason) says it ran out of time."""
    return bool(error) and error.endswith(f": {TIMED_OUT}")


def _describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return TIMED_OUT
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}{where}"


async def run_episode(
    env: BrowserEnv,
    task: Task,
    policy: Policy,
    *,
    source: str,
    source_detail: str,
    run_id: str = "",
    timeout_s: float = 120.0,
    attempt: int = 0,
) -> Trajectory:
    started_at, t0 = time.time(), time.perf_counter()
    error: str | None = None
    try:
        obs = await env.reset(task)
        await asyncio.wait_for(policy(env, obs), timeout_s)
    except Exception as e:  # noqa: BLE001 - any failure becomes the record's error
        error = f"{source} {source_detail}: {_describe(e)}"
    return await finish(
        env, task, source=source, source_detail=source_detail, attempt=attempt, run_id=run_id,
        started_at=started_at, t0=t0, error=error,
    )


async def finish(
    env: BrowserEnv,
    task: Task,
    *,
    source: str,
    source_detail: str,
    started_at: float,
    t0: float,
    attempt: int = 0,
    run_id: str = "",
    error: str | None = None,
) -> Trajectory:
    """Judge the open page, close the episode, return the Trajectory. The
    second half of `run_episode`, also used for episodes driven step by step
    from outside (the annotation server). A page whose episode failed is
    discarded, never reused."""
    verdict = Verdict(passed=False, reason="not judged")
    final_url = ""
    try:
        if error is not None:
            env.discard_page()
        if env.page is not None and not env.page.is_closed():
            final_url = env.page.url
            try:
                verdict = await run_judge(
                    task.judge,
                    JudgeContext(page=env.page, site=env.site, task=task, answer=env.answer, final_url=final_url,
                                 steps=list(env.steps), instruction=env.instruction),
                )
            except Exception as e:  # noqa: BLE001 - a failing judge is a rejection, not a crash
                verdict = Verdict(passed=False, reason=f"judge {task.judge.type} failed: {_describe(e)}")
                if INFRASTRUCTURE_ERRORS.search(verdict.reason):
                    # the browser died under the judge: no verdict at all, so
                    # an error (a retry on a fresh browser), not a rejection
                    error = error or verdict.reason
                    env.discard_page()
    finally:
        await env.close()
    return record(
        task, source=source, source_detail=source_detail, verdict=verdict, error=error, attempt=attempt,
        run_id=run_id, started_at=started_at, duration_s=time.perf_counter() - t0,
        instruction=env.instruction, steps=env.steps, answer=env.answer, final_url=final_url,
        final_screenshot=final_page_shot(env),
    )


def final_page_shot(env: BrowserEnv) -> bytes | None:
    """The screenshot of the page after the last action, which the env took
    already (`env.obs`, observed after every page action; an answer or done
    changes nothing on the page), so it costs no screenshot. None when that
    observation failed: `env.obs` is then still the last step's own page, from
    before its action."""
    obs = env.obs
    if obs is None:
        return None
    last = env.steps[-1] if env.steps else None
    if last is not None and last.observation is obs and last.action.name not in ("answer", "done"):
        return None
    return obs.screenshot


def record(
    task: Task,
    *,
    source: str,
    source_detail: str,
    verdict: Verdict,
    error: str | None,
    started_at: float,
    duration_s: float = 0.0,
    attempt: int = 0,
    run_id: str = "",
    instruction: str | None = None,
    steps: list[Step] | None = None,
    answer: str | None = None,
    final_url: str = "",
    final_screenshot: bytes | None = None,
) -> Trajectory:
    """The Trajectory of an ended episode: accepted only if the judge passed
    and nothing failed, else rejected with the reason."""
    steps = steps or []
    accepted = verdict.passed and error is None
    reason = None
    if not accepted:
        reason = f"error: {error}" if error else f"judge: {verdict.reason}"
    return Trajectory(
        trajectory_id=trajectory_id(task.task_id, source, source_detail, attempt),
        task_id=task.task_id,
        template_id=task.template_id,
        site=task.site,
        seed=task.seed,
        source=source,
        source_detail=source_detail,
        instruction=instruction or task.instruction or "",
        start_url=steps[0].observation.url if steps else "",
        final_url=final_url,
        task_config=task.model_dump_json(),
        steps=steps,
        answer=answer,
        verdict=verdict,
        error=error,
        status="accepted" if accepted else "rejected",
        reject_reason=reason,
        started_at=started_at,
        duration_s=duration_s,
        run_id=run_id,
        synth_version=__version__,
        final_screenshot=final_screenshot,
    )


INFRASTRUCTURE_ERRORS = re.compile(
    r"timed out|hung|has been closed|crash|disconnected|Protocol error|Failed to open|Connection closed"
    r"|browser.*closed",
    re.IGNORECASE,
)


def lost_to_infrastructure(t: Trajectory) -> bool:
    """The episode failed because of the browser (a crash, a hang, a timeout),
    not because of the policy or the judge: worth a retry on a fresh browser."""
    return t.error is not None and bool(INFRASTRUCTURE_ERRORS.search(t.error))


def failed_trajectory(task: Task, source: str, source_detail: str, error: str, run_id: str = "") -> Trajectory:
    """The record of an episode that produced nothing usable (it hung and was
    abandoned): rejected, with the reason, so the task counts as done."""
    return record(
        task, source=source, source_detail=source_detail, verdict=Verdict(passed=False, reason="not judged"),
        error=error, started_at=time.time(), run_id=run_id,
    )


async def abandon_after(coro: Any, seconds: float) -> Any:
    """The coroutine's result, or None if it is not done in time. Unlike
    asyncio.wait_for, this does not wait for the cancelled coroutine to
    unwind: on a frozen browser even its cleanup (closing the context) hangs."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        return task.result()
    task.cancel()
    _abandoned.add(task)  # keep a reference; it may never finish
    task.add_done_callback(_abandoned.discard)
    return None


_abandoned: set[asyncio.Task] = set()
