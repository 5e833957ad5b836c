"""SFT exports: real recorded trajectories -> data/sft-<format>/, read back with
`datasets` offline (conftest sets HF_*_OFFLINE before datasets is imported);
every action string in every sample parses back to the recorded action."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import pytest_asyncio
import yaml
from datasets import Image as HFImage
from datasets import load_dataset
from pydantic import ValidationError

from synth.solver import get_solver
from synth import staging
from synth.actions import (
    COGAGENT_END,
    COGAGENT_GENERAL,
    COGAGENT_SENSITIVE,
    SCROLL_NOTCH_PX,
    box_center,
    from_aguvis,
    from_cogagent,
    split_cogagent,
)
from synth.config import ExportConfig
from synth.env import BrowserEnv
from synth.episode import run_episode
from synth.export import formats as sft
from synth.export.card import card, manifest
from synth.export.shards import export
from synth.quality.stage import Verdict
from synth.schema import POINTER_ACTIONS, Action, Monologue, Step, Trajectory
from synth.sites import miniwob

# click+type (login), select, a click off the element's centre (enter-date's
# month part), an auto-scroll + hover (social-media), a sensitive Submit.
TASKS = [("login-user", 0), ("choose-list", 1), ("enter-date", 2), ("social-media", 3), ("click-button", 4)]
BOX = re.compile(r"box=\[\[(\d+),(\d+),(\d+),(\d+)\]\]")


@pytest_asyncio.fixture(scope="module")
async def recorded(browser, miniwob_site) -> dict[str, Trajectory]:
    env = BrowserEnv(browser, miniwob_site)
    out = {}
    try:
        for name, seed in TASKS:
            t = await run_episode(
                env, miniwob.make_task(name, seed), get_solver(f"miniwob.{name}"),
                source="solver", source_detail=f"miniwob.{name}",
            )
            assert t.status == "accepted", (name, t.reject_reason)
            out[name] = t
    finally:
        await env.close()
    return out


class Run:
    def __init__(self, out: Path, trajectories: list[Trajectory], accepted: set[str], stats) -> None:
        self.out, self.stats, self.accepted = out, stats, accepted
        self.by_id = {t.trajectory_id: t for t in trajectories}

    def step(self, row: dict) -> Step:
        return self.by_id[row["trajectory_id"]].steps[row["step_index"]]

    def load(self, name: str):
        fmt = sft.FORMATS[name]
        return load_dataset(
            "parquet" if fmt.schema is not None else "json",
            data_dir=str(self.out / "data" / fmt.config), split="train", cache_dir=str(self.out.parent / "hf-cache"),
        )


@pytest.fixture(scope="module")
def run(recorded, tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("sft")
    t = {k: v.model_copy(deep=True) for k, v in recorded.items()}
    # an inner-monologue generator's output on every login step, on choose-list's first
    for i, s in enumerate(t["login-user"].steps):
        s.monologue = Monologue(
            observation=f"A login form; step {i}.", thought=f"Step {i} of the login.", low_level_instruction=f"Do login step {i}."
        )
    t["choose-list"].steps[0].monologue = Monologue(thought="The list holds the item.", low_level_instruction="Pick the item.")
    # a failed step inside an accepted trajectory: neither a target nor history
    failed = t["login-user"].model_copy(deep=True, update={"trajectory_id": "with-a-failed-step"})
    failed.steps[2].error = "click failed: element detached"
    # a rejected copy in staging, and an accepted one the quality verdict rejects
    rejected = t["click-button"].model_copy(deep=True, update={"trajectory_id": "staged-rejected", "status": "rejected", "reject_reason": "judge: no"})
    trajectories = [*t.values(), failed, rejected]
    staging.write_batch(tmp / "staging", trajectories, "batch-0")
    verdicts = {t["enter-date"].trajectory_id: Verdict(status="rejected", reject_reason="consistency: loop")}
    # small shards, so the -of-N naming of several shards is exercised too
    stats = export(tmp, rows_per_shard=8, row_group_mb=1, verdicts=verdicts)
    accepted = {x.trajectory_id for x in trajectories} - {"staged-rejected", t["enter-date"].trajectory_id}
    # enter-date only as accepted, for the off-centre click (staged apart, exported apart)
    other = tmp_path_factory.mktemp("sft-date")
    staging.write_batch(other / "staging", [t["enter-date"]], "batch-0")
    export(other, formats=["cogagent", "messages"])
    r = Run(tmp, trajectories, accepted, stats)
    r.date = Run(other, [t["enter-date"]], {t["enter-date"].trajectory_id}, None)
    return r


def aguvis_view(a: Action) -> Action:
    """What the Aguvis text carries of an action: no element id; a scroll has no
    point and one axis (to_aguvis writes hscroll when dx is non-zero, so a
    diagonal auto-scroll keeps only its horizontal part)."""
    if a.name == "scroll":
        return Action(name="scroll", dx=a.dx or 0.0, dy=0.0) if a.dx else Action(name="scroll", dx=0.0, dy=a.dy or 0.0)
    return a.model_copy(update={"element_id": None})


def assert_cogagent_action(op: str, step: Step) -> None:
    """A CogAgent operation parses to the recorded action: pointer actions act
    at the box centre, which is the recorded point (to the 1/1000 of the grid)
    and lies on the recorded element."""
    area = step.observation.area
    parsed, a = from_cogagent(op, screen=(area.width, area.height)), step.action
    assert parsed.name == a.name, (op, a)
    assert (parsed.text, parsed.key) == (a.text, a.key), (op, a)
    if a.name in POINTER_ACTIONS:
        assert abs(parsed.x - a.x) <= 0.0006 and abs(parsed.y - a.y) <= 0.0006, (op, a)
        if step.element is not None:
            px, py = step.observation.denormalise(parsed.x, parsed.y)
            b = step.element.box
            assert b.x - 1 <= px <= b.x + b.width + 1 and b.y - 1 <= py <= b.y + b.height + 1, (op, step.element)
    if a.name == "scroll":
        # CogAgent scrolls whole wheel notches (at least one): the amount comes back to within a notch
        want, notch = aguvis_view(a), SCROLL_NOTCH_PX / min(area.width, area.height)
        assert abs(parsed.dx - want.dx) <= notch and abs(parsed.dy - want.dy) <= notch, (op, a)
        assert (parsed.dx > 0, parsed.dx < 0, parsed.dy > 0, parsed.dy < 0) == (want.dx > 0, want.dx < 0, want.dy > 0, want.dy < 0)


def target_steps(t: Trajectory) -> list[Step]:
    return [s for s in t.steps if not s.error and s.observation.screenshot]


def cogagent_steps(t: Trajectory) -> list[Step]:
    """The target steps CogAgent's view keeps: those before the first select
    (the opened list is on no screenshot, so neither it nor what follows it,
    whose history would hold it, is expressible), no final done."""
    kept = []
    for s in target_steps(t):
        if s.action.name in ("select", "drag"):
            break
        if s.action.name != "done":
            kept.append(s)
    return kept


def plan_text(step: Step, said: str) -> str:
    """The planning text of a step: its monologue's Observation/Thought, then the
    low-level instruction `said` (the monologue's, else written from the action)."""
    m = step.monologue
    lines = [f"{k}: {v}" for k, v in (("Observation", m.observation if m else ""), ("Thought", m.thought if m else "")) if v]
    return "\n".join([*lines, f"Action: {said}"])


# ---------------------------------------------------------------- every format


def test_only_accepted_trajectories_become_samples(run):
    expected = sum(len(target_steps(run.by_id[i])) for i in run.accepted)
    cogagent = sum(len(cogagent_steps(run.by_id[i])) for i in run.accepted)
    assert 0 < cogagent < expected
    assert run.stats.sft_samples == {name: cogagent if name == "cogagent" else expected for name in sft.FORMATS}
    assert sum(run.stats.sft_left_out["cogagent"].values()) == expected - cogagent
    assert set(run.stats.sft_left_out) == {"cogagent"}
    for name, fmt in sft.FORMATS.items():
        files = sorted(p.name for p in (run.out / "data" / fmt.config).iterdir())
        n = len(files)
        assert n > 1 and files == [f"train-{i:05d}-of-{n:05d}.{fmt.extension}" for i in range(n)]
        ds = run.load(name)
        assert len(ds) == (cogagent if name == "cogagent" else expected), name
        if fmt.schema is not None:
            has_rows = {i for i in run.accepted if name != "cogagent" or cogagent_steps(run.by_id[i])}
            assert set(ds["trajectory_id"]) == has_rows
            assert "with-a-failed-step-002" not in ds["id"]


def test_the_final_page_stays_in_staging_out_of_every_export(run):
    """Each recorded trajectory keeps the page after its last action, for
    reviewers; it is no step's target, so no file under data/ holds it."""
    staged = staging.table(run.out / "staging", ["trajectory_id", "final_screenshot"]).to_pylist()
    assert staged and all(r["final_screenshot"] == run.by_id[r["trajectory_id"]].final_screenshot for r in staged)
    assert all(r["final_screenshot"] for r in staged)
    files = [f for f in (run.out / "data").rglob("*") if f.is_file()]
    assert any(f.suffix == ".jsonl" for f in files) and any(f.suffix == ".parquet" for f in files)
    for f in files:
        if f.suffix == ".parquet":
            assert "final_screenshot" not in pq.read_schema(f).names, f
        elif f.suffix == ".jsonl":
            assert "final_screenshot" not in f.read_text(), f


def test_aguvis_grounding(run):
    ds = run.load("aguvis-grounding")
    assert isinstance(ds.features["image"], HFImage)
    assert set(ds.features["conversations"].feature) == {"from", "value", "recipient", "end_turn"}
    for row in ds:
        step, conv = run.step(row), row["conversations"]
        assert [c["from"] for c in conv] == ["system", "human", "gpt"]
        assert conv[0]["value"] == sft.GROUNDING_SYSTEM
        human = conv[1]["value"]
        assert human.count("<image>") == 1 and human.startswith("<image>")
        instruction = step.monologue.low_level_instruction if step.monologue else run.by_id[row["trajectory_id"]].instruction
        assert human == "<image>" + instruction
        assert (conv[2]["recipient"], conv[2]["end_turn"]) == ("os", True)
        assert from_aguvis(conv[2]["value"]) == aguvis_view(step.action)
        assert row["image"].size == (int(step.observation.area.width), int(step.observation.area.height))


def test_aguvis_planning(run):
    ds = run.load("aguvis-planning")
    seen_thought = 0
    for row in ds:
        step, conv = run.step(row), row["conversations"]
        traj = run.by_id[row["trajectory_id"]]
        assert conv[0]["from"] == "system" and conv[0]["value"].startswith(sft.GROUNDING_SYSTEM)
        assert "browser.select_option" in conv[0]["value"]
        human = conv[1]["value"]
        assert conv[1]["from"] == "human" and human.count("<image>") == 1
        assert f"\n\nInstruction: {traj.instruction}\n\nPrevious actions:\n" in human
        history = [s for s in traj.steps[: row["step_index"]] if not s.error]
        lines = human.split("Previous actions:\n", 1)[1].strip().splitlines()
        if not history:
            assert lines == ["None"]
        for i, (line, prev) in enumerate(zip(lines, history if history else ["None"], strict=True), 1):
            if prev == "None":
                break
            said = prev.monologue.low_level_instruction if prev.monologue else None
            assert line == f"Step {i}: {said}" if said else line.startswith(f"Step {i}: ") and len(line) > 9
        gpt = conv[2:]
        # every step plans in words, monologue or not: the `all` turn, then the call
        assert [(c["from"], c["recipient"], c["end_turn"]) for c in gpt] == [("gpt", "all", False), ("gpt", "os", True)]
        said = gpt[0]["value"].rsplit("\nAction: ", 1)[-1].removeprefix("Action: ")
        assert said.strip() and gpt[0]["value"] == plan_text(step, said)
        if step.monologue and step.monologue.low_level_instruction:
            assert said == step.monologue.low_level_instruction
        if step.monologue and step.monologue.thought:
            seen_thought += 1
        assert from_aguvis(gpt[-1]["value"]) == aguvis_view(step.action)
    assert seen_thought == 5 + 4 + 1  # login's steps, its copy's but the failed one, choose-list's first


def test_failed_step_is_left_out_of_the_history(run):
    ds = run.load("aguvis-planning")
    row = next(r for r in ds if r["id"] == "with-a-failed-step-003")
    prev = row["conversations"][1]["value"].split("Previous actions:\n", 1)[1]
    assert prev.strip().splitlines() == ["Step 1: Do login step 0.", "Step 2: Do login step 1."]


def test_cogagent(run):
    ds = run.load("cogagent")
    assert isinstance(ds.features["images"].feature, HFImage)
    markers = {}
    assert sorted(ds["id"]) == sorted(
        f"{i}-{s.index:03d}" for i in run.accepted for s in cogagent_steps(run.by_id[i])
    )
    for row in ds:
        step, traj = run.step(row), run.by_id[row["trajectory_id"]]
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] and len(row["images"]) == 1
        user, reply = row["messages"][0]["content"], row["messages"][1]["content"]
        assert "<image>" not in user and user.startswith(f"Task: {traj.instruction}\nHistory steps: ")
        assert user.endswith("\n(Platform: WIN)\n(Answer in Action-Operation-Sensitive format.)\n")
        for box in BOX.findall(user + reply):
            x1, y1, x2, y2 = map(int, box)
            assert 0 <= x1 <= x2 <= 999 and 0 <= y1 <= y2 <= 999, box
        # only the operations CogAgent documents
        assert set(re.findall(r"\b([A-Z_]{3,})\(", user + reply)) <= sft.COGAGENT_OPERATIONS | {"KEY_DOWN", "KEY_UP"}
        # every history line's operation is the earlier step's action
        history = [s for s in traj.steps[: row["step_index"]] if not s.error]
        lines = user.split("History steps: ", 1)[1].split("\n(Platform:")[0].strip("\n").split("\n") if history else []
        assert len(lines) == len(history)
        for i, (line, prev) in enumerate(zip(lines, history, strict=True)):
            assert line.startswith(f"{i}. ")
            op, described = line[len(f"{i}. "):].split("\t")
            assert_cogagent_action(op, prev)
            assert described.strip()
        fields = split_cogagent(reply)
        assert reply.startswith("Action: ") and "\nGrounded Operation: " in reply
        assert_cogagent_action(fields["operation"], step)
        markers[(row["template_id"], step.element.name if step.element else "")] = fields["marker"]
        # the task's last action carries CogAgent's end marker, the others their sensitivity
        last = step.index == cogagent_steps(traj)[-1].index
        assert (fields["marker"] == COGAGENT_END) == last
    assert markers[("miniwob/login-user", "Username")] == COGAGENT_GENERAL
    assert markers[("miniwob/login-user", "Login")] == COGAGENT_END
    assert ("miniwob/choose-list", "Submit") not in markers  # after its select: left out


