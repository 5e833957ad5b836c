"""SFT exports: one training sample per recorded step, in each trainer's own shape.

`export()` (synth/export/shards.py) streams staging once and hands every
*accepted* trajectory to each format listed in `export.formats`; a format turns
it into samples written to `data/sft-<name>/`. A format is one registration
here: a name, a description (the dataset card shows it), an Arrow schema (or
none for JSONL) and `samples(trajectory_row) -> Iterator[dict]` (a `LeftOut`
in place of a step's sample when the format cannot express it: counted).

Every text comes from the recorded data: the task instruction, the step's
inner monologue when a generator filled it (or the thought a labeler wrote or
a solver stated with `env.click(el, why=...)`), the canonical action rendered
in the target's action syntax, and the target element's recorded role, name
and box. Every step has a low-level instruction: the monologue's, else one
written from the action and its element (`describe()`, e.g. "Click the
'Login' button.", "Type 'bob' into the 'Username' field."), so the planning
views (Aguvis' `all` turn, the `messages`/`openai` reply's text, CogAgent's
"Action:" line and history, Aguvis' "Previous actions") carry planning text
with the LLM monologue off, and nothing is invented beyond the record. Steps whose action failed (`error`) are left
out, as targets and as history: the action did nothing. A step without a
screenshot gives no sample (every format here needs the image) but stays in
the history of the next ones.

The formats and where their shapes come from (public sources, read for this):

`aguvis-grounding`, `aguvis-planning`: xlang-ai/aguvis `src/aguvis/constants.py`
  (the system messages, `user_instruction` "Please generate the next move
  according to the ui screenshot, instruction and previous actions. ...
  Previous actions:", `<image>`, the plugin-function JSON such as
  `browser.select_option`, and the chat template that writes
  `<|im_start|>assistant<|recipient|>{recipient}` and ends a turn with
  `<|diff_marker|>` when `end_turn` is true); `src/aguvis/dataset.py` (the
  data: `{"image": path or list, "conversations": [{"from": "system"|"human"|
  "gpt", "value", "recipient", "end_turn"}]}`; a first `system` turn replaces
  the default system message; images only in human turns, one per `<image>`;
  a gpt turn without recipient/end_turn defaults to `os`/true);
  `src/aguvis/serve/cli.py` (previous actions as "Step 1: ..." lines, "None"
  when empty; the `all` turn carries "Action: <low-level instruction>").
  Stage 1 (grounding): screenshot + instruction -> pyautogui call, one `os`
  turn. Stage 2 (planning): the goal and previous actions in the human turn,
  an `all` turn with "Observation: / Thought: / Action: <low-level
  instruction>" when the step has a monologue (`end_turn` false), then the
  `os` turn with the call (`end_turn` true).
`cogagent`: THUDM/CogAgent `README_en.md` (the query
  f"Task: {task}{history}\\n{platform}{format}" with history
  "\\nHistory steps: " + "\\n{i}. {grounded_op}\\t{action}" from 0, platform
  "(Platform: WIN)" / Mac / Mobile, "(Answer in Action-Operation-Sensitive
  format.)"; the reply "Action: ...\\nGrounded Operation: ...\\n<<一般操作>>"
  with `<<敏感操作>>` for sensitive operations), `Action_space_en.md` (the
  operations, 0-999 boxes whose centre is where to act, `element_info`; only
  those are written: going back is Alt+Left, an answer is `QUOTE_TEXT` of the
  element showing it, and a step they cannot say (a select: the opened list
  is on no screenshot; a drag) is left out with the steps after it, counted
  as `LeftOut`),
  `finetune/README.md` (fine-tune data: `messages` user/assistant, one image
  per sample, `<<END>>` after the task's last action, "the complete process":
  a final `done` is no sample of its own), `inference/cli_demo.py`
  (the same prompt assembly). Stored as `messages` + `images`, the ms-swift
  shape; the user text has no `<image>` tag, as CogAgent's own data has none
  (ms-swift's `Template._add_default_tags` prepends missing tags).
`messages`: modelscope/ms-swift `docs/source_en/Customization/Custom-dataset.md`
  (`{"messages": [{"role", "content"}], "images": [...]}`, `<image>` where each
  image goes, system optional) and hiyouga/LLaMA-Factory `data/README.md`
  (sharegpt formatting with `tags` role/content/user/assistant/system, an
  `images` column, as many images as `<image>` tokens) with
  `src/llamafactory/data/loader.py` (a `file_name` folder is read whole and
  all its files must have one type, so `dataset_info.json` cannot sit inside
  `data/sft-messages/`: export writes it at the dataset root, the
  `dataset_dir`, with `file_name: data/sft-messages`).
`openai`: OpenAI's vision fine-tuning guide
  (developers.openai.com/api/docs/guides/vision-fine-tuning: chat-format JSONL,
  one `{"messages": [...]}` per line, images as `image_url` content parts
  holding an HTTP URL or a base64 data URL, only in user messages).
"""

