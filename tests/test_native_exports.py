"""Native exports read the way each trainer's own code reads them.

The readers here restate, in this project's words, what the loading code of
the two projects does with the files (read for this, not copied):

Aguvis (xlang-ai/aguvis `src/aguvis/dataset.py`, `data/stage*.yaml`,
`scripts/train.sh`, `src/aguvis/constants.py`): `--data_path` is a YAML whose
`datasets` entries name a `json_path` (opened as written, from the working
directory; `.json` is one JSON list) and an `images_folder`; a sample's `image`
(a name or a list) is joined as `--image_folder / images_folder / image` and
opened by PIL (qwen_vl_utils for a local path). A first `system` turn replaces
the system message; `human`/`gpt` become user/assistant; each `<image>` in a
user turn takes the next image, and only user turns may hold one; an assistant
turn renders `<|im_start|>assistant<|recipient|>{recipient}` (when the key
exists; its default is `os`) and ends with `<|diff_marker|>` when `end_turn`
(default true), else `<|im_end|>`.

CogAgent (THUDM/CogAgent `finetune/finetune.py`, `finetune/configs/*.yaml`,
`app/client.py`): the config's `train_file`/`val_file`/`test_file` must end in
`.jsonl` and are loaded with `load_dataset(<data dir>, data_files=...)`; per
row, `messages[len-2]['image']` is opened with PIL from the working directory
and the image put on `messages[0]`, then `messages[len-2]['image']` is set to
None (in that order); user turns are context, assistant turns the target. The
client reads `Grounded Operation:\\s*(.*)`, splits the operation name at its
first `(` and the box from `box=[[a,b,c,d]]` as integers.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import pytest_asyncio
import yaml
from datasets import load_dataset
from PIL import Image
from typer.testing import CliRunner

from solvers.miniwob import quoted
from synth import staging
from synth.actions import COGAGENT_END, from_aguvis, split_cogagent
from synth.cli import app
from synth.config import ExportConfig
from synth.env import BrowserEnv
from synth.episode import run_episode
from synth.export import formats as sft
from synth.export.card import card, manifest
from synth.export.native import write_native
from synth.export.shards import export
from synth.schema import Action, Box, Element, Step, Trajectory
from synth.solver import get_solver
from synth.sites import miniwob

TASKS = [("login-user", 0), ("choose-list", 1), ("click-button", 4), ("social-media", 3)]
WHY = "The task names this button."


async def click_with_intent(env: BrowserEnv, obs) -> None:
    """click-button, stating its intent as a solver may (`why=`)."""
    (label,) = quoted(env.instruction)
    await env.click(obs.find(label, role="button"), why=WHY)


@pytest_asyncio.fixture(scope="module")
async def recorded(browser, miniwob_site) -> dict[str, Trajectory]:
    env = BrowserEnv(browser, miniwob_site)
    out = {}
    try:
        for name, seed in TASKS:
            out[name] = await run_episode(
                env, miniwob.make_task(name, seed), get_solver(f"miniwob.{name}"), source="solver", source_detail=name
            )
        out["intent"] = await run_episode(
            env, miniwob.make_task("click-button", 7), click_with_intent, source="solver", source_detail="intent"
        )
    finally:
        await env.close()
    assert all(t.status == "accepted" for t in out.values()), {k: t.reject_reason for k, t in out.items()}
    return out


def _then(t: Trajectory, tid: str, *actions: Action) -> Trajectory:
    """A copy of `t` that goes on with `actions`, each on the last screenshot."""
    copy = t.model_copy(deep=True, update={"trajectory_id": tid})
    last = copy.steps[-1].observation
    for a in actions:
        copy.steps.append(Step(index=len(copy.steps), observation=last.model_copy(deep=True), action=a))
    return copy


def _shown(t: Trajectory) -> str:
    """A text some element shows on the trajectory's last screenshot."""
    return next(e.name for e in t.steps[-1].observation.elements if len(e.name) > 3 and e.in_view and e.box.width)


class Exported:
    """An export's folder (`out / "data"`) and its ExportStats."""

    def __init__(self, root: Path, stats) -> None:
        self.root, self.stats = root, stats

    def __truediv__(self, part: str) -> Path:
        return self.root / part

    def __str__(self) -> str:
        return str(self.root)