def test_cogagent_box_is_centred_on_the_recorded_point(run):
    """enter-date clicks the date field's left end (its month part): CogAgent
    acts at the box centre, so the box is narrowed around that point."""
    ds = run.date.load("cogagent")
    row = next(r for r in ds if r["step_index"] == 0)
    step = run.date.step(row)
    op = split_cogagent(row["messages"][1]["content"])["operation"]
    x1, y1, x2, y2 = map(int, BOX.search(op).groups())
    cx, cy = box_center((x1, y1, x2, y2))
    assert abs(cx - step.action.x) <= 0.0006 and abs(cy - step.action.y) <= 0.0006
    el = step.element.box
    assert x2 - x1 < el.width / step.observation.area.width * 1000 / 2  # narrower than the field, on it
    assert_cogagent_action(op, step)


def test_messages_for_ms_swift_and_llamafactory(run):
    ds = run.load("messages")
    for row in ds:
        step = run.step(row)
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["system", "user", "assistant"]
        tags = sum(m["content"].count("<image>") for m in row["messages"])
        assert tags == len(row["images"]) == 1 and row["messages"][1]["content"].startswith("<image>")
        reply = row["messages"][2]["content"]
        assert sft.parse_chat_reply(reply) == aguvis_view(step.action)
        thought, code = reply.split("\n```python\n", 1)
        said = thought.rsplit("\nAction: ", 1)[-1].removeprefix("Action: ")
        assert said.strip() and thought == plan_text(step, said)  # planning text on every step
        if step.monologue and step.monologue.low_level_instruction:
            assert said == step.monologue.low_level_instruction
    info = json.loads((run.out / "dataset_info.json").read_text())
    entry = info[sft.LLAMAFACTORY_DATASET]
    assert entry["formatting"] == "sharegpt" and entry["file_name"] == "data/sft-messages"
    folder = run.out / entry["file_name"]
    assert {p.suffix for p in folder.iterdir()} == {".parquet"}  # LLaMA-Factory wants one file type in the folder
    assert set(entry["columns"].values()) <= set(ds.column_names)
    t = entry["tags"]
    assert {t["user_tag"], t["assistant_tag"], t["system_tag"]} == {"user", "assistant", "system"}


