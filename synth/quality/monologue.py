"""Inner monologue (Aguvis): an LLM writes, for each step of an accepted
trajectory that has none (solver and human steps), what the agent observed,
what it thought and the low-level instruction it followed, given the goal, the
previous actions and the ground-truth action with its screenshot.

A generated monologue is kept only if its low-level instruction agrees with
the action it explains (`consistent`): the same kind of act (a click is not
"type ...") and the same target (the element's name or the typed text appears
in it). Aguvis found 5.5% of generated reasoning misread the action's intent;
those are dropped here instead of being trained on. Dropping a monologue never
rejects the trajectory: its steps simply have no thought.

Replies are cached by the client (keyed by model and request) and the kept
monologues under `quality/monologue/`, so a re-run pays for nothing twice.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import jinja2
import pyarrow as pa

from synth import staging, storage
from synth.export.formats import StepView, describe, steps
from synth.schema import Monologue

PROMPT = Path(__file__).resolve().parent.parent.parent / "templates" / "prompts" / "inner_monologue.j2"
CACHE_SCHEMA = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("step_index", pa.int32()),
        ("observation", pa.string()),
        ("thought", pa.string()),
        ("low_level_instruction", pa.string()),
        ("consistent", pa.bool_()),
        ("model", pa.string()),
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
        ("cost_usd", pa.float64()),
    ]
)

_VERBS = {
    "click": r"click|press|select|choose|tap|open|check|uncheck|toggle|submit|expand|go to|follow",
    "double_click": r"double|click|open|select",
    "right_click": r"right|click|context",
    "hover": r"hover|move|point|mouse",
    "type": r"type|enter|write|fill|input|put|search",
    "press": r"press|hit|key|submit|enter",
    "scroll": r"scroll|move|page",
    "select": r"select|choose|pick|set",
    "drag": r"drag|move|slide",
    "navigate": r"go|open|navigate|visit",
    "go_back": r"back|return|previous",
    "answer": r"answer|respond|report|reply|say|state|submit",
    "done": r"done|finish|complete|stop|end",
}
_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"the", "a", "an", "to", "of", "in", "on", "and", "or", "for", "at", "with", "button", "link", "field"}


def consistent(low_level_instruction: str, view: StepView) -> bool:
    """Does the instruction describe this action (kind and target)?"""
    text = low_level_instruction.lower()
    if not text.strip() or not re.search(_VERBS.get(view.action.name, r"."), text):
        return False
    targets = []
    if view.action.name in ("type", "select", "answer") and view.action.text:
        targets.append(view.action.text)
    elif view.action.name == "press" and view.action.key:
        targets.append(view.action.key)
    elif view.element is not None and view.element.name.strip() and view.action.name not in ("scroll", "done"):
        targets.append(view.element.name)
    for target in targets:
        words = [w for w in _WORD.findall(target.lower()) if w not in _STOP]
        if words and not any(w in text for w in words):
            return False
    return True


@dataclass
class Generated:
    trajectory_id: str
    step_index: int
    monologue: Monologue
    consistent: bool
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclass
class MonologueCounts:
    steps: int = 0
    generated: int = 0
    cached: int = 0
    kept: int = 0
    dropped_inconsistent: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    errors: list[str] = field(default_factory=list)


@functools.cache
def _template() -> jinja2.Template:
    """The prompt, read and compiled once per process (it is rendered twice per step)."""
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(PROMPT.read_text())


def _render(part: str, **kw: Any) -> str:
    return _template().render(part=part, **kw).strip()


def messages(view: StepView) -> list[dict[str, Any]]:
    """The chat request for one step: system prompt, then the screenshot and
    the text (goal, previous actions in words, the ground-truth action)."""
    from synth.actions import to_aguvis

    target = None
    if view.element is not None and view.element.name.strip():
        target = f"{view.element.role or 'element'} '{' '.join(view.element.name.split())[:120]}'"
    text = _render(
        "user", goal=view.goal, previous=[describe(h) for h in view.history],
        action=f"{to_aguvis(view.action)}  ({describe(view)})", target=target,
    )
    content: list[dict[str, Any]] = []
    if view.png:
        url = "data:image/png;base64," + base64.b64encode(view.png).decode()
        content.append({"type": "image_url", "image_url": {"url": url}})
    content.append({"type": "text", "text": text})
    return [{"role": "system", "content": _render("system")}, {"role": "user", "content": content}]


def parse(text: str) -> Monologue:
    """The JSON object in a reply (a fenced block or bare); ValueError if none."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        raise ValueError("no JSON object in the reply")
    data = json.loads(match.group(0))
    if not isinstance(data, dict):
        raise ValueError("the reply's JSON is not an object")
    return Monologue(
        observation=str(data.get("observation", "")).strip(),
        thought=str(data.get("thought", "")).strip(),
        low_level_instruction=str(data.get("low_level_instruction", "")).strip(),
    )


