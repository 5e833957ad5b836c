"""The instruction check: a model reads a proposal's instruction beside what
its segment did and says whether they agree.

The judge a proposal carries is derived from evidence, and the writer (a
model or the template-free one) words the task from the same evidence; what
neither can see is whether a person reading the instruction would do what
the trajectory did: an instruction that asks for more than the segment did,
or names a value the segment never touched, or leaves out a change the
segment made that the judge does not check. With an endpoint configured,
every proposal that passed its own end state is asked about; one the model
finds disagreeing, or whose check got no usable reply, is rejected with the
model's reason (`instruction check: ...`). The client is the bootstrap
source's (retries, reply cache, tokens and dollars), the reply format and its
repair turn the LLM judge's (`synth.llm_judge.ask_verdict`); what the check
spent is added to the segment's trajectory.
"""

from __future__ import annotations

import json
from typing import Any

from bootstrap.client import ClientConfig, LLMClient, LLMError
from synth.explore.llm import describe_step
from synth.explore.propose import Proposal
from synth.llm_judge import ask_verdict

MARKER = "<synth-explore-check>"
SYSTEM = (
    f"{MARKER}\nYou check training data for web agents. You are given an instruction and what a user did on a web "
    "site: the actions, the pages they were on and the evidence of the result. Decide whether a person given the "
    "instruction would do what these actions did: every thing the instruction asks is done by the actions, every "
    "value it names is the one used, and the actions make no change the instruction does not ask for. Reply with "
    'only a JSON object {"verdict": "pass" or "fail", "reason": "one sentence"}.'
)


def prompt(proposal: Proposal) -> list[dict[str, Any]]:
    assert proposal.task is not None
    steps = proposal.segment.steps
    user = "\n".join([
        f"## Site\n{proposal.site}",
        f"## Instruction\n{proposal.task.instruction}",
        "## Actions\n" + "\n".join(f"{i + 1}. {describe_step(s)}" for i, s in enumerate(steps)),
        f"## Evidence\n{proposal.evidence.summary}",
        f"## Answer\n{json.dumps(proposal.segment.answer)}" if proposal.segment.answer else "",
    ]).strip()
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


class InstructionCheck:
    """`await check(proposal)`: the proposal, rejected if the model finds its
    instruction and trajectory disagree or gives no usable verdict."""

    def __init__(self, config: Any, cache_path: str | None = None, repairs: int = 1) -> None:
        self.client = LLMClient(ClientConfig.from_config(config, cache_path=cache_path, max_tokens=200))
        self.repairs = repairs
        self.passed = self.failed = self.unusable = 0

    async def __call__(self, proposal: Proposal) -> Proposal:
        if proposal.status != "proposed" or proposal.task is None:
            return proposal
        try:
            asked = await ask_verdict(self.client.chat, prompt(proposal), self.repairs)
        except LLMError as e:
            self.unusable += 1
            return proposal.reject(f"instruction check: the endpoint failed: {e}")
        t = proposal.segment
        proposal.segment = t.model_copy(update={"tokens_in": t.tokens_in + asked.tokens_in, "tokens_out":
                                                t.tokens_out + asked.tokens_out, "cost_usd": t.cost_usd + asked.cost_usd})
        if asked.passed is None:
            self.unusable += 1
            return proposal.reject(f"instruction check: no usable verdict after {self.repairs + 1} replies: "
                                   f"{asked.problem}; last reply: {asked.shown()!r}")
        if asked.passed:
            self.passed += 1
            return proposal
        self.failed += 1
        return proposal.reject(f"instruction check: {self.client.config.model} finds they disagree: {asked.reason}")

    async def aclose(self) -> None:
        await self.client.aclose()