from __future__ import annotations

import ast
import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

from synth.actions import (
    COGAGENT_END,
    COGAGENT_FULL_BOX,
    COGAGENT_GENERAL,
    COGAGENT_SENSITIVE,
    ActionParseError,
    from_aguvis,
    from_cogagent,
    point_box,
    split_cogagent,
    to_aguvis,
    to_cogagent,
)
from synth.plugins import Registry
from synth.schema import IMAGE, POINTER_ACTIONS, Action, Box, Element, Monologue

# ---------------------------------------------------------------- prompts

GROUNDING_SYSTEM = (
    "You are a GUI agent. You are given a task and a screenshot of the screen. "
    "You need to perform a series of pyautogui actions to complete the task."
)
"""Aguvis' `grounding_system_message`, word for word."""

_PLUGINS = [
    {
        "name": "browser.select_option",
        "description": "Select an option from a dropdown menu",
        "parameters": {
            "type": "object",
            "properties": {
                "x": {"type": "number", "description": "The x coordinate of the dropdown menu"},
                "y": {"type": "number", "description": "The y coordinate of the dropdown menu"},
                "value": {"type": "string", "description": "The value of the option to select"},
            },
            "required": ["x", "y", "value"],
        },
    },
    {
        "name": "browser.goto",
        "description": "Open a URL in the current tab",
        "parameters": {
            "type": "object",
            "properties": {"url": {"type": "string", "description": "The URL to open"}},
            "required": ["url"],
        },
    },
    {"name": "browser.back", "description": "Go back to the previous page"},
    {
        "name": "answer",
        "description": "Give the answer the task asks for; this ends the task",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string", "description": "The answer"}},
            "required": ["text"],
        },
    },
    {
        "name": "terminate",
        "description": "End the task once it is done",
        "parameters": {
            "type": "object",
            "properties": {"status": {"type": "string", "description": "success"}},
            "required": ["status"],
        },
    },
]
AGENT_SYSTEM = (
    GROUNDING_SYSTEM
    + "\n\nYou have access to the following functions:\n"
    + "".join(f"- {json.dumps(f)}\n" for f in _PLUGINS)
)
"""Aguvis' `agent_system_message` shape with the web functions synth's action
space adds to pyautogui (its `select_option_func` is Aguvis' own)."""

PLANNING_USER = (
    "Please generate the next move according to the ui screenshot, instruction and previous actions.\n\n"
    "Instruction: {overall_goal}\n\n"
    "Previous actions:\n{previous_actions}\n"
)
"""Aguvis' `user_instruction`, word for word."""

COGAGENT_PLATFORM = "WIN"
"""CogAgent knows WIN, Mac and Mobile; a desktop Chromium page is closest to WIN
(and the key names follow its Windows column)."""
COGAGENT_FORMAT = "(Answer in Action-Operation-Sensitive format.)"