class MonologueStore:
    """Kept and dropped monologues in the output, one Parquet file per batch (atomic)."""

    def __init__(self, folder: storage.Location) -> None:
        self.fs, self.folder = storage.resolve(folder)
        self.rows: dict[tuple[str, int], Generated] = {}
        for r in storage.read_parquet_rows(self.fs, self.folder):
            mono = Monologue(observation=r["observation"], thought=r["thought"],
                             low_level_instruction=r["low_level_instruction"])
            self.rows[(r["trajectory_id"], r["step_index"])] = Generated(
                r["trajectory_id"], r["step_index"], mono, r["consistent"], r["model"],
                r["tokens_in"], r["tokens_out"], r["cost_usd"],
            )

    def add(self, generated: list[Generated]) -> None:
        if not generated:
            return
        rows = [
            {"trajectory_id": g.trajectory_id, "step_index": g.step_index, **g.monologue.model_dump(),
             "consistent": g.consistent, "model": g.model, "tokens_in": g.tokens_in, "tokens_out": g.tokens_out,
             "cost_usd": g.cost_usd}
            for g in generated
        ]
        path = storage.join(self.folder, f"{uuid.uuid4().hex[:12]}.parquet")
        storage.write_parquet(self.fs, path, pa.Table.from_pylist(rows, schema=CACHE_SCHEMA))
        for g in generated:
            self.rows[(g.trajectory_id, g.step_index)] = g

    def kept(self) -> dict[str, dict[int, Monologue]]:
        out: dict[str, dict[int, Monologue]] = {}
        for (tid, index), g in self.rows.items():
            if g.consistent:
                out.setdefault(tid, {})[index] = g.monologue
        return out


async def _generate(client: Any, views: list[StepView], concurrency: int, counts: MonologueCounts) -> list[Generated]:
    gate = asyncio.Semaphore(concurrency)

    async def one(view: StepView) -> Generated | None:
        async with gate:
            try:
                reply = await client.chat(messages(view))
                mono = parse(reply.text)
            except Exception as e:  # noqa: BLE001 - a failed step keeps no monologue; the run goes on
                counts.failed += 1
                if len(counts.errors) < 5:
                    counts.errors.append(f"{view.sample_id}: {type(e).__name__}: {client.redact(str(e))[:200]}")
                return None
        counts.cached += reply.cached
        return Generated(view.traj["trajectory_id"], view.index, mono, consistent(mono.low_level_instruction, view),
                         reply.model or client.model, reply.tokens_in, reply.tokens_out, reply.cost_usd)

    results = await asyncio.gather(*(one(v) for v in views))
    return [g for g in results if g is not None]


def annotate(
    out_dir: storage.Location, accepted: Iterable[str], client_config: Any, concurrency: int = 8, batch: int = 64
) -> tuple[dict[str, dict[int, Monologue]], MonologueCounts]:
    """Monologues for the steps of `accepted` trajectories that have none;
    returns the kept ones by trajectory and step, and counts."""
    from bootstrap.client import LLMClient

    try:
        _render("system")
    except jinja2.TemplateError as e:
        raise ValueError(f"{PROMPT}: {type(e).__name__}: {e}") from None
    wanted = set(accepted)
    store = MonologueStore(storage.child(out_dir, "quality", "monologue"))
    client = LLMClient(client_config)
    counts = MonologueCounts()
    pending: list[StepView] = []

    def flush() -> None:
        fresh = asyncio.run(_generate(client, pending, concurrency, counts))
        store.add(fresh)
        counts.generated += len(fresh)
        counts.cost_usd += sum(g.cost_usd for g in fresh)
        pending.clear()

    for row in staging.iter_rows(storage.child(out_dir, "staging")):
        if row["trajectory_id"] not in wanted:
            continue
        wanted.discard(row["trajectory_id"])  # a twice-staged id once
        for view in steps(row):
            if view.monologue is not None or view.png is None:
                continue
            counts.steps += 1
            if (row["trajectory_id"], view.index) in store.rows:
                continue
            pending.append(view)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    kept = store.kept()
    counts.kept = sum(len(v) for v in kept.values())
    counts.dropped_inconsistent = sum(not g.consistent for g in store.rows.values())
    return kept, counts