@pytest.fixture(scope="module")
def out(recorded, tmp_path_factory) -> Exported:
    root = tmp_path_factory.mktemp("native")
    r = recorded
    trajectories = [
        *r.values(),
        _then(r["login-user"], "finished", Action(name="done")),
        _then(r["click-button"], "answered", Action(name="answer", text=_shown(r["click-button"]))),
        _then(r["click-button"], "answer-not-shown", Action(name="answer", text="nowhere on the page 4711")),
        _then(r["social-media"], "went-back", Action(name="go_back"), Action(name="done")),
    ]
    staging.write_batch(root / "staging", trajectories, "batch-0")
    return Exported(root, export(root, rows_per_shard=8, native=["aguvis", "cogagent"]))


def parquet_rows(root: Exported, config: str) -> list[dict]:
    return pq.read_table(root / "data" / config).to_pylist()


# ---------------------------------------------------------------- Aguvis's loader, restated


def aguvis_load(data_path: str, image_folder: str) -> list[tuple[dict, list[str]]]:
    """The samples and the image paths Aguvis's dataset would open."""
    config = yaml.safe_load(Path(data_path).read_text())
    out = []
    for entry in config["datasets"]:
        json_path = entry["json_path"]
        assert json_path.endswith(".json")  # the form Aguvis uses (.jsonl is read line by line)
        with open(json_path) as f:  # as written: relative paths would be from the working directory
            rows = json.load(f)
        assert entry.get("sampling_strategy", "all") == "all"
        base = os.path.join(image_folder, entry.get("images_folder"))
        for row in rows:
            names = row["image"] if isinstance(row["image"], list) else [row["image"]]
            out.append((row, [os.path.join(base, n) for n in names]))
    return out


def aguvis_render(row: dict, images: list[str]) -> tuple[str, list[str]]:
    """The conversation as Aguvis's preprocessing lays it out (text only, an
    image as <|image|>), and the images in the order the turns take them."""
    turns = row["conversations"]
    system = None
    if turns[0]["from"] == "system":
        system, turns = turns[0]["value"], turns[1:]
    assert system, "a sample without its own system turn would get the grounding one"
    text, used = f"<|im_start|>system\n{system}<|im_end|>\n", []
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    for turn in turns:
        role, content = roles.get(turn["from"], turn["from"]), turn["value"]
        n = content.count("<image>")
        if n:
            assert role == "user", "images are only supported in user turns"
            used += images[len(used): len(used) + n]
            text += f"<|im_start|>user\n{'<|image|>' * n}{content.replace('<image>', '')}<|im_end|>\n"
        elif role in ("user", "system"):
            text += f"<|im_start|>{role}\n{content}<|im_end|>\n"
        else:
            recipient = f"<|recipient|>{turn['recipient']}" if "recipient" in turn else ""
            end = "<|diff_marker|>\n" if turn.get("end_turn", True) else "<|im_end|>\n"
            text += f"<|im_start|>assistant{recipient}\n{content}{end}"
    assert len(used) == len(images)
    return text, used


CALL = re.compile(r"<\|im_start\|>assistant<\|recipient\|>(\w+)\n(.*?)(<\|diff_marker\|>|<\|im_end\|>)", re.S)
AGUVIS_FUNCTIONS = re.compile(r"^(pyautogui\.\w+|browser\.(select_option|goto|back)|answer|terminate)$")


def _calls(code: str) -> list[str]:
    return [ast.unparse(node.value.func) for node in ast.parse(code).body]


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_aguvis_reads_every_row_and_opens_every_image(out, stage, tmp_path, monkeypatch):
    folder = out / "native" / "aguvis"
    monkeypatch.chdir(tmp_path)  # the loader runs from its own checkout, not from here
    samples = aguvis_load(str(folder / f"{stage}.yaml"), str(folder))
    view = parquet_rows(out, "sft-aguvis-grounding" if stage == "stage1" else "sft-aguvis-planning")
    assert len(samples) == len(view) == out.stats.native[f"aguvis/{stage}.json"] > 0
    by_id = {r["id"]: r for r in view}
    for row, paths in samples:
        text, images = aguvis_render(row, paths)
        assert len(images) == 1
        with Image.open(images[0]) as im:
            assert im.convert("RGB").size[0] > 0
        assert Path(images[0]).read_bytes() == by_id[row["id"]]["image"]["bytes"]
        turns = CALL.findall(text)
        assert "<|recipient|>None" not in text
        # the target: the planning turn (stage 2), then one `os` call ending the turn
        assert [(r, end) for r, _, end in turns] == (
            [("os", "<|diff_marker|>")] if stage == "stage1" else [("all", "<|im_end|>"), ("os", "<|diff_marker|>")]
        )
        if stage == "stage2":
            plan = turns[0][1]
            assert re.search(r"(^|\n)Action: \S", plan), plan
        code = turns[-1][1]
        assert all(AGUVIS_FUNCTIONS.match(c) for c in _calls(code)), code
        from_aguvis(code)
        assert sum(len(t["value"].split()) for t in row["conversations"]) > 0  # its length grouping


