"""`llm_judge`: a model decides whether an episode did its task, for tasks no
program can check.

    judge: {type: llm_judge}
    judge: {type: llm_judge, rubric: "The answer must name the cheapest {{ match.brand }} product."}

At episode end the judge sends one chat request to an OpenAI-compatible
endpoint: the instruction, the optional rubric, the actions taken (as text,
the last `max_actions`), the answer, the final page's URL, title and visible
text (`page_text_chars`), and up to `screenshots` images (the final page, then
the pages before the last actions), scaled to `screenshot_max_width`. The
model replies with one JSON object, `{"verdict": "pass" | "fail", "reason": ...}`.

The call goes through the bootstrap source's client (bootstrap/client.py): its
retries (429, 5xx, timeouts), rate limits, SQLite reply cache and prices. The
verdict carries the tokens and dollars of its calls (`Verdict.cost_usd`, 0 for
a cached reply), which `synth stats` sums per source.

A reply that is not a verdict gets `repairs` more turns quoting the problem
(the agent's policy for unparseable replies); if none is a verdict the
trajectory is rejected with a reason saying so. An endpoint that fails for
good (retries spent, a bad key) raises `LLMJudgeError` naming the task, which
the episode records as the judge's failure.

Where the endpoint comes from: `configure()` in this process (tests, a
script), else the pipeline's `judges.llm` section, which `synth run` leaves in
$SYNTH_LLM_JUDGE for its workers (`JudgesConfig.export_env`), else the
defaults ($OPENAI_BASE_URL, $OPENAI_API_KEY, gpt-4o).

`ask_judge(messages)` is the call itself, for other judges that need a model
(WebArena's `fuzzy_match`): same endpoint, client, cache and cost accounting.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synth.config import LLM_JUDGE_ENV, LLMJudgeConfig
from synth.judges import JudgeContext, register_judge
from synth.schema import Step, Verdict

if TYPE_CHECKING:
    from bootstrap.client import LLMClient, Reply

MARKER = "<synth-llm-judge>"
"""Opens the system prompt; the mock server's judge responder looks for it."""

SYSTEM = f"""{MARKER}
You judge whether a web agent completed a task in a browser. You are given the task, an optional rubric, the \
actions the agent took, its answer (for tasks that ask a question), the page it ended on (URL, title, visible \
text) and screenshots, the last one showing the final page.
Judge from this evidence only. The task passes only if the final page or the answer shows it was done as asked; \
a partial result, a wrong or missing answer, or a claim the evidence does not support is a fail. A rubric, when \
given, decides what counts.
Reply with one JSON object and nothing else:
{{"verdict": "pass" or "fail", "reason": "one or two sentences citing the evidence"}}"""

REPAIR = (
    "Your reply could not be used: {problem}. Reply again with only the JSON object "
    '{{"verdict": "pass" or "fail", "reason": "..."}}.'
)


class LLMJudgeError(RuntimeError):
    """The endpoint failed for good: no verdict at all (not a rejection by the model)."""


# ---------------------------------------------------------------- the endpoint

_configured: LLMJudgeConfig | None = None
_clients: dict[str, LLMClient] = {}


def configure(config: LLMJudgeConfig | None) -> None:
    """Use `config` in this process (None: back to the pipeline's or the defaults)."""
    global _configured
    _configured = config


def current_config() -> LLMJudgeConfig:
    """`configure()`'s config, else the pipeline's ($SYNTH_LLM_JUDGE), else the defaults."""
    if _configured is not None:
        return _configured
    raw = os.environ.get(LLM_JUDGE_ENV)
    return LLMJudgeConfig.model_validate_json(raw) if raw else LLMJudgeConfig()


def client_for(config: LLMJudgeConfig) -> LLMClient:
    """One client per endpoint config and process, shared by every episode
    (its limits and cache connection are per process anyway)."""
    from bootstrap.client import ClientConfig, LLMClient
    from bootstrap.source import resolve_cache_path

    key = config.model_dump_json() + repr(config.api_key.get_secret_value() if config.api_key else None)
    if key not in _clients:
        cache = resolve_cache_path(config, None) if config.cache_path != "auto" else None
        base_url = config.base_url or os.environ.get("OPENAI_BASE_URL")
        _clients[key] = LLMClient(ClientConfig.from_config(config, cache_path=cache, base_url=base_url))
    return _clients[key]