SENSITIVE = re.compile(
    r"\b(send|submit|pay|pay now|purchase|buy|buy now|place order|order now|check ?out|delete|remove|"
    r"confirm|transfer|post|publish)\b",
    re.I,
)
"""Element names that make a click a sensitive operation (CogAgent's <<敏感操作>>):
it sends, submits, pays, orders, deletes or confirms something."""

# ---------------------------------------------------------------- steps


@dataclass
class StepView:
    """One recorded step, parsed once, with the steps before it."""

    traj: dict[str, Any]
    index: int
    action: Action
    element: Element | None
    area: Box
    monologue: Monologue | None
    png: bytes | None
    history: list["StepView"]
    elements: list[dict[str, Any]]
    """The observation's elements as recorded (parsed only where needed)."""

    @property
    def sample_id(self) -> str:
        return f"{self.traj['trajectory_id']}-{self.index:03d}"

    @property
    def goal(self) -> str:
        return self.traj["instruction"]

    @property
    def image(self) -> dict[str, Any]:
        return {"bytes": self.png, "path": f"{self.sample_id}.png"}

    @property
    def screen(self) -> tuple[float, float]:
        return self.area.width, self.area.height


def steps(traj: dict[str, Any]) -> Iterator[StepView]:
    """The trajectory's steps that can be training targets, each with its
    history (the earlier steps that did something). Failed steps are skipped;
    a recovery variant's mistake steps are in the history of the steps after
    them but are no target themselves (the model learns the recovery, not the
    mistake: synth/recovery.py)."""
    history: list[StepView] = []
    for s in traj["steps"]:
        if s.get("error"):
            continue
        obs = s["observation"]
        mono = s.get("monologue")
        view = StepView(
            traj=traj,
            index=s["index"],
            action=Action.model_validate(s["action"]),
            element=Element.model_validate(s["element"]) if s.get("element") else None,
            area=Box.model_validate(obs["area"]),
            monologue=Monologue.model_validate(mono) if mono and any(mono.values()) else None,
            png=obs.get("screenshot"),
            history=list(history),
            elements=obs.get("elements") or [],
        )
        history.append(view)
        if s.get("role") != "mistake":  # a recovery variant's mistake: history for what follows, never a target
            yield view


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_VAGUE_ROLES = {"", "generic", "none", "presentation", "group", "section"}
_NOUNS = {
    "textbox": "field", "searchbox": "search field", "combobox": "list", "listbox": "list",
    "menuitem": "menu item", "radio": "radio button", "spinbutton": "field", "gridcell": "cell",
    "columnheader": "column header", "rowheader": "row header", "img": "image",
}
"""A person's word for an accessibility role ('Type into the Username field')."""


def _phrase(el: Element | None, at: str = "") -> str:
    """"the 'Submit' button", "the field", "the element at the top left"."""
    if el is None:
        return ""
    noun = "element" if el.role in _VAGUE_ROLES else _NOUNS.get(el.role, el.role)
    if el.name.strip():
        return f"the '{_short(el.name)}' {noun}"
    return f"the {noun} {at}" if noun == "element" and at else f"the {noun}"


def _spot(x: float | None, y: float | None) -> str:
    """Where a point is, in a person's words ("the top left", "the middle"):
    a plan that gave the coordinates would give the action away."""
    if x is None or y is None:
        return ""
    row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else ""
    col = "left" if x < 1 / 3 else "right" if x > 2 / 3 else ""
    return " ".join(["the", *filter(None, (row, col))]) if row or col else "the middle"


def _region(x: float | None, y: float | None) -> str:
    spot = _spot(x, y)
    return "" if not spot else ("in " if spot == "the middle" else "at ") + spot


