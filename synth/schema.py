"""The record every source writes: Task, Trajectory, Step, Action, Observation.

The pydantic models are what code passes around; the Arrow schemas below are
what lands on disk (staging and shards). They are written out by hand, not
inferred, so a field that is empty in one batch still has its type, and the
Parquet files of two runs always concatenate.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

ActionName = Literal[
    "click",
    "double_click",
    "right_click",
    "hover",
    "type",
    "press",
    "scroll",
    "drag",
    "select",
    "navigate",
    "go_back",
    "answer",
    "done",
]
POINTER_ACTIONS: frozenset[str] = frozenset(
    {"click", "double_click", "right_click", "hover", "drag", "select"}
)
SourceKind = str
"""A source's `kind`: synth's own (solver, bootstrap, human, recovery,
explore) or a plugin's (a `synth.sources` entry point), so not a closed set."""


def stable_id(*parts: Any, length: int = 16) -> str:
    """A short hex digest of JSON-encoded parts: the same inputs give the same id
    in every process and every run, which is what makes resume and dedup agree."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


class Box(BaseModel):
    """A rectangle in CSS pixels of the page's viewport."""

    model_config = ConfigDict(frozen=True)
    x: float
    y: float
    width: float
    height: float

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2

    def contains(self, x: float, y: float) -> bool:
        return self.x <= x <= self.x + self.width and self.y <= y <= self.y + self.height


class Element(BaseModel):
    """One node of the compact accessibility snapshot.

    `id` is stable for the life of a document (the same node keeps its id across
    steps), so an agent can refer to it and a checker can find it again.
    """

    id: int
    parent: int | None = None
    tag: str
    role: str
    name: str = ""
    name_from: str = ""
    """Where `name` comes from: "accname" (the accessible name, as the browser
    computes it), or synth's own where the browser names nothing:
    "hidden-label" (a field's own <label>, hidden by CSS), "nearby-label" (an
    unlabelled field named after the <label> just before it, which labels no
    other control), "text" (a text element's visible text); "" when there is
    no name, or in data recorded before this field."""
    value: str | None = None
    checked: bool | None = None
    focused: bool = False
    html_id: str = ""
    html_class: str = ""
    box: Box
    in_view: bool = True
    """Inside the observed area (the screenshot); off-screen ones need a scroll."""
    selector: str = ""

    def line(self) -> str:
        """One line of the text form of the snapshot, as an agent reads it."""
        parts = [f"[{self.id}] {self.role}"]
        if self.name:
            parts.append(json.dumps(self.name, ensure_ascii=False))
        elif self.html_class:
            parts.append("." + ".".join(self.html_class.split()[:2]))
        if self.value:
            parts.append(f"value={json.dumps(self.value, ensure_ascii=False)}")
        if self.checked is not None:
            parts.append("checked" if self.checked else "unchecked")
        if self.focused:
            parts.append("focused")
        if not self.in_view:
            parts.append("(off-screen)")
        return " ".join(parts)


class Observation(BaseModel):
    """What the agent sees before it acts.

    `area` is the part of the page the screenshot shows (the whole viewport, or a
    task's own area such as MiniWoB's 160x210 box); normalised coordinates are
    fractions of it.
    """

    url: str
    title: str = ""
    area: Box
    screenshot: bytes | None = None
    elements: list[Element] = Field(default_factory=list)

    def axtree(self) -> str:
        """The snapshot as indented text: parent/child nesting, one element a line."""
        depth: dict[int, int] = {}
        lines = []
        for el in self.elements:
            d = depth.get(el.parent, -1) + 1 if el.parent is not None else 0
            depth[el.id] = d
            lines.append("  " * d + el.line())
        return "\n".join(lines)

    def element(self, element_id: int) -> Element | None:
        return next((e for e in self.elements if e.id == element_id), None)

    def find_all(
        self,
        text: str | None = None,
        *,
        role: str | None = None,
        tag: str | None = None,
        html_id: str | None = None,
        html_class: str | None = None,
        exact: bool = True,
    ) -> list[Element]:
        """Elements matching every given criterion, in document order.

        `text` matches the accessible name (exactly, or as a case-insensitive
        substring when `exact=False`); `html_class` matches one class token."""
        found = []
        for el in self.elements:
            if role is not None and el.role != role:
                continue
            if tag is not None and el.tag != tag.lower():
                continue
            if html_id is not None and el.html_id != html_id:
                continue
            if html_class is not None and html_class not in el.html_class.split():
                continue
            if text is not None:
                if exact and el.name != text:
                    continue
                if not exact and text.lower() not in el.name.lower():
                    continue
            found.append(el)
        return found

    def find(self, text: str | None = None, **criteria: Any) -> Element:
        """The first element matching; raises LookupError naming the criteria."""
        found = self.find_all(text, **criteria)
        if not found:
            shown = {"text": text, **criteria} if text is not None else criteria
            raise LookupError(f"no element matches {shown} on {self.url}")
        return found[0]

    def normalise(self, x: float, y: float) -> tuple[float, float]:
        """Page CSS pixels to fractions of the observed area (4 decimals)."""
        return (
            round((x - self.area.x) / self.area.width, 4),
            round((y - self.area.y) / self.area.height, 4),
        )

    def denormalise(self, x: float, y: float) -> tuple[float, float]:
        return self.area.x + x * self.area.width, self.area.y + y * self.area.height