async def close_clients() -> None:
    """Close this process's judge clients (their connections and cache files)."""
    while _clients:
        await _clients.popitem()[1].aclose()


async def ask_judge(messages: list[dict[str, Any]], config: LLMJudgeConfig | None = None) -> Reply:
    """One chat completion on the judge endpoint (`config`, else `current_config()`),
    with the bootstrap client's retries, cache and prices; LLMError if it fails for good."""
    config = config or current_config()
    reason = config.unavailable()
    if reason:
        from bootstrap.client import LLMError

        raise LLMError(f"llm_judge: {reason}")
    return await client_for(config).chat(messages)


# ---------------------------------------------------------------- the prompt


def action_lines(steps: list[Step], limit: int) -> list[str]:
    """The steps' actions as text (Aguvis pyautogui calls, with their targets), the last `limit`."""
    from synth.actions import to_aguvis

    lines = []
    for i, step in enumerate(steps[-limit:], start=max(1, len(steps) - limit + 1)):
        line = f"{i}. {to_aguvis(step.action)}"
        el = step.element
        if el is not None and (el.name or "").strip():
            line += f"  # {el.role or 'element'} '{' '.join(el.name.split())[:80]}'"
        if step.error:
            line += f"  (failed: {step.error.splitlines()[0][:120]})"
        lines.append(line)
    return lines


async def final_page(ctx: JudgeContext, chars: int) -> tuple[str, str]:
    """The final page's title and visible text (whitespace folded, at most `chars`)."""
    if ctx.page is None or ctx.page.is_closed():
        return "", ""
    title = await ctx.page.title()
    if not chars:
        return title, ""
    text = await ctx.page.evaluate("() => document.body ? document.body.innerText : ''")
    text = re.sub(r"[ \t]+", " ", re.sub(r"\n\s*\n+", "\n", text or "")).strip()
    return title, text[:chars]


async def screenshots(ctx: JudgeContext, count: int, max_width: int) -> list[str]:
    """Data URLs, oldest first: the recorded pages before the last actions, then the final page."""
    from bootstrap.prompts import screenshot_url

    if count <= 0:
        return []
    recorded = [s.observation.screenshot for s in ctx.steps if s.observation.screenshot]
    pngs = recorded[max(0, len(recorded) - (count - 1)):]
    if ctx.page is not None and not ctx.page.is_closed():
        pngs.append(await ctx.page.screenshot())
    return [screenshot_url(png, max_width)[0] for png in pngs[-count:]]


async def messages(ctx: JudgeContext, config: LLMJudgeConfig, rubric: str | None) -> list[dict[str, Any]]:
    """The judge request: the system prompt, then the evidence as text and images."""
    instruction = ctx.instruction or (ctx.task.instruction if ctx.task is not None else None) or ""
    title, text = await final_page(ctx, config.page_text_chars)
    actions = action_lines(ctx.steps, config.max_actions)
    shown = f"{len(actions)} of {len(ctx.steps)}" if len(actions) < len(ctx.steps) else str(len(ctx.steps))
    parts = [f"## Task\n{instruction}"]
    if rubric:
        parts.append(f"## Rubric\n{rubric}")
    parts.append(f"## Actions ({shown})\n" + ("\n".join(actions) or "(none)"))
    parts.append(f"## Answer\n{ctx.answer if ctx.answer is not None else '(no answer)'}")
    parts.append(f"## Final page\nURL: {ctx.final_url}\nTitle: {title}\nText:\n{text}")
    images = await screenshots(ctx, config.screenshots, config.screenshot_max_width)
    if images:
        parts.append(f"## Screenshots\n{len(images)} image(s), oldest first; the last is the final page.")
    content: list[dict[str, Any]] = [{"type": "text", "text": "\n\n".join(parts)}]
    content += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]