def describe(view: StepView) -> str:
    """The step in words, from the action and its element only (no model):
    the low-level instruction every step gets when it has no monologue
    ("Click the 'Login' button.", "Type 'bob' into the 'Username' field.")."""
    a, el = view.action, view.element
    at = _region(a.x, a.y)
    target = _phrase(el, at)
    verbs = {"click": "Click", "double_click": "Double-click", "right_click": "Right-click", "hover": "Hover over"}
    if a.name in verbs:
        return f"{verbs[a.name]} {target or at}."
    if a.name == "type":
        return f"Type '{_short(a.text or '')}'" + (f" into {target}." if target else ".")
    if a.name == "press":
        return f"Press {a.key}."
    if a.name == "scroll":
        if a.dx:
            direction = "right" if a.dx > 0 else "left"
        else:
            direction = "down" if (a.dy or 0) > 0 else "up"
        return f"Scroll {direction}" + (f" in {target}." if target else ".")
    if a.name == "drag":
        return f"Drag {target or 'from ' + _spot(a.x, a.y)} to {_spot(a.x2, a.y2) or 'another place'}."
    if a.name == "select":
        return f"Select '{_short(a.text or '')}' in {target or 'the list ' + at}."
    if a.name == "navigate":
        return f"Go to {a.text}."
    if a.name == "go_back":
        return "Go back to the previous page."
    if a.name == "answer":
        return f"Answer '{_short(a.text or '')}'."
    return "The task is complete."


def instruction(view: StepView) -> str:
    """The step's low-level instruction: the monologue's, else `describe()`."""
    if view.monologue and view.monologue.low_level_instruction.strip():
        return " ".join(view.monologue.low_level_instruction.split())
    return describe(view)


def thought_text(view: StepView) -> str:
    """The step's planning text, Aguvis' inner-monologue shape: the
    monologue's Observation and Thought when it has them (an LLM's, a
    labeler's, or the intent a solver stated with `why=`), then always
    "Action: <low-level instruction>" (the monologue's, else `describe()`), so
    every step has planning text with the LLM monologue off."""
    m = view.monologue
    lines = [
        f"{label}: {' '.join(value.split())}"
        for label, value in (("Observation", m.observation if m else ""), ("Thought", m.thought if m else ""))
        if value.strip()
    ]
    return "\n".join([*lines, f"Action: {instruction(view)}"])


def previous_actions(view: StepView) -> str:
    return "\n".join(f"Step {i}: {instruction(h)}" for i, h in enumerate(view.history, 1)) or "None"


def planning_prompt(view: StepView) -> str:
    return PLANNING_USER.format(overall_goal=view.goal, previous_actions=previous_actions(view))


# ---------------------------------------------------------------- CogAgent


def _grid_box(el: Element, area: Box) -> tuple[int, int, int, int] | None:
    """An element's box in CogAgent's 0-999 units (fractions of the observed
    area times 1000, clipped to the screenshot); None if nothing of it shows."""

    def frac(v: float, origin: float, size: float) -> float:
        return min(1.0, max(0.0, (v - origin) / size))

    x1, x2 = frac(el.box.x, area.x, area.width), frac(el.box.x + el.box.width, area.x, area.width)
    y1, y2 = frac(el.box.y, area.y, area.height), frac(el.box.y + el.box.height, area.y, area.height)
    if x2 <= x1 or y2 <= y1:
        return None
    return min(999, round(x1 * 1000)), min(999, round(y1 * 1000)), min(999, round(x2 * 1000)), min(999, round(y2 * 1000))


def element_box(view: StepView) -> tuple[int, int, int, int] | None:
    """The step's element box in CogAgent's 0-999 units; None if it has none."""
    return _grid_box(view.element, view.area) if view.element is not None else None