def test_openai_jsonl(run):
    rows = [json.loads(line) for p in sorted((run.out / "data/sft-openai").glob("*.jsonl")) for line in p.open()]
    for row in rows:
        assert list(row) == ["messages"]
        system, user, assistant = row["messages"]
        assert (system["role"], user["role"], assistant["role"]) == ("system", "user", "assistant")
        assert isinstance(system["content"], str) and isinstance(assistant["content"], str)
        images = [p for p in user["content"] if p["type"] == "image_url"]
        texts = [p for p in user["content"] if p["type"] == "text"]
        assert len(images) == 1 and len(texts) == 1 and "<image>" not in texts[0]["text"]
        url = images[0]["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        assert base64.b64decode(url.split(",", 1)[1]).startswith(b"\x89PNG")
        sft.parse_chat_reply(assistant["content"])
    ds = run.load("openai")
    assert len(ds) == len(rows)
    got = [sft.parse_chat_reply(r["messages"][2]["content"]) for r in ds]
    want = [aguvis_view(s.action) for i in run.accepted for s in target_steps(run.by_id[i])]
    assert sorted(got, key=repr) == sorted(want, key=repr)


def test_card_and_manifest_list_the_sft_configs(run):
    m = manifest("test", run.stats, {})
    assert m["sft_samples"] == run.stats.sft_samples
    text = card(m)
    (run.out / "README.md").write_text(text)
    header = yaml.safe_load(text.split("---")[1])
    configs = {c["config_name"]: c["data_files"][0]["path"] for c in header["configs"]}
    for name, fmt in sft.FORMATS.items():
        assert f"`{fmt.config}` ({m['sft_samples'][name]} samples" in text and f", `{fmt.data_files}`)" in text
        if fmt.extension == "parquet":
            assert configs[fmt.config] == fmt.data_files
    # one builder serves a whole repo in `datasets`: the JSONL files are no config
    assert "sft-openai" not in configs and header["jsonl_files"][0]["name"] == "sft-openai"
    assert 'load_dataset(ROOT, data_files="data/sft-openai/train-*.jsonl", split="train")' in text
    # the card's configs are what `load_dataset(<dataset folder>, <config>)` reads
    cache = str(run.out.parent / "hf-cache")
    for config in ("sft-cogagent", "sft-aguvis-planning"):
        got = load_dataset(str(run.out), config, split="train", cache_dir=cache)
        assert len(got) == m["sft_samples"][config[4:]]


def test_a_chosen_subset_and_unknown_names(recorded, tmp_path):
    staging.write_batch(tmp_path / "staging", [recorded["click-button"]], "batch-0")
    export(tmp_path, formats=["cogagent", "messages"])
    folders = lambda: sorted(p.name for p in (tmp_path / "data").iterdir())  # noqa: E731
    assert folders() == ["sft-cogagent", "sft-messages", "steps", "trajectories"]
    assert (tmp_path / "dataset_info.json").exists()
    with pytest.raises(ValueError, match="unknown SFT format.*'aguvis'.*known SFT formats: aguvis-grounding"):
        export(tmp_path, formats=["aguvis"])
    assert folders() == ["sft-cogagent", "sft-messages", "steps", "trajectories"]  # nothing half-written
    export(tmp_path, formats=[])
    assert folders() == ["steps", "trajectories"]
    assert not (tmp_path / "dataset_info.json").exists()
    # nothing accepted: empty Parquet configs, and no JSONL file at all (an empty
    # one is neither a valid OpenAI training file nor readable by `datasets`)
    none = tmp_path / "none"
    rejected = recorded["click-button"].model_copy(update={"status": "rejected", "reject_reason": "judge: no"})
    staging.write_batch(none / "staging", [rejected], "batch-0")
    stats = export(none, formats=["messages", "openai"])
    assert stats.sft_samples == {"messages": 0, "openai": 0}
    assert list((none / "data/sft-openai").iterdir()) == []
    empty = pq.read_table(none / "data/sft-messages")
    assert empty.num_rows == 0 and empty.column_names[:2] == ["messages", "images"]
    assert ExportConfig().formats == list(sft.FORMATS)
    with pytest.raises(ValidationError, match="known SFT formats: aguvis-grounding, aguvis-planning, cogagent, messages, openai"):
        ExportConfig(formats=["messages", "sharegpt"])