# ---------------------------------------------------------------- the reply


def parse_verdict(text: str) -> tuple[bool, str]:
    """(passed, reason) from a reply; ValueError saying what is wrong with it."""
    start = (text or "").find("{")
    if start < 0:
        raise ValueError("no JSON object in the reply")
    match = re.search(r"\{.*\}", text[start:], re.DOTALL)
    if not match:
        raise ValueError("the reply's JSON object is not closed (cut off by max_tokens?)")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as e:
        raise ValueError(f"the reply's JSON does not parse ({e.msg} at character {e.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("the reply's JSON is not an object")
    verdict = data.get("verdict", data.get("passed"))
    if isinstance(verdict, str) and verdict.strip().lower() in ("pass", "passed", "fail", "failed"):
        passed = verdict.strip().lower().startswith("pass")
    elif isinstance(verdict, bool):
        passed = verdict
    else:
        raise ValueError(f'"verdict" must be "pass" or "fail", got {verdict!r}')
    reason = str(data.get("reason") or "").strip()
    if not reason:
        raise ValueError('the reply gives no "reason"')
    return passed, reason


@dataclass
class Asked:
    """A verdict asked for with repair turns: `passed`/`reason` are None when
    no reply was usable (`problem` says why, `text` is the last reply); the
    tokens and dollars are every reply's."""

    passed: bool | None
    reason: str
    problem: str = ""
    text: str = ""
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def shown(self) -> str:
        return " ".join(self.text.split())[:160]


async def ask_verdict(chat: Callable[[list[dict[str, Any]]], Awaitable[Reply]], request: list[dict[str, Any]],
                      repairs: int) -> Asked:
    """Ask for a `{"verdict", "reason"}` reply, quoting what was wrong with an
    unusable one back up to `repairs` times. An endpoint failure
    (bootstrap.client.LLMError) propagates."""
    asked = Asked(None, "")
    for _ in range(repairs + 1):
        reply = await chat(request)
        asked.tokens_in, asked.tokens_out = asked.tokens_in + reply.tokens_in, asked.tokens_out + reply.tokens_out
        asked.cost_usd, asked.text, asked.model = asked.cost_usd + reply.cost_usd, reply.text, reply.model
        try:
            asked.passed, asked.reason = parse_verdict(reply.text)
            return asked
        except ValueError as e:
            asked.problem = str(e)
            request = [*request, reply.assistant_message(), {"role": "user", "content": REPAIR.format(problem=asked.problem)}]
    return asked


def _where(ctx: JudgeContext) -> str:
    task = ctx.task
    return f"task {task.task_id} ({task.template_id})" if task is not None else "this episode"


@register_judge("llm_judge")
async def llm_judge(ctx: JudgeContext, rubric: str | None = None) -> Verdict:
    """A model reads the episode's evidence and decides (see the module doc).
    `rubric`: what counts as done for this template, in words (jinja2 slots allowed)."""
    from bootstrap.client import LLMError

    config = current_config()
    unavailable = config.unavailable()
    if unavailable:
        raise LLMJudgeError(f"llm_judge on {_where(ctx)}: {unavailable}")
    request = await messages(ctx, config, rubric)
    try:
        asked = await ask_verdict(lambda req: ask_judge(req, config), request, config.repairs)
    except LLMError as e:
        raise LLMJudgeError(f"llm_judge on {_where(ctx)}: the endpoint failed: {e}") from None
    spent = {"tokens_in": asked.tokens_in, "tokens_out": asked.tokens_out, "cost_usd": asked.cost_usd}
    if asked.passed is not None:
        return Verdict(passed=asked.passed, score=float(asked.passed),
                       reason=f"llm_judge ({asked.model or config.model}): {asked.reason}", **spent)
    return Verdict(
        passed=False, score=0.0, **spent,
        reason=f"llm_judge: no usable verdict after {config.repairs + 1} replies: {asked.problem}; "
               f"last reply: {asked.shown()!r}",
    )