def centred_box(box: tuple[int, int, int, int] | None, x: float | None, y: float | None) -> tuple[int, int, int, int]:
    """The largest part of the element's 0-999 box centred on the recorded point:
    CogAgent acts at a box's centre, so the centre must be the point the
    recording acted on (a date field clicked at its left end stays clicked
    there), and the box stays on the element. A point outside the element's box
    (or no box) gets a small box around the point."""
    px, py = round(float(x or 0.0) * 1000), round(float(y or 0.0) * 1000)
    if box is None or not (box[0] <= px <= box[2] and box[1] <= py <= box[3]):
        return point_box(x, y)
    px, py = min(px, 999), min(py, 999)
    # at least 2 units wide each side, but never past the screen's edge
    hx = min(max(2, min(px - box[0], box[2] - px)), px, 999 - px)
    hy = min(max(2, min(py - box[1], box[3] - py)), py, 999 - py)
    return px - hx, py - hy, px + hx, py + hy


def cogagent_box(view: StepView) -> tuple[int, int, int, int] | None:
    """Where the operation acts: for pointer actions the element's box narrowed
    to be centred on the recorded point (`centred_box`); for typing, the focused
    element or the whole screen; for a scroll at a point, a box around it."""
    a, box = view.action, element_box(view)
    if a.name in POINTER_ACTIONS:
        return centred_box(box, a.x, a.y)
    if a.name == "type":
        return box or COGAGENT_FULL_BOX
    if a.name == "scroll" and a.x is not None and a.y is not None:
        return centred_box(box, a.x, a.y)
    return None


def element_info(view: StepView) -> str | None:
    if view.action.name not in POINTER_ACTIONS | {"type", "scroll"}:
        return None
    el = view.element
    if el is None:
        return "[None]"
    return _short(el.name) if el.name.strip() else f"[{el.role or el.tag}]"


COGAGENT_OPERATIONS = frozenset({
    "CLICK", "DOUBLE_CLICK", "RIGHT_CLICK", "HOVER", "TYPE", "SCROLL_UP", "SCROLL_DOWN", "SCROLL_LEFT",
    "SCROLL_RIGHT", "KEY_PRESS", "GESTURE", "LAUNCH", "QUOTE_TEXT", "QUOTE_CLIPBOARD", "LLM", "END",
})
"""The operations THUDM/CogAgent's `Action_space_en.md` documents (KEY_DOWN,
KEY_PRESS and KEY_UP also appear inside a GESTURE)."""
COGAGENT_ANSWER = "__CogName_Answer__"
"""The variable an answer is quoted into (`QUOTE_TEXT(..., output=...)`)."""
GO_BACK_KEYS = "Alt+ArrowLeft"
"""Going back as a person does it on Windows: CogAgent's space has no Back."""


class NotExpressible(ValueError):
    """A step CogAgent's documented operations cannot say; the message is the
    reason counted in the manifest."""


@dataclass(frozen=True)
class LeftOut:
    """What a format's `samples` yields for a step it leaves out instead of a
    sample; the export counts them by `reason` (manifest `sft_left_out`)."""

    reason: str


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def answer_element(view: StepView) -> Element | None:
    """The element on the screenshot that shows the answer (its name or value
    holds the answer's text), the smallest such; None if none does."""
    want = _norm(view.action.text or "")
    if not want:
        return None
    found = []
    for raw in view.elements:
        el = Element.model_validate(raw)
        shown = _norm(el.name) if want in _norm(el.name) else _norm(el.value or "")
        if want in shown and el.in_view and el.box.width > 0 and el.box.height > 0:
            found.append(el)
    return min(found, key=lambda e: e.box.width * e.box.height, default=None)


def quote_answer(view: StepView) -> str:
    """An answer as CogAgent marks one: `QUOTE_TEXT` of the element showing
    it, with the answer as its `result` (Action_space_en.md's quoting)."""
    el = answer_element(view)
    box = _grid_box(el, view.area) if el else None
    if el is None or box is None:
        raise NotExpressible("answer not shown on the screenshot")
    return (
        f"QUOTE_TEXT(box=[[{','.join(map(str, box))}]], element_type='Text', element_info={_short(el.name or el.value or '')!r}, "
        f"output={COGAGENT_ANSWER!r}, result={view.action.text or ''!r})"
    )


