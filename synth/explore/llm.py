"""The LLM instruction writer: an OpenAI-compatible model phrases the task.

It reads the goal-free segment (its actions, the pages, the evidence of what
changed and the template-free draft) and writes one instruction. The judge
stays the one derived from the evidence: the model only words it. A reply
that leaves out a value the judge checks (a typed summary, the new priority)
is not used: the draft is, and the writer's name says so. The client is the
bootstrap source's (retries, reply cache, token and cost accounting).
"""

from __future__ import annotations

import json
import re
from typing import Any

from bootstrap.client import ClientConfig, LLMClient, LLMError
from synth.explore.propose import Evidence, Written
from synth.schema import Step

MARKER = "<synth-explore-writer>"
SYSTEM = (
    f"{MARKER}\nYou write tasks for web agents after the fact. You are shown what a user did on a web site and "
    "the evidence of its result. Write the one instruction a person would give to get exactly that result: "
    "imperative, one sentence, naming every value the check needs, without describing clicks. Reply with the "
    "instruction only."
)


def describe_step(step: Step) -> str:
    a, el = step.action, step.element
    target = f" {el.role} {json.dumps(el.name, ensure_ascii=False)}" if el is not None and el.name else ""
    text = f" {json.dumps(a.text, ensure_ascii=False)}" if a.text else ""
    key = f" {a.key}" if a.key else ""
    return f"{a.name}{target}{text}{key} (on {step.observation.url.split('//', 1)[-1].split('/', 1)[-1] or '/'})"


def prompt(evidence: Evidence, steps: list[Step], site: str) -> list[dict[str, Any]]:
    judge = evidence.judge.model_dump() if evidence.judge is not None else {}
    user = "\n".join([
        f"## Site\n{site}",
        "## Actions\n" + "\n".join(f"{i + 1}. {describe_step(s)}" for i, s in enumerate(steps)),
        f"## Evidence\n{evidence.summary}",
        f"## Check\n{json.dumps(judge, default=str)}",
        f"## Draft\n{evidence.instruction}",
    ])
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def checked_values(judge: Any) -> list[str]:
    """The text values a judge checks (every one must be named)."""
    out: list[str] = []
    if isinstance(judge, dict):
        for k, v in judge.items():
            if k in ("type", "mode", "path"):
                continue
            out += checked_values(v)
    elif isinstance(judge, list):
        for v in judge:
            out += checked_values(v)
    elif isinstance(judge, str) and judge.strip():
        out.append(judge)
    elif isinstance(judge, (int, float)) and not isinstance(judge, bool):
        out.append(str(judge))
    return out


def _fold(text: str) -> str:
    return " ".join(re.sub(r"[^\w#.@-]+", " ", text.lower()).split())


def names_all(instruction: str, evidence: Evidence) -> bool:
    """Whether the instruction names every value its judge checks (query
    strings count by their values). A question's answer is the value it asks
    for, not one it names: the instruction must leave it out."""
    spec = evidence.judge.model_dump() if evidence.judge is not None else {}
    got = _fold(instruction)
    answer = _answer(spec) if evidence.kind == "answer" else None
    if answer is not None and len(answer) >= 4 and _fold(answer) in got:
        return False
    for v in checked_values(spec):
        if v == answer:
            continue
        parts = [p.split("=", 1)[-1] for p in v.split("&")] if "=" in v else [v]
        for p in parts:
            if p and not p.startswith("/") and _fold(p) not in got:
                return False
    return True


def _answer(spec: dict[str, Any]) -> str | None:
    """The value an answer judge's string_match expects."""
    for j in [spec, *spec.get("judges", [])]:
        if j.get("type") == "string_match":
            return str(j.get("expected"))
    return None


class LLMWriter:
    """A Writer (synth.explore.propose): `await writer(evidence, steps, site)`."""

    def __init__(self, config: Any, cache_path: str | None = None) -> None:
        self.client = LLMClient(ClientConfig.from_config(config, cache_path=cache_path, max_tokens=120))
        self.used = self.fallbacks = 0

    async def __call__(self, evidence: Evidence, steps: list[Step], site: str) -> Written:
        try:
            reply = await self.client.chat(prompt(evidence, steps, site))
        except LLMError:
            self.fallbacks += 1
            return Written(evidence.instruction, "evidence(llm failed)")
        spent = (reply.tokens_in, reply.tokens_out, reply.cost_usd)
        text = reply.text.strip().strip('"').splitlines()[0].strip() if reply.text.strip() else ""
        if not text or not names_all(text, evidence):
            self.fallbacks += 1
            return Written(evidence.instruction, "evidence(llm left out a checked value)", *spent)
        self.used += 1
        return Written(text, f"llm:{self.client.config.model}", *spent)

    @property
    def cost_usd(self) -> float:
        return self.client.stats.cost_usd

    async def aclose(self) -> None:
        await self.client.aclose()