def test_aguvis_images_are_written_once(out):
    folder = out / "native" / "aguvis"
    files = sorted(p.name for p in (folder / "images").iterdir())
    names = {json.loads((folder / f"{s}.json").read_text())[i]["image"] for s in ("stage1", "stage2") for i in range(3)}
    assert names <= set(files)
    pngs = {hashlib.sha256(r["image"]["bytes"]).hexdigest() for r in parquet_rows(out, "sft-aguvis-grounding")}
    assert len(files) == len(pngs)  # one file per distinct screenshot, shared by both stages
    # the direct form: --data_path stage2.json --image_folder images/ (list_image_path empty)
    rows = json.loads((folder / "stage2.json").read_text())
    assert all((folder / "images" / r["image"]).is_file() for r in rows)


def test_planning_text_on_every_planning_row_with_the_monologue_off(out, recorded):
    rows = json.loads((out / "native" / "aguvis" / "stage2.json").read_text())
    assert rows and all(any(t.get("recipient") == "all" for t in r["conversations"]) for r in rows)
    assert not any(s.monologue and s.monologue.low_level_instruction for t in recorded.values() for s in t.steps)
    said = {r["id"]: next(t["value"] for t in r["conversations"] if t.get("recipient") == "all") for r in rows}
    intent = recorded["intent"]
    assert intent.steps[0].monologue.thought == WHY
    assert said[f"{intent.trajectory_id}-000"].startswith(f"Thought: {WHY}\nAction: Click the '")
    login = recorded["login-user"]
    typed = next(s for s in login.steps if s.action.name == "type")
    assert said[f"{login.trajectory_id}-{typed.index:03d}"] == (
        f"Action: Type '{typed.action.text}' into the '{typed.element.name}' field."
    )
    # in words, not coordinates: a plan with the point would give its action away
    assert not any(re.search(r"\(0?\.\d+, 0?\.\d+\)", p) for p in said.values())
    unnamed = sft.describe(_view(Action(name="click", x=0.9, y=0.1)))
    assert unnamed == "Click at the top right."
    for row in parquet_rows(out, "sft-messages"):
        assert "\nAction: " in "\n" + row["messages"][2]["content"].split("```python")[0]


# ---------------------------------------------------------------- CogAgent's fine-tune, restated

COGAGENT_CONFIG = {"train_file": "train.jsonl", "val_file": "dev.jsonl", "test_file": "dev.jsonl"}


def cogagent_load(data_dir: Path, cache: Path) -> dict[str, list[list[dict]]]:
    """Each split's conversations after finetune.py's image handling."""
    assert {Path(f).suffix for f in COGAGENT_CONFIG.values()} == {".jsonl"}
    files = {"train": COGAGENT_CONFIG["train_file"], "validation": COGAGENT_CONFIG["val_file"],
             "test": COGAGENT_CONFIG["test_file"]}
    ds = load_dataset(str(data_dir), data_files=files, split=None, cache_dir=str(cache))
    out = {}
    for split in files:
        convs = []
        for conv in ds[split]["messages"]:
            conv[0]["image"] = Image.open(conv[len(conv) - 2]["image"]).convert("RGB")
            conv[len(conv) - 2]["image"] = None
            convs.append(conv)
        out[split] = convs
    return out


def client_operation(reply: str) -> dict:
    """app/client.py's reading of a reply: the operation name and its box."""
    step = re.search(r"Grounded Operation:\s*(.*)", reply).group(1)
    name, detail = step.split("(", 1)
    boxes = re.findall(r"box=\[\[(.*?)\]\]", "(" + detail)
    return {"operation": name.strip(), "box": list(map(int, boxes[0].split(","))) if boxes else None}