class Action(BaseModel):
    """One canonical action. Pointer coordinates are fractions of the observed
    area; `scroll` amounts are fractions of its size (positive `dy` scrolls down).
    `element_id` lets a caller aim at a snapshot element; BrowserEnv fills in the
    coordinates and the element actually under the point."""

    name: ActionName
    x: float | None = None
    y: float | None = None
    x2: float | None = None
    y2: float | None = None
    dx: float | None = None
    dy: float | None = None
    text: str | None = None
    key: str | None = None
    element_id: int | None = None


class Monologue(BaseModel):
    """Aguvis' inner monologue for one step."""

    observation: str = ""
    thought: str = ""
    low_level_instruction: str = ""


class AgentCall(BaseModel):
    """The model call behind one step of an LLM-driven episode, kept for audit:
    the request as text (images replaced by a placeholder, never their bytes or
    a key) and the reply exactly as it came."""

    model: str = ""
    request: str = ""
    reply: str = ""
    parse_error: str | None = None
    repaired: bool = False
    """True when the first reply did not parse and a repair turn was used."""
    cached: bool = False
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


class Review(BaseModel):
    """A reviewer's verdict on a trajectory (annotation UI)."""

    reviewer: str
    verdict: Literal["accept", "reject"]
    tags: list[str] = Field(default_factory=list)
    comment: str = ""
    reviewed_at: float = 0.0
    override_judge: bool = False
    """An accept of a trajectory its judge failed, given on purpose (with
    `override_reason`): the reviewer says the judge is wrong here."""
    override_reason: str = ""


class Step(BaseModel):
    index: int
    observation: Observation
    action: Action
    element: Element | None = None
    monologue: Monologue | None = None
    error: str | None = None
    duration_ms: float = 0.0
    waited_ms: float = 0.0
    """Time the actor chose to wait before this action (env.wait), so a
    replay can wait the same."""
    settle_ms: float = 0.0
    """Time spent waiting for the page to settle before this action's
    observation (BrowserEnv.settle): what the machine's load cost, not a choice."""
    settled: bool = True
    """Whether the page had settled when observed (False: the settle wait
    timed out, something kept moving or loading)."""
    agent: AgentCall | None = None
    role: Literal["normal", "mistake", "recovery"] = "normal"
    """A recovery variant's deliberate mistake and the steps that undo it
    (synth/recovery.py): a mistake is history in the SFT views, never a
    target, and no gate removes either as unnecessary."""
    reflection: str | None = None
    """On a recovery step: what went wrong and what undoes it, in words."""


class JudgeSpec(BaseModel):
    """A judge by registry name plus its parameters (expected values)."""

    model_config = ConfigDict(extra="allow")
    type: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Task(BaseModel):
    task_id: str
    template_id: str
    site: str
    instruction: str | None = None
    start_url: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    judge: JudgeSpec
    solver: str | None = None
    seed: int
    max_steps: int = 30
    difficulty: str | None = None