def cogagent_operation(view: StepView) -> str:
    """The step as one of CogAgent's documented operations; NotExpressible for
    what they cannot say. A selection takes the clicks a person makes (the list,
    then the option in the opened list), but the opened list is on no recorded
    screenshot, so the option's click has no box; a drag has no operation."""
    n = view.action.name
    if n == "select":
        raise NotExpressible("select: the opened list is on no screenshot")
    if n == "drag":
        raise NotExpressible("drag: no CogAgent operation")
    if n == "go_back":
        return to_cogagent(Action(name="press", key=GO_BACK_KEYS))
    if n == "answer":
        return quote_answer(view)
    return to_cogagent(view.action, box=cogagent_box(view), element_info=element_info(view), screen=view.screen)


def parse_cogagent_operation(text: str, screen: tuple[float, float] | None = None) -> Action:
    """A CogAgent operation (or reply) back to a canonical action: an answer's
    QUOTE_TEXT to `answer`, the rest by `synth.actions.from_cogagent` (going
    back comes back as the keys that do it)."""
    op = split_cogagent(text)["operation"] or ""
    if op.startswith("QUOTE_TEXT("):
        result = re.search(r"result=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\)?$", op)
        if f"output={COGAGENT_ANSWER!r}" not in op or result is None:
            raise ActionParseError(f"QUOTE_TEXT is an answer only with output={COGAGENT_ANSWER!r} and a result: {op!r}")
        return Action(name="answer", text=ast.literal_eval(result.group(1)))
    return from_cogagent(op, screen=screen)


def sensitive(view: StepView) -> bool:
    el = view.element
    return view.action.name in ("click", "double_click") and el is not None and bool(SENSITIVE.search(el.name))


def cogagent_marker(view: StepView, last: bool) -> str:
    """<<END>> after the task's last action (CogAgent's finetune data marks the
    end there, with no END() step of its own), else the sensitivity."""
    if last:
        return COGAGENT_END
    return COGAGENT_SENSITIVE if sensitive(view) else COGAGENT_GENERAL


def cogagent_query(view: StepView, history: list[str]) -> str:
    """`history`: "<operation>\t<low-level instruction>" of the earlier steps."""
    lines = "".join(f"\n{i}. {line}" for i, line in enumerate(history))
    return f"Task: {view.goal}\nHistory steps: {lines}\n(Platform: {COGAGENT_PLATFORM})\n{COGAGENT_FORMAT}\n"


def cogagent_reply(view: StepView, operation: str, last: bool) -> str:
    return f"Action: {instruction(view)}\nGrounded Operation: {operation}\n{cogagent_marker(view, last)}"


# ---------------------------------------------------------------- chat replies

_FENCE = re.compile(r"```python\n(.*?)\n```", re.S)


def chat_reply(view: StepView) -> str:
    """The assistant turn of the `messages` and `openai` formats: the planning
    text (`thought_text`), then the Aguvis call in a python code block."""
    return f"{thought_text(view)}\n```python\n{to_aguvis(view.action)}\n```"


def parse_chat_reply(text: str) -> Action:
    """The action of a `messages`/`openai` reply (the last python code block)."""
    found = _FENCE.findall(text)
    if not found:
        raise ActionParseError("no ```python code block with the action in the reply")
    return from_aguvis(found[-1])


# ---------------------------------------------------------------- the formats


@dataclass(frozen=True)
class SFTFormat:
    name: str
    description: str
    samples: Callable[[dict[str, Any]], Iterator[dict[str, Any] | LeftOut]]
    schema: pa.Schema | None = None
    """Arrow schema of a Parquet config; None for a JSONL config."""
    image_columns: tuple[str, ...] = ()

    @property
    def config(self) -> str:
        return f"sft-{self.name}"

    @property
    def extension(self) -> str:
        return "parquet" if self.schema is not None else "jsonl"

    @property
    def data_files(self) -> str:
        return f"data/{self.config}/train-*.{self.extension}"