def test_cogagent_finetune_reads_every_row_and_opens_every_image(out, tmp_path, monkeypatch):
    folder = out / "native" / "cogagent"
    monkeypatch.chdir(tmp_path)  # finetune.py runs from CogAgent's finetune/ folder
    splits = cogagent_load(folder, tmp_path / "hf-cache")
    view = {r["id"]: r for r in parquet_rows(out, "sft-cogagent")}
    lines = {s: [json.loads(x) for x in (folder / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "dev")}
    assert len(splits["train"]) == len(lines["train"]) == out.stats.native["cogagent/train.jsonl"]
    assert len(splits["validation"]) == len(splits["test"]) == len(lines["dev"]) > 0
    train_ids, dev_ids = {r["id"] for r in lines["train"]}, {r["id"] for r in lines["dev"]}
    assert train_ids | dev_ids == set(view)  # no row lost
    assert not train_ids & dev_ids or lines["dev"] == lines["train"][: len(lines["dev"])]
    for split, convs in splits.items():
        for conv, raw in zip(convs, lines["train" if split == "train" else "dev"], strict=True):
            # the image ends on the first turn, the user's query, and nowhere else
            assert isinstance(conv[0]["image"], Image.Image) and conv[0]["image"].size[0] > 0
            assert conv[0]["role"] == "user" and all(m["image"] is None for m in conv[1:])
            assert [m["role"] for m in conv] == ["user", "assistant", "user"] and conv[2]["content"] == ""
            want = view[raw["id"]]["messages"]
            assert (conv[0]["content"], conv[1]["content"]) == (want[0]["content"], want[1]["content"])
            assert raw["messages"][0]["image"] == raw["messages"][1]["image"] and os.path.isabs(raw["messages"][0]["image"])
            op = client_operation(conv[1]["content"])
            assert op["operation"] in sft.COGAGENT_OPERATIONS
            assert op["box"] is None or all(0 <= v <= 999 for v in op["box"])


def test_cogagent_only_documented_operations_and_its_end_marker(out, recorded):
    rows = parquet_rows(out, "sft-cogagent")
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        text = r["messages"][0]["content"] + r["messages"][1]["content"]
        assert set(re.findall(r"\b([A-Z_]{3,})\(", text)) <= sft.COGAGENT_OPERATIONS | {"KEY_DOWN", "KEY_UP"}, text
        assert "END()" not in text
    replies = lambda tid: [by_id[k]["messages"][1]["content"] for k in sorted(by_id) if k.startswith(tid + "-")]  # noqa: E731
    # a done step is no row: the action before it carries <<END>>, as any task's last action does
    finished = replies("finished")
    assert finished == replies(recorded["login-user"].trajectory_id)
    assert finished[-1].endswith(COGAGENT_END) and not any(COGAGENT_END in x for x in finished[:-1])
    # going back: the keys a person presses
    went_back = replies("went-back")[-1]
    assert "GESTURE(actions=[KEY_DOWN(key='Lmenu'), KEY_PRESS(key='Left'), KEY_UP(key='Lmenu')])" in went_back
    assert went_back.endswith(COGAGENT_END)
    # an answer: QUOTE_TEXT of the element that shows it, the task's end
    answered = replies("answered")[-1]
    assert split_cogagent(answered)["operation"].startswith("QUOTE_TEXT(") and answered.endswith(COGAGENT_END)
    assert sft.parse_cogagent_operation(answered) == Action(name="answer", text=_shown(recorded["click-button"]))
    # what cannot be said is left out and counted, here and in the manifest and the card
    left = out.stats.sft_left_out["cogagent"]
    assert left["answer not shown on the screenshot"] == 1
    assert left["select: the opened list is on no screenshot"] == 1
    assert not any(k.startswith(recorded["choose-list"].trajectory_id) for k in by_id)
    assert left["after a step CogAgent cannot express"] == len(recorded["choose-list"].steps) - 1
    m = manifest("t", out.stats, {})
    assert m["sft_left_out"]["cogagent"] == dict(sorted(left.items()))
    text = card(m)
    assert f"; {sum(left.values())} steps left out: " in text and "answer not shown on the screenshot (1)" in text


def _view(action: Action, element: Element | None = None, elements: list[Element] = ()) -> sft.StepView:
    area = Box(x=0, y=0, width=1000, height=800)
    return sft.StepView(traj={"trajectory_id": "t", "instruction": "do it"}, index=0, action=action, element=element,
                        area=area, monologue=None, png=None, history=[],
                        elements=[e.model_dump() for e in elements])


BUTTON = Element(id=1, tag="button", role="button", name="Log in", box=Box(x=100, y=80, width=200, height=40))
PRICE = Element(id=2, tag="span", role="generic", name="Total: $41.50", box=Box(x=600, y=400, width=120, height=20))


@pytest.mark.parametrize("action", [
    Action(name="click", x=0.2, y=0.125), Action(name="double_click", x=0.2, y=0.125),
    Action(name="right_click", x=0.2, y=0.125), Action(name="hover", x=0.2, y=0.125),
    Action(name="type", text="bob"), Action(name="press", key="Enter"), Action(name="press", key="Control+a"),
    Action(name="scroll", dx=0.0, dy=0.5), Action(name="scroll", dx=0.0, dy=-0.25),
    Action(name="scroll", dx=0.3, dy=0.0), Action(name="scroll", dx=-0.3, dy=0.0),
    Action(name="navigate", text="http://localhost:8000/shop"), Action(name="go_back"),
    Action(name="answer", text="$41.50"),
])
def test_cogagent_round_trip(action):
    element = BUTTON if action.name in ("click", "double_click", "right_click", "hover", "type") else None
    view = _view(action, element, [BUTTON, PRICE])
    op = sft.cogagent_operation(view)
    assert op.split("(", 1)[0] in sft.COGAGENT_OPERATIONS
    back = sft.parse_cogagent_operation(op, screen=view.screen)
    if action.name == "go_back":
        assert back == Action(name="press", key=sft.GO_BACK_KEYS)
    elif action.name == "scroll":
        assert (back.dx or 0) * (action.dx or 0) >= 0 and (back.dy or 0) * (action.dy or 0) >= 0
        assert abs((back.dx or 0) - (action.dx or 0)) <= 0.13 and abs((back.dy or 0) - (action.dy or 0)) <= 0.13
    elif action.x is not None:
        assert (back.name, round(back.x, 3), round(back.y, 3)) == (action.name, action.x, action.y)
    else:
        assert back == action


@pytest.mark.parametrize("action", [Action(name="select", x=0.2, y=0.125, text="France"),
                                    Action(name="drag", x=0.1, y=0.1, x2=0.5, y2=0.5),
                                    Action(name="answer", text="not on the screen")])
def test_cogagent_cannot_express(action):
    with pytest.raises(sft.NotExpressible):
        sft.cogagent_operation(_view(action, BUTTON, [BUTTON, PRICE]))


# ---------------------------------------------------------------- CLI and configuration


def test_cli_writes_one_format_where_asked(out, tmp_path):
    runner = CliRunner()
    to = tmp_path / "cog"
    result = runner.invoke(app, ["export", str(out), "--format", "cogagent", "--to", str(to), "--image-root", "/data/cog"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in to.iterdir()) == ["dev.jsonl", "images", "train.jsonl"]
    first = json.loads((to / "train.jsonl").read_text().splitlines()[0])
    assert first["messages"][0]["image"].startswith("/data/cog/images/")
    again = runner.invoke(app, ["export", str(out), "--format", "cogagent", "--to", str(to)])  # replaced whole
    assert again.exit_code == 0 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    bad = runner.invoke(app, ["export", str(out), "--format", "llava"])
    assert bad.exit_code == 2 and "unknown native format" in bad.output
    missing = runner.invoke(app, ["export", str(tmp_path / "nothing"), "--format", "aguvis"])
    assert missing.exit_code == 2 and "run the pipeline first" in missing.output


def test_pipeline_option():
    assert ExportConfig().native == []
    assert ExportConfig(native=["aguvis", "cogagent"]).native == ["aguvis", "cogagent"]
    with pytest.raises(ValueError, match="unknown native format.*'llava'.*known: aguvis, cogagent"):
        ExportConfig(native=["llava"])


def test_native_files_hold_the_views_samples(out):
    """The native files hold the same samples as their Parquet views."""
    assert out.stats.native["aguvis/stage1.json"] == out.stats.sft_samples["aguvis-grounding"]
    cog = out.stats.native["cogagent/train.jsonl"] + out.stats.native["cogagent/dev.jsonl"]
    assert cog >= out.stats.sft_samples["cogagent"]
    write_native(str(out), ["aguvis"])  # a re-run replaces the folder
    assert sorted(p.name for p in (out / "native").iterdir()) == ["aguvis", "cogagent"]


# ---------------------------------------------------------------- the card


def test_every_view_loads_by_name_and_the_cards_example_runs(out, monkeypatch, tmp_path):
    import datasets

    m = manifest("t", out.stats, {})
    text = card(m)
    (out / "README.md").write_text(text)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.chdir(out.root)
    header = yaml.safe_load(text.split("---\n")[1])
    configs = [c["config_name"] for c in header["configs"]]
    jsonl = {f["name"]: f for f in header["jsonl_files"]}
    # every view: a config loaded by its name, or JSONL files the YAML says how to load
    assert set(configs) | set(jsonl) == {"trajectories", "steps", *(f.config for f in sft.FORMATS.values())}
    for name in configs:
        got = load_dataset(str(out), name, split="train")
        want = sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "data" / name).glob("*.parquet"))
        assert len(got) == want > 0, name
    assert eval(jsonl["sft-openai"]["load"], {"load_dataset": load_dataset, "ROOT": str(out)}).num_rows == m["sft_samples"]["openai"]
    # the example code, as written
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert len(scope["steps"]) == m["steps"] and len(scope["sft_openai"]) == m["sft_samples"]["openai"]