class Verdict(BaseModel):
    passed: bool
    score: float = 0.0
    reason: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    """What judging cost: an LLM judge's tokens and dollars (a cached reply's
    tokens, at no cost); 0 for a programmatic judge."""

    @field_validator("tokens_in", "tokens_out", "cost_usd", mode="before")
    @classmethod
    def _unrecorded(cls, v: Any) -> Any:
        return 0 if v is None else v  # rows written before verdicts had a cost


class Trajectory(BaseModel):
    # final_screenshot is PNG bytes: as JSON (a log line, a test's check
    # that no key leaked) it is base64, not text it cannot be
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    trajectory_id: str
    task_id: str
    template_id: str
    site: str
    seed: int
    source: SourceKind
    source_detail: str
    instruction: str
    start_url: str = ""
    final_url: str = ""
    task_config: str = ""
    """The Task as JSON (site, params, seed, judge, max_steps): with the steps'
    actions, targets and waits, what a replayer needs from the shards alone
    (`Task.model_validate_json`)."""
    steps: list[Step] = Field(default_factory=list)
    answer: str | None = None
    verdict: Verdict
    error: str | None = None
    status: Literal["accepted", "rejected"] = "rejected"
    reject_reason: str | None = None
    duplicate_of: str | None = None
    replay_passed: bool | None = None
    consistency_flags: list[str] = Field(default_factory=list)
    hinted: bool = False
    """The agent was given a privileged hint from the template (filter these
    out to train on unhinted behaviour only)."""
    review: Review | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    started_at: float = 0.0
    duration_s: float = 0.0
    run_id: str = ""
    synth_version: str = ""
    final_screenshot: bytes | None = None
    """The page after the last action (a step holds only the page before its
    action): the observation the env already took after it, for reviewers.
    In staging only, not in `data/`: no step's target, so no training sample."""


def trajectory_id(task_id: str, source: str, source_detail: str, attempt: int = 0) -> str:
    """Deterministic: the same task run by the same source gets the same id, so a
    resumed run cannot write a second copy of a trajectory it already made."""
    return stable_id("trajectory", task_id, source, source_detail, attempt)


# ---------------------------------------------------------------- Arrow schemas