FORMATS: Registry[SFTFormat] = Registry("SFT format", "synth.formats")
"""SFT views by name; a package adds one with `register(SFTFormat(...))` in a
module it declares as a `synth.formats` entry point (see `synth.plugins`)."""


def register(fmt: SFTFormat) -> SFTFormat:
    return FORMATS.register(fmt.name, fmt)


def check_names(names: Iterable[str]) -> list[str]:
    """The names, in order without repeats; a name not registered raises
    ValueError naming the known ones."""
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ValueError("; ".join(FORMATS.unknown(n) for n in unknown))
    return names


def sample_bytes(row: dict[str, Any]) -> int:
    """Rough size of a sample (image bytes plus text), for row-group sizing."""
    size = 256
    for v in row.values():
        if isinstance(v, dict) and isinstance(v.get("bytes"), bytes):
            size += len(v["bytes"])
        elif isinstance(v, list):
            size += sum(
                len(x["bytes"]) if isinstance(x, dict) and isinstance(x.get("bytes"), bytes)
                else len(json.dumps(x, ensure_ascii=False, default=str))
                for x in v
            )
        elif isinstance(v, str):
            size += len(v)
    return size


_META = [
    ("id", pa.string()),
    ("trajectory_id", pa.string()),
    ("step_index", pa.int32()),
    ("template_id", pa.string()),
    ("source", pa.string()),
]
TURN = pa.struct([("from", pa.string()), ("value", pa.string()), ("recipient", pa.string()), ("end_turn", pa.bool_())])
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
AGUVIS_SCHEMA = pa.schema([("image", IMAGE), ("conversations", pa.list_(TURN))] + _META)
MESSAGES_SCHEMA = pa.schema([("messages", pa.list_(MESSAGE)), ("images", pa.list_(IMAGE))] + _META)


def _meta(view: StepView) -> dict[str, Any]:
    t = view.traj
    return {
        "id": view.sample_id,
        "trajectory_id": t["trajectory_id"],
        "step_index": view.index,
        "template_id": t["template_id"],
        "source": t["source"],
    }


def _turn(frm: str, value: str, recipient: str | None = None, end_turn: bool | None = None) -> dict[str, Any]:
    return {"from": frm, "value": value, "recipient": recipient, "end_turn": end_turn}


def _with_image(traj: dict[str, Any]) -> Iterator[StepView]:
    return (v for v in steps(traj) if v.png)


