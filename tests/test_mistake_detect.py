"""Real mistakes and their corrections (synth/quality/mistakes.py): each
pattern and its near misses on hand-built trajectories; the quality stage
labelling them before consistency and minimality; and end to end, the LLM
agent (a real Chromium, the local OpenAI-compatible server) making a mistake,
correcting it, and the labelled steps surviving the real gates into the views."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from synth import staging
from synth.config import QualityConfig
from synth.quality.mistakes import detect
from synth.quality.replay import ReplayResult
from synth.quality.stage import assess
from synth.schema import Action, Box, Element, Observation, Step, Trajectory, Verdict
from synth.tasks import TaskSet

ROOT = Path(__file__).resolve().parent.parent
MINIWOB = ROOT / "templates/tasks/miniwob.yaml"
AREA = Box(x=0, y=0, width=160, height=210)


def el(id: int, role: str, name: str = "", **state) -> Element:
    return Element(id=id, tag="input", role=role, name=name, box=Box(x=10, y=20 * id, width=100, height=18), **state)


class Rec:
    """Records steps as BrowserEnv would: each with the page before it; the
    page then changes as the action says (values, checked, focus, URL)."""

    def __init__(self, url: str, *elements: Element) -> None:
        self.url, self.els, self.steps = url, {e.id: e for e in elements}, []

    def _step(self, action: Action, on: int | None, **changes) -> Rec:
        element = self.els.get(on) if on is not None else None
        obs = Observation(url=self.url, area=AREA, elements=list(self.els.values()))
        self.steps.append(Step(index=len(self.steps), observation=obs, action=action, element=element))
        if "url" in changes:
            self.url = changes.pop("url")
        if "page" in changes:
            self.els = {e.id: e for e in changes.pop("page")}
        for id, update in changes.get("set", {}).items():
            if id in self.els:  # (a click that opened another page focused nothing on it)
                self.els[id] = self.els[id].model_copy(update=update)
        return self

    def click(self, id: int, **changes) -> Rec:
        focus = {i: {"focused": i == id} for i in self.els}
        x, y = self.els[id].box.center[0] / AREA.width, self.els[id].box.center[1] / AREA.height
        return self._step(Action(name="click", x=x, y=y, element_id=id), id,
                          **{**changes, "set": {**focus, **changes.get("set", {})}})

    def type(self, text: str, value: str) -> Rec:
        field = next(i for i, e in self.els.items() if e.focused)
        return self._step(Action(name="type", text=text), field, set={field: {"value": value}})

    def press(self, key: str, value: str | None = None) -> Rec:
        """`value`: what the focused field holds after the key."""
        field = next((i for i, e in self.els.items() if e.focused), None)
        return self._step(Action(name="press", key=key), field, set={field: {"value": value}} if value is not None else {})

    def select(self, id: int, option: str) -> Rec:
        return self._step(Action(name="select", x=0.5, y=0.5, text=option), id, set={id: {"value": option}})

    def back(self, url: str, *page: Element) -> Rec:
        return self._step(Action(name="go_back"), None, url=url, page=page)

    def scroll(self) -> Rec:
        return self._step(Action(name="scroll", dy=0.5), None)

    def done(self, instruction: str = "Do the task.", source: str = "bootstrap", answer: str | None = None) -> Trajectory:
        if answer is not None:
            self._step(Action(name="answer", text=answer), None)
        else:
            self._step(Action(name="done"), None)
        return Trajectory(trajectory_id="t", task_id="task", template_id="test/t", site="test", seed=0, source=source,
                          source_detail="mock-agent", instruction=instruction, steps=self.steps,
                          verdict=Verdict(passed=True, score=1.0), status="accepted")


def login() -> Rec:
    return Rec("http://site/login", el(1, "textbox", "Username", value=""), el(2, "textbox", "Password", value=""),
               el(3, "button", "Login"))


def shape(t: Trajectory) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    return [(d.kind, d.mistake, d.recovery) for d in detect(t)]


# ---------------------------------------------------------------- typed text


def test_text_retyped_over_a_selection_is_a_typo_and_its_recovery():
    t = login().click(1).type("bobx", "bobx").press("Control+a").type("bob", "bob").click(3).done('Log in as "bob".')
    (d,) = detect(t)
    assert (d.kind, d.mistake, d.recovery) == ("typo", (1,), (2,))  # the retype after the select-all is a normal step
    # synth.recovery's own words for a typo
    assert d.reflection == "I typed 'bobx' into the textbox 'Username' instead of 'bob'; select its text and type 'bob'."


def test_text_cleared_with_backspaces_then_retyped():
    t = (login().click(1).type("bbo", "bbo").press("Backspace", "bb").press("Backspace", "b").press("Backspace", "")
         .scroll().type("bob", "bob").click(3).done())
    (d,) = detect(t)
    assert (d.kind, d.mistake, d.recovery) == ("typo", (1,), (2, 3, 4))
    assert d.reflection == "I typed 'bbo' into the textbox 'Username' instead of 'bob'; clear it and type 'bob'."


def test_two_typos_in_a_row_are_two_mistakes():
    t = (login().click(1).type("bx", "bx").press("Control+a").type("bobb", "bobb").press("Control+a")
         .type("bob", "bob").done())
    assert shape(t) == [("typo", (1,), (2,)), ("typo", (3,), (4,))]


@pytest.mark.parametrize("case", ["two fields", "same text again", "sent with Enter", "appended", "last step"])
def test_typing_that_is_not_a_corrected_typo(case):
    r = login().click(1)
    if case == "two fields":
        r.type("bob", "bob").click(2).type("secret", "secret")
    elif case == "same text again":
        r.type("bob", "bob").press("Control+a").type("bob", "bob")
    elif case == "sent with Enter":  # the first text was used (a search), then another one typed
        r.type("bob", "bob").press("Enter").press("Control+a").type("alice", "alice")
    elif case == "appended":  # typed in two goes: the field holds both
        r.type("bo", "bo").type("b", "bob")
    elif case == "last step":  # what the retype left in the field is never observed
        r.type("bobx", "bobx").press("Control+a").type("bob", "bob")
    t = r.done()
    if case == "last step":
        t.steps = t.steps[:-1]
    assert detect(t) == []


# ---------------------------------------------------------------- options, boxes, radios


def colours() -> Rec:
    return Rec("http://site/form", el(1, "combobox", "Colour", value="Red"), el(2, "checkbox", "Gift wrap", checked=False),
               el(3, "checkbox", "Express", checked=False), el(4, "radio", "Small", checked=False),
               el(5, "radio", "Large", checked=False), el(6, "radio", "Monthly", checked=True), el(7, "button", "Submit"))


def test_another_option_chosen_at_once_is_a_wrong_option():
    t = colours().select(1, "Green").select(1, "Blue").click(7).done()
    (d,) = detect(t)
    assert (d.kind, d.mistake, d.recovery) == ("wrong-option", (0,), (1,))
    assert d.reflection == "I chose 'Green' in the combobox 'Colour' instead of 'Blue'; choose 'Blue'."


@pytest.mark.parametrize("steps", [
    [("select", 1, "Green"), ("select", 1, "Green")],               # the same option twice
    [("select", 1, "Green"), ("click", 2), ("select", 1, "Blue")],  # not at once: something else in between
    [("select", 1, "Green"), ("select", 1, "Blue"), ("select", 1, "Pink")],  # a chain: which was wrong?
])
def test_options_that_are_not_a_wrong_option(steps):
    r = colours()
    for name, id, *arg in steps:
        if name == "select":
            r.select(id, *arg)
        else:
            r.click(id, set={id: {"checked": True}})
    assert detect(r.done()) == []


def test_a_box_ticked_and_unticked_at_once():
    t = (colours().click(2, set={2: {"checked": True}}).click(2, set={2: {"checked": False}})
         .click(3, set={3: {"checked": True}}).click(7).done())
    (d,) = detect(t)
    assert (d.kind, d.mistake, d.recovery) == ("wrong-click", (0,), (1,))
    assert d.reflection == "I clicked 'Gift wrap' by mistake; click it again to undo it, then click 'Express'."


@pytest.mark.parametrize("clicks", [
    [(2, True), (3, True)],               # two boxes ticked
    [(2, True), (2, False), (2, True)],   # ticked, unticked, ticked: which one was wrong?
    [(2, True), (2, True)],               # the second click changed nothing
])
def test_boxes_that_are_not_a_wrong_click(clicks):
    r = colours()
    for id, checked in clicks:
        r.click(id, set={id: {"checked": checked}})
    assert detect(r.done()) == []


def test_a_radio_button_replaced_at_once_by_another_of_its_group():
    t = (colours().click(4, set={4: {"checked": True}}).click(5, set={5: {"checked": True}, 4: {"checked": False}})
         .click(7).done())
    (d,) = detect(t)
    assert (d.kind, d.mistake, d.recovery) == ("wrong-click", (0,), (1,))
    assert d.reflection == "I clicked 'Small' instead of 'Large'; click 'Large'."


def test_radio_buttons_of_two_groups_are_not_a_wrong_click():
    t = colours().click(4, set={4: {"checked": True}}).click(6, set={6: {"checked": True}}).done()
    assert detect(t) == []  # 'Small' stayed chosen: another group, both needed


# ---------------------------------------------------------------- pages


def listing() -> list[Element]:
    return [el(1, "link", "Alpha"), el(2, "link", "Beta")]


def item(name: str, price: str) -> list[Element]:
    return [el(10, "heading", name), el(11, "text", price), el(12, "link", "Home")]


def test_a_page_opened_by_mistake_and_left_with_back():
    t = (Rec("http://site/list", *listing()).click(2, url="http://site/item/2", page=item("Beta", "$12.00")).scroll()
         .back("http://site/list", *listing()).click(1, url="http://site/item/1", page=item("Alpha", "$3.00")).done())
    (d,) = detect(t)
    assert (d.kind, d.mistake, d.recovery) == ("wrong-page", (0,), (2,))
    assert d.reflection == "Clicking 'Beta' opened the wrong page; go back and click 'Alpha'."


@pytest.mark.parametrize("case", ["back elsewhere", "clicked again", "read there", "another click"])
def test_pages_that_are_not_a_wrong_page(case):
    r = Rec("http://site/list", *listing()).click(2, url="http://site/item/2", page=item("Beta", "$12.00"))
    if case == "back elsewhere":  # the back did not return to the page the click left
        t = r.back("http://site/home", *listing()).click(1).done()
    elif case == "clicked again":  # back, then the same link: the first visit was not the wrong page
        t = r.back("http://site/list", *listing()).click(2, url="http://site/item/2", page=item("Beta", "$12.00")).done()
    elif case == "read there":  # the answer is on the page the click opened: it was read, so needed
        t = r.back("http://site/list", *listing()).done("What does Beta cost?", answer="$12.00")
    else:  # another click on the page opened, not a back
        t = r.click(12, url="http://site/list", page=listing()).done()
    assert detect(t) == []


def test_a_labelled_trajectory_is_left_as_it_is():
    t = login().click(1).type("bobx", "bobx").press("Control+a").type("bob", "bob").done()
    t.steps[1].role = "mistake"  # a recovery variant's labels
    assert detect(t) == []


# ---------------------------------------------------------------- the quality stage


def staged(tmp_path: Path) -> dict[str, Trajectory]:
    """The same typo-and-retype by the LLM agent, a labeler and a solver."""
    out = {}
    for source in ("bootstrap", "human", "solver"):
        t = login().click(1).type("bobx", "bobx").press("Control+a").type("bob", "bob").click(3).done('Log in as "bob".',
                                                                                                     source=source)
        t.trajectory_id = t.task_id = f"{source}-1"
        t.seed = {"bootstrap": 0, "human": 1, "solver": 2}[source]
        out[source] = t
    staging.write_batch(tmp_path / "staging", list(out.values()), "batch-000000")
    return out


def test_the_stage_labels_before_consistency_and_counts_by_kind(tmp_path):
    staged(tmp_path)
    config = QualityConfig.model_validate({"replay": {"enabled": False}, "dedup": {"enabled": False}})
    verdicts, gates = assess(tmp_path, config, TaskSet([]), replay=None)
    for source in ("bootstrap", "human"):
        v = verdicts[f"{source}-1"]
        assert v.status == "accepted" and v.consistency_flags == [], v
        assert v.labels[1] == ("mistake", None) and v.labels[2][0] == "recovery" and v.labels[2][1].startswith("I typed")
    # a solver's steps are a program's: not searched, and its ungrounded text is flagged as ever
    solver = verdicts["solver-1"]
    assert solver.labels == {} and solver.reject_reason == "consistency: typed_text_ungrounded"
    assert gates["mistakes"] == {"sources": ["bootstrap", "human"], "trajectories": 2, "accepted": 2,
                                 "by_kind": {"typo": 2}, "accepted_by_kind": {"typo": 2}}
    off = QualityConfig.model_validate({"replay": {"enabled": False}, "mistakes": {"sources": []}})
    verdicts, gates = assess(tmp_path, off, TaskSet([]), replay=None)
    assert gates["mistakes"]["trajectories"] == 0 and verdicts["bootstrap-1"].status == "rejected"


class Plan:
    """The TaskSet questions the stage asks, for hand-built trajectories."""

    def contains(self, template_id, seed):
        return True

    def find(self, template_id, seed, task_id):
        from synth.schema import JudgeSpec, Task

        return Task(task_id=task_id, template_id=template_id, site="test", seed=seed, judge=JudgeSpec(type="none"))

    def max_steps(self, template_id):
        return None

    def consistency(self, template_id):
        return None


@pytest.mark.parametrize("mode", ["drop", "flag"])
def test_minimality_never_removes_a_labelled_mistake_or_its_recovery(tmp_path, mode):
    """An exhaustive minimality that ignored the labels would find the mistake
    and its recovery unnecessary (without both the judge still passes): the
    gate keeps them out of its tries, and a result naming them (cached before
    they were labelled) removes nothing."""
    staged(tmp_path)
    jobs = []

    def careless(batch):  # every step but the last unnecessary, whatever the job says to keep
        jobs.extend(batch)
        return [ReplayResult(j.trajectory_id, True, unnecessary=list(range(len(j.steps) - 1))) for j in batch]

    config = QualityConfig.model_validate({"dedup": {"enabled": False}, "consistency": {"enabled": False},
                                           "minimality": {"mode": mode, "exhaustive": True}})
    verdicts, gates = assess(tmp_path, config, Plan(), replay=careless)
    kept = {j.trajectory_id: j.keep for j in jobs}
    assert kept == {"bootstrap-1": [1, 2], "human-1": [1, 2], "solver-1": []}
    noop = {j.trajectory_id: j.noop_steps for j in jobs}
    assert 2 not in noop["bootstrap-1"] and 2 in noop["solver-1"]  # the select-all changed nothing visible
    for tid in ("bootstrap-1", "human-1"):
        v = verdicts[tid]
        assert v.status == "accepted" and v.drop_steps == [] and "unnecessary_steps" not in v.consistency_flags, v
    solver = verdicts["solver-1"]  # unlabelled: the same result removes its steps
    assert (solver.drop_steps == [0, 1, 2, 3, 4]) if mode == "drop" else solver.status == "rejected"


# ---------------------------------------------------------------- end to end: the LLM agent


@pytest.fixture(scope="module")
def server():
    from bootstrap.mock_server import MockServer

    with MockServer() as s:
        yield s


async def test_the_llm_agents_corrected_mistakes_are_labelled_kept_and_never_targets(browser, server, tmp_path):
    """A real Chromium episode of the LLM agent per template: the scripted
    model types a wrong value (enter-text) or picks a wrong option
    (choose-list), then corrects it; both pass their judge, go through the
    real quality stage (replayed, exhaustive minimality dropping what is not
    needed), and come out with the mistake labelled and in no view's targets."""
    from bootstrap.source import BootstrapSource
    from synth.config import BootstrapSourceConfig
    from synth.env import BrowserConfig
    from synth.export.shards import export
    from synth.quality.replay import Replayer
    from synth.query import connect, stats_tables
    from synth.tasks import select_templates, tasks_from

    config = BootstrapSourceConfig(enabled=True, base_url=server.url, model="mock-agent", api_key=SecretStr("k"),
                                   cache_path=None)
    src = BootstrapSource(config=config)
    src._playwright, src._browser = "shared", browser  # the session's Chromium
    recorded = []
    # the wrong reply: the agent's 2nd request is enter-text's typing, the 1st choose-list's choice
    for template, fault in (("enter-text", "wrong:on=2"), ("choose-list", "wrong:on=1")):
        server.reset()
        server.set_faults([fault])
        t = await src.run(tasks_from(MINIWOB, [template], seeds=1)[0])
        assert t.status == "accepted" and t.verdict.passed, (template, t.reject_reason)
        recorded.append(t)
    server.set_faults([])
    await src.client.aclose()
    await src._pages.close()
    typed, chosen = recorded
    assert [s.action.name for s in typed.steps] == ["click", "type", "press", "type", "click", "done"]
    assert typed.steps[1].action.text == typed.steps[3].action.text + "x"
    assert [s.action.name for s in chosen.steps] == ["select", "select", "click", "done"]
    assert all(s.role == "normal" for t in recorded for s in t.steps)  # as staged: nothing labelled yet
    staging.write_batch(tmp_path / "staging", recorded, "batch-000000")

    replayer = Replayer(browser=BrowserConfig(screenshots=False, snapshots=False))
    replayer._playwright, replayer._browser = "shared", browser
    loop = asyncio.get_running_loop()

    def replay(jobs):  # the gate is synchronous; it runs in a thread, the replays on this loop
        return [asyncio.run_coroutine_threadsafe(replayer.verify(j), loop).result() for j in jobs]

    tasks = TaskSet([(site, tpl, range(1)) for site, tpl in select_templates(MINIWOB, ["enter-text", "choose-list"])])
    quality = QualityConfig.model_validate({"minimality": {"mode": "drop", "exhaustive": True}})
    try:
        verdicts, gates = await asyncio.to_thread(assess, tmp_path, quality, tasks, replay)
    finally:
        await replayer._pages.close()
    for t in recorded:
        v = verdicts[t.trajectory_id]
        assert v.status == "accepted" and v.replay_passed, (t.template_id, v)
        assert v.labels and not set(v.drop_steps) & set(v.labels), (t.template_id, v)  # neither step removed
    assert gates["mistakes"]["accepted_by_kind"] == {"typo": 1, "wrong-option": 1}
    assert gates["replay"]["replayed"] == 2

    export(tmp_path, verdicts=verdicts)
    steps = pq.read_table(tmp_path / "data/steps", columns=["trajectory_id", "step_index", "role", "reflection",
                                                             "action"]).to_pylist()
    roles = {(r["trajectory_id"], r["step_index"]): (r["role"], r["reflection"]) for r in steps}
    wrong, right = typed.steps[1].action.text, typed.steps[3].action.text
    assert roles[(typed.trajectory_id, 1)] == ("mistake", None)
    assert roles[(typed.trajectory_id, 2)] == (
        "recovery", f"I typed '{wrong}' into the textbox instead of '{right}'; select its text and type '{right}'.")
    assert roles[(typed.trajectory_id, 3)][0] == "normal"
    assert roles[(chosen.trajectory_id, 0)] == ("mistake", None) and roles[(chosen.trajectory_id, 1)][0] == "recovery"
    # the mistakes are in no SFT view's targets; the steps after them are
    for view in ("sft-aguvis-grounding", "sft-aguvis-planning", "sft-cogagent", "sft-messages"):
        samples = pq.read_table(tmp_path / "data" / view, columns=["trajectory_id", "step_index"]).to_pylist()
        targets = {(r["trajectory_id"], r["step_index"]) for r in samples}
        assert (typed.trajectory_id, 1) not in targets and (typed.trajectory_id, 2) in targets, view
        assert (chosen.trajectory_id, 0) not in targets, view
        # (CogAgent has no operation for a select: it leaves out the select and the steps after it)
        assert ((chosen.trajectory_id, 1) in targets) is (view != "sft-cogagent"), view
    openai = [json.loads(line) for f in (tmp_path / "data/sft-openai").glob("*.jsonl") for line in f.open()]
    assert openai and not any(wrong in json.dumps(m["messages"][-1]) for m in openai)
    # `synth stats`: detected mistakes per source, template and kind
    cols, rows = stats_tables(connect(tmp_path))["detected mistakes"]
    table = {(r[cols.index("template_id")], r[cols.index("kind")]): r[cols.index("accepted")] for r in rows}
    assert table == {("miniwob/enter-text", "typo"): 1, ("miniwob/choose-list", "wrong-option"): 1}