BOX = pa.struct(
    [("x", pa.float32()), ("y", pa.float32()), ("width", pa.float32()), ("height", pa.float32())]
)
ELEMENT = pa.struct(
    [
        ("id", pa.int32()),
        ("parent", pa.int32()),
        ("tag", pa.string()),
        ("role", pa.string()),
        ("name", pa.string()),
        ("value", pa.string()),
        ("checked", pa.bool_()),
        ("focused", pa.bool_()),
        ("html_id", pa.string()),
        ("html_class", pa.string()),
        ("box", BOX),
        ("in_view", pa.bool_()),
        ("selector", pa.string()),
        ("name_from", pa.string()),
    ]
)
ACTION = pa.struct(
    [
        ("name", pa.string()),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("x2", pa.float32()),
        ("y2", pa.float32()),
        ("dx", pa.float32()),
        ("dy", pa.float32()),
        ("text", pa.string()),
        ("key", pa.string()),
        ("element_id", pa.int32()),
    ]
)
MONOLOGUE = pa.struct(
    [("observation", pa.string()), ("thought", pa.string()), ("low_level_instruction", pa.string())]
)
AGENT_CALL = pa.struct(
    [
        ("model", pa.string()),
        ("request", pa.string()),
        ("reply", pa.string()),
        ("parse_error", pa.string()),
        ("repaired", pa.bool_()),
        ("cached", pa.bool_()),
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
        ("cost_usd", pa.float64()),
    ]
)
REVIEW = pa.struct(
    [
        ("reviewer", pa.string()),
        ("verdict", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("comment", pa.string()),
        ("reviewed_at", pa.float64()),
        ("override_judge", pa.bool_()),
        ("override_reason", pa.string()),
    ]
)
VERDICT = pa.struct(
    [
        ("passed", pa.bool_()),
        ("score", pa.float64()),
        ("reason", pa.string()),
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
        ("cost_usd", pa.float64()),
    ]
)
"""The judge's verdict; tokens and cost are null in data written before judges had a cost."""
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
"""The Hugging Face `Image` feature's storage type."""

OBSERVATION = pa.struct(
    [
        ("url", pa.string()),
        ("title", pa.string()),
        ("area", BOX),
        ("screenshot", pa.binary()),
        ("elements", pa.list_(ELEMENT)),
    ]
)
STEP = pa.struct(
    [
        ("index", pa.int32()),
        ("observation", OBSERVATION),
        ("action", ACTION),
        ("element", ELEMENT),
        ("monologue", MONOLOGUE),
        ("error", pa.string()),
        ("duration_ms", pa.float32()),
        ("waited_ms", pa.float32()),
        ("settle_ms", pa.float32()),
        ("settled", pa.bool_()),
        ("agent", AGENT_CALL),
        ("role", pa.string()),
        ("reflection", pa.string()),
    ]
)

_TRAJECTORY_HEAD = [
    ("trajectory_id", pa.string()),
    ("task_id", pa.string()),
    ("template_id", pa.string()),
    ("site", pa.string()),
    ("seed", pa.int64()),
    ("source", pa.string()),
    ("source_detail", pa.string()),
    ("instruction", pa.string()),
    ("start_url", pa.string()),
    ("final_url", pa.string()),
    ("task_config", pa.string()),
]
_TRAJECTORY_TAIL = [
    ("answer", pa.string()),
    ("verdict", VERDICT),
    ("error", pa.string()),
    ("status", pa.string()),
    ("reject_reason", pa.string()),
    ("duplicate_of", pa.string()),
    ("replay_passed", pa.bool_()),
    ("consistency_flags", pa.list_(pa.string())),
    ("hinted", pa.bool_()),
    ("review", REVIEW),
    ("tokens_in", pa.int64()),
    ("tokens_out", pa.int64()),
    ("cost_usd", pa.float64()),
    ("started_at", pa.float64()),
    ("duration_s", pa.float64()),
    ("run_id", pa.string()),
    ("synth_version", pa.string()),
]

STAGING_SCHEMA = pa.schema(
    _TRAJECTORY_HEAD + [("steps", pa.list_(STEP))] + _TRAJECTORY_TAIL + [("final_screenshot", pa.binary())]
)
"""Staging: one row per trajectory, steps nested with their screenshots, and
the final page's (null in files written before it existed)."""

STEP_SUMMARY = pa.struct(
    [
        ("index", pa.int32()),
        ("url", pa.string()),
        ("action", ACTION),
        ("element", ELEMENT),
        ("monologue", MONOLOGUE),
        ("error", pa.string()),
        ("waited_ms", pa.float32()),
        ("settle_ms", pa.float32()),
        ("settled", pa.bool_()),
        ("role", pa.string()),
        ("reflection", pa.string()),
    ]
)
TRAJECTORIES_SCHEMA = pa.schema(
    _TRAJECTORY_HEAD
    + [("num_steps", pa.int32()), ("steps", pa.list_(STEP_SUMMARY))]
    + _TRAJECTORY_TAIL
)
"""`data/trajectories`: one row per trajectory; steps without images."""

STEPS_SCHEMA = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("task_id", pa.string()),
        ("template_id", pa.string()),
        ("site", pa.string()),
        ("source", pa.string()),
        ("status", pa.string()),
        ("instruction", pa.string()),
        ("step_index", pa.int32()),
        ("num_steps", pa.int32()),
        ("screenshot", IMAGE),
        ("url", pa.string()),
        ("title", pa.string()),
        ("area", BOX),
        ("axtree", pa.string()),
        ("elements", pa.list_(ELEMENT)),
        ("action", ACTION),
        ("action_text", pa.string()),
        ("element", ELEMENT),
        ("monologue", MONOLOGUE),
        ("error", pa.string()),
        ("waited_ms", pa.float32()),
        ("settle_ms", pa.float32()),
        ("settled", pa.bool_()),
        ("agent", AGENT_CALL),
        ("role", pa.string()),
        ("reflection", pa.string()),
    ]
)
"""`data/steps`: one row per step; the screenshot as a Hugging Face Image."""


def trajectories_to_table(trajectories: list[Trajectory]) -> pa.Table:
    """Trajectories (with images) as one staging table."""
    return pa.Table.from_pylist([t.model_dump() for t in trajectories], schema=STAGING_SCHEMA)


def trajectory_from_row(row: dict[str, Any]) -> Trajectory:
    return Trajectory.model_validate(row)