def aguvis_grounding(traj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for v in _with_image(traj):
        lli = v.monologue.low_level_instruction.strip() if v.monologue else ""
        yield {
            "image": v.image,
            "conversations": [
                _turn("system", GROUNDING_SYSTEM),
                _turn("human", "<image>" + (lli or v.goal)),
                _turn("gpt", to_aguvis(v.action), "os", True),
            ],
            **_meta(v),
        }


def aguvis_planning(traj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for v in _with_image(traj):
        turns = [_turn("system", AGENT_SYSTEM), _turn("human", "<image>" + planning_prompt(v))]
        turns.append(_turn("gpt", thought_text(v), "all", False))
        turns.append(_turn("gpt", to_aguvis(v.action), "os", True))
        yield {"image": v.image, "conversations": turns, **_meta(v)}


def cogagent(traj: dict[str, Any]) -> Iterator[dict[str, Any] | LeftOut]:
    """One sample per acting step. The task's last action ends with <<END>>
    (an accepted trajectory is a complete one, with or without a final `done`,
    which gives no sample of its own). From the first step CogAgent cannot
    express on, the steps are left out (their history would hold it)."""
    acting = [v for v in steps(traj) if v.action.name != "done"]
    history: list[str] = []
    blocked = ""
    for i, v in enumerate(acting):
        if blocked:
            reason = "after a step CogAgent cannot express"
        else:
            try:
                op = cogagent_operation(v)
            except NotExpressible as e:
                blocked = reason = str(e)
        if blocked:
            if v.png:
                yield LeftOut(reason)
            continue
        last = i == len(acting) - 1
        if v.png:
            yield {
                "messages": [
                    {"role": "user", "content": cogagent_query(v, history)},
                    {"role": "assistant", "content": cogagent_reply(v, op, last)},
                ],
                "images": [v.image],
                **_meta(v),
            }
        history.append(f"{op}\t{instruction(v)}")


def messages(traj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for v in _with_image(traj):
        yield {
            "messages": [
                {"role": "system", "content": AGENT_SYSTEM},
                {"role": "user", "content": "<image>" + planning_prompt(v)},
                {"role": "assistant", "content": chat_reply(v)},
            ],
            "images": [v.image],
            **_meta(v),
        }


def openai(traj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for v in _with_image(traj):
        url = "data:image/png;base64," + base64.b64encode(v.png).decode("ascii")
        yield {
            "messages": [
                {"role": "system", "content": AGENT_SYSTEM},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": planning_prompt(v)},
                    ],
                },
                {"role": "assistant", "content": chat_reply(v)},
            ]
        }


register(SFTFormat(
    "aguvis-grounding",
    "Aguvis stage 1 (grounding): per step, the screenshot and an instruction (the step's low-level "
    "instruction when it has a monologue, else the task) -> one `os` turn with the pyautogui call. "
    "Columns `image`, `conversations` [{from, value, recipient, end_turn}] as in xlang-ai/aguvis.",
    aguvis_grounding, AGUVIS_SCHEMA, ("image",),
))
register(SFTFormat(
    "aguvis-planning",
    "Aguvis stage 2 (planning): per step, the screenshot, the task and the previous actions -> an `all` "
    "turn with the planning text (the monologue's Observation/Thought when there is one, then always "
    "Action: <low-level instruction>) and an `os` turn with the pyautogui call.",
    aguvis_planning, AGUVIS_SCHEMA, ("image",),
))
register(SFTFormat(
    "cogagent",
    "CogAgent-9B fine-tuning: `messages` (user: Task, History steps, Platform, Action-Operation-Sensitive "
    "format line; assistant: Action, Grounded Operation with a 0-999 box and element_info, and "
    "<<一般操作>>/<<敏感操作>>, or <<END>> after the task's last action) plus `images` (one screenshot). "
    "Only CogAgent's documented operations: steps they cannot express (a select, a drag) are left out "
    "with the steps after them (counted in the manifest's `sft_left_out`).",
    cogagent, MESSAGES_SCHEMA, ("images",),
))
register(SFTFormat(
    "messages",
    "ms-swift / LLaMA-Factory: `messages` (system, user with an `<image>` tag, assistant with the "
    "monologue if any and the pyautogui call in a python code block) plus `images`; "
    "`dataset_info.json` at the dataset root registers it for LLaMA-Factory as `synth_messages`.",
    messages, MESSAGES_SCHEMA, ("images",),
))
register(SFTFormat(
    "openai",
    "OpenAI chat fine-tuning JSONL: `messages` with the screenshot as a base64 PNG data URL in the user "
    "turn and the same assistant reply as `messages`.",
    openai,
))

LLAMAFACTORY_DATASET = "synth_messages"


def llamafactory_dataset_info() -> dict[str, Any]:
    """The `dataset_info.json` entry LLaMA-Factory needs for `data/sft-messages`
    (put at the dataset root; set LLaMA-Factory's `dataset_dir` to that root)."""
    return {
        LLAMAFACTORY_DATASET: {
            "file_name": "data/sft-messages",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
    }
