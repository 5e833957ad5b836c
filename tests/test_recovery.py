"""Recovery variants, recorded in a real Chromium on MiniWoB++, the shop and
Trac, verified by judge, replay and the state after the recovery; a mistake
with a lasting side effect is dropped; a form sent too early counts only where
the site refuses it; the mistake is never a training target."""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import pytest
import pytest_asyncio

from synth.env import BrowserConfig
from synth.export.formats import FORMATS, steps
from synth.judges import JudgeContext, register_judge
from synth.quality.consistency import check
from synth.quality.replay import ReplayJob, Replayer, noop_steps, steps_of
from synth import recovery as recovery_module
from synth.recovery import RecoveryConfig, RecoverySource
from synth.schema import JudgeSpec, Task, Verdict
from synth.sites.base import Setup, Site, register_site
from synth.solver import register_solver
from synth.tasks import tasks_from

ROOT = Path(__file__).resolve().parent.parent
MINIWOB = ROOT / "templates/tasks/miniwob.yaml"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def recovery():
    src = RecoverySource(browser=BrowserConfig(), config=RecoveryConfig())
    await src.setup()
    yield src
    await src.teardown()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def replayer():
    r = Replayer(browser=BrowserConfig(screenshots=False, snapshots=False))
    await r.setup()
    yield r
    await r.teardown()


def labelled(t) -> list[tuple[str, str]]:
    return [(s.action.name, s.role) for s in t.steps if s.role != "normal"]


@pytest.mark.parametrize("path, template, seed, kind, shape, how", [
    (MINIWOB, "enter-text", 0, "typo", [("type", "mistake"), ("press", "recovery")], "select its text"),
    (MINIWOB, "click-checkboxes", 0, "wrong-click", [("click", "mistake"), ("click", "recovery")], None),
    (MINIWOB, "choose-list", 0, "wrong-option", [("select", "mistake"), ("select", "recovery")], None),
    (ROOT / "templates/tasks/shop", "add-to-cart", 0, None, None, None),
    # a date input: Control+a selects nothing in it (the retyped date went
    # into its year); the field is clicked again at its month and retyped
    (MINIWOB, "enter-date", 0, "typo", [("type", "mistake"), ("click", "recovery")], "click its first part"),
    # the calendar's Next for its Prev: one Prev only undoes it; Prev twice
    (MINIWOB, "choose-date", 0, "wrong-click", [("click", "mistake"), ("click", "recovery")], "twice"),
    # a wrong day closes the calendar: it is opened again (the run's click
    # into the field), then the right day
    (MINIWOB, "choose-date", 8, "wrong-click", [("click", "mistake"), ("click", "recovery")], "open it again"),
    # the wrong tab's panel was seen first: the right panel's nodes have
    # other ids than in the clean run, on the same page (page_key)
    (MINIWOB, "click-tab-2", 1, "wrong-click", [("click", "mistake"), ("click", "recovery")], None),
])
async def test_a_verified_variant_passes_its_judge_and_replays(recovery, replayer, path, template, seed, kind, shape,
                                                               how):
    task = tasks_from(path, [template], seeds=seed + 1)[seed]
    t = await recovery.run(task)
    assert t.status == "accepted", t.reject_reason
    assert t.source == "recovery" and t.verdict.passed
    if kind:
        assert t.source_detail.split(":")[-1].startswith(kind), t.source_detail
        assert labelled(t) == shape
    mistake = next(i for i, s in enumerate(t.steps) if s.role == "mistake")
    fix = t.steps[mistake + 1]
    assert fix.role == "recovery" and fix.reflection and fix.monologue.thought == fix.reflection
    if how:
        assert how in fix.reflection, fix.reflection
    # the variant replays from its recorded actions, mistake included, on a cold page
    result = await replayer.verify(ReplayJob(t.trajectory_id, task, steps_of(t)))
    assert result.passed, result.reason
    # no gate takes the mistake or the recovery for noise, and the mistake is not flagged
    assert not {mistake, mistake + 1} & set(noop_steps(t))
    assert check(t) == []


def test_the_page_compared_after_a_recovery_is_what_it_shows_not_its_node_ids():
    """Ids count the nodes an episode has seen (a mistake shows some): the
    same page with other ids is the same page; any other difference is not."""
    from synth.schema import Box, Element, Observation

    def page(ids: tuple[int, int, int], value: str = "a", parent: int = 0, url: str = "http://x/") -> Observation:
        box = Box(x=0, y=0, width=10, height=10)
        return Observation(url=url, area=box, elements=[
            Element(id=ids[0], tag="form", role="form", box=box),
            Element(id=ids[1], parent=ids[parent], tag="input", role="textbox", name="Name", value=value, box=box),
            Element(id=ids[2], parent=ids[0], tag="button", role="button", name="Go", box=box),
        ])

    key = recovery_module.page_key
    assert key(page((1, 2, 3))) == key(page((1, 7, 9)))
    assert key(page((1, 2, 3))) != key(page((1, 2, 3), value="b"))
    assert key(page((1, 2, 3))) != key(page((1, 2, 3), parent=2))
    assert key(page((1, 2, 3))) != key(page((1, 2, 3), url="http://x/other"))


async def test_a_variant_on_a_real_application(recovery):
    """Trac (a third-party issue tracker): its own database is the state
    compared after the recovery."""
    pytest.importorskip("trac")
    done = []
    for template in ("set-priority", "comment-on-ticket", "add-keyword"):
        task = tasks_from(ROOT / "apps/trac/templates", [template], seeds=1)[0]
        t = await recovery.run(task)
        if t.status == "accepted":
            done.append((template, labelled(t)))
        else:
            assert t.reject_reason.startswith("recovery:") and t.error is None, t.reject_reason
    assert done, "no Trac template gave a verified variant"
    assert all(shape and shape[0][1] == "mistake" for _, shape in done), done


# ---------------------------------------------------------------- a mistake that cannot be undone


class _Store(http.server.BaseHTTPRequestHandler):
    """An in-test site's server: a list of items kept in memory, HTML pages."""

    items: ClassVar[list[str]] = []

    def _send(self, body: bytes | str, kind: str = "text/html") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _redirect(self, location: str) -> None:
        self.send_response(303)
        self.send_header("Location", location)
        self.end_headers()

    def _form(self) -> dict[str, list[str]]:
        return parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode(), keep_blank_values=True)

    def log_message(self, *args: Any) -> None:
        pass


class _StoreSite(Site):
    """A site served by a `_Store` handler on a free port, its items as its
    data state, a fresh store each episode (one episode at a time)."""

    handler: ClassVar[type[_Store]]
    initial: ClassVar[list[str]] = []
    instruction: ClassVar[str] = ""

    def __init__(self) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    async def setup(self, page, task):
        self.handler.items[:] = self.initial
        await page.goto(f"http://127.0.0.1:{self.server.server_port}/")
        return Setup(instruction=self.instruction)

    async def state(self, page, task) -> dict[str, Any]:
        return {"items": list(self.handler.items)}

    async def stop(self) -> None:
        self.server.shutdown()


class _Items(_Store):
    """Three items with a Delete button each (a form POST): deleting is final."""

    items: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/state":
            return self._send(json.dumps({"items": self.items}).encode(), "application/json")
        rows = "".join(
            f'<li>{i} <form method=post action="/delete" style="display:inline"><input type=hidden name=item '
            f'value="{i}"><button class="delete">Delete {i}</button></form></li>' for i in self.items
        )
        self._send(f"<!doctype html><ul>{rows}</ul>".encode(), "text/html")

    def do_POST(self) -> None:  # noqa: N802
        item = self._form().get("item", [""])[0]
        if item in self.items:
            self.items.remove(item)
        self._redirect("/")


@register_site
class ItemsSite(_StoreSite):
    name: ClassVar[str] = "test-items"
    handler = _Items
    initial = ["Alpha", "Beta", "Gamma"]
    instruction = "Delete Beta."


@register_judge("test_only_beta_deleted")
async def only_beta_deleted(ctx: JudgeContext) -> Verdict:
    items = (await ctx.state())["items"]
    ok = items == ["Alpha", "Gamma"]
    return Verdict(passed=ok, score=float(ok), reason="" if ok else f"items left: {items}")


@register_solver("test.delete-beta")
async def delete_beta(env, obs):
    await env.click(obs.find("Delete Beta", role="button"))
    await env.done()


async def test_a_mistake_with_a_lasting_side_effect_is_dropped():
    """Deleting the wrong item cannot be undone: the state after the
    'recovery' differs from the clean run's, and the variant is rejected
    saying so, though the task's own judge would have failed anyway."""
    src = RecoverySource(browser=BrowserConfig(screenshots=False), config=RecoveryConfig(kinds=["wrong-click"]))
    await src.setup()
    try:
        task = Task(task_id="items-0", template_id="test/delete-beta", site="test-items", seed=0,
                    instruction="Delete Beta.", judge=JudgeSpec(type="test_only_beta_deleted"), solver="test.delete-beta")
        t = await src.run(task)
    finally:
        await src.teardown()
    # a dropped variant, not an error: errors count against max_failure_share and abort a run
    assert t.status == "rejected" and t.error is None
    assert t.reject_reason.startswith("recovery: the mistake left a lasting change in the site's data"), t.reject_reason
    assert labelled(t)[0] == ("click", "mistake")


# ---------------------------------------------------------------- a form sent too early


def _state_reads(monkeypatch) -> list[tuple[list[str], Any]]:
    """Every state read of the recovery source, with the roles of the steps
    recorded when it was read (the read whose last step is a recovery step
    is the check right after the recovery)."""
    reads: list[tuple[list[str], Any]] = []
    state = recovery_module._state

    async def spy(env):
        got = await state(env)
        reads.append(([s.role for s in env.steps], got))
        return got

    monkeypatch.setattr(recovery_module, "_state", spy)
    return reads


async def test_an_early_submit_on_a_real_application(recovery, replayer, monkeypatch):
    """Trac refuses a new ticket without a summary with a warning on the form
    it answers with: the variant sends the form before typing the summary,
    then types it and sends the form again; it replays as recorded."""
    pytest.importorskip("trac")
    monkeypatch.setattr(recovery, "config", RecoveryConfig(kinds=["early-submit"]))
    reads = _state_reads(monkeypatch)
    task = tasks_from(ROOT / "apps/trac/templates", ["create-ticket"], seeds=1)[0]
    summary = task.instruction.split('summary "', 1)[1].rstrip('".')
    t = await recovery.run(task)
    assert t.status == "accepted" and t.verdict.passed, t.reject_reason
    assert t.source_detail.split(":")[-1].startswith("early-submit@"), t.source_detail
    mistake = next(i for i, s in enumerate(t.steps) if s.role == "mistake")
    assert t.steps[mistake].element.name == "Create ticket"
    assert not any(s.action.name == "type" for s in t.steps[:mistake])  # the summary not typed yet
    refused, fix = t.steps[mistake + 1].observation, t.steps[mistake + 1]
    assert any("Tickets must contain a summary" in e.name for e in refused.elements), "no refusal shown"
    assert fix.role == "recovery" and fix.monologue.thought == fix.reflection
    assert fix.reflection.startswith("Submitting without 'Summary' was refused ('Warning: "), fix.reflection
    recovered = [s for s in t.steps if s.role == "recovery"]
    assert [s.action.text for s in recovered if s.action.name == "type"] == [summary]
    assert recovered[-1].element.name == "Create ticket"
    # the state read right after the recovery is the clean prefix's (read first, in its own episode)
    after = [got for roles, got in reads if roles and roles[-1] == "recovery"]
    assert after == [reads[0][1]] and reads[0][1][0]["tickets"], after
    assert check(t) == []
    result = await replayer.verify(ReplayJob(t.trajectory_id, task, steps_of(t)))
    assert result.passed, result.reason


class _Form(_Store):
    """A form that adds an item by name, then lists the items on another
    page. Its Name field is `required` (the browser will not send it empty)
    or not (the site then adds an item without a name: made by mistake)."""

    items: ClassVar[list[str]] = []
    required: ClassVar[bool] = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/items":
            return self._send("<!doctype html><ul>" + "".join(f"<li>{i}</li>" for i in self.items) + "</ul>")
        field = "<input name=name" + (" required>" if self.required else ">")
        self._send(f'<!doctype html><form method=post action="/add"><label>Name {field}</label><button>Add</button></form>')

    def do_POST(self) -> None:  # noqa: N802
        self.items.append(self._form().get("name", [""])[0])
        self._redirect("/items")


@register_site
class FormSite(_StoreSite):
    name: ClassVar[str] = "test-form"
    handler = _Form
    instruction = "Add the item Delta."


@register_judge("test_only_delta_added")
async def only_delta_added(ctx: JudgeContext) -> Verdict:
    items = (await ctx.state())["items"]
    ok = items == ["Delta"]
    return Verdict(passed=ok, score=float(ok), reason="" if ok else f"items: {items}")


@register_solver("test.add-delta")
async def add_delta(env, obs):
    await env.click(obs.find("Name", role="textbox"))
    obs = await env.type("Delta")
    await env.click(obs.find("Add", role="button"))
    await env.done()


@pytest.mark.parametrize("required", [True, False], ids=["browser-refuses", "site-accepts"])
async def test_an_early_submit_counts_only_where_the_site_refuses_it(recovery, monkeypatch, required):
    """Where the browser refuses the empty required field (HTML5), its
    validation message is the refusal and the variant is kept; where the site
    takes the form and adds a nameless item, the state check drops the
    variant with its reason."""
    monkeypatch.setattr(recovery, "config", RecoveryConfig(kinds=["early-submit"]))
    monkeypatch.setattr(_Form, "required", required)
    task = Task(task_id="form-0", template_id="test/add-delta", site="test-form", seed=0,
                instruction="Add the item Delta.", judge=JudgeSpec(type="test_only_delta_added"), solver="test.add-delta")
    t = await recovery.run(task)
    assert labelled(t)[0] == ("click", "mistake"), labelled(t)
    if required:
        assert t.status == "accepted", t.reject_reason
        fix = t.steps[next(i for i, s in enumerate(t.steps) if s.role == "mistake") + 1]
        assert fix.observation.url.endswith("/") and fix.observation.find("Name", role="textbox").focused
        said = re.fullmatch(r"Submitting without 'Name' was refused \('(.+)'\): fill in 'Name' with 'Delta' and "
                            r"submit again\.", fix.reflection or "")
        assert said, fix.reflection  # the browser's validation message, quoted
        assert labelled(t) == [("click", "mistake"), ("click", "recovery"), ("type", "recovery"), ("click", "recovery")]
    else:
        assert t.status == "rejected" and t.error is None
        assert t.reject_reason.startswith("recovery: the mistake left a lasting change in the site's data"), t.reject_reason


async def test_an_early_submit_needs_a_form_the_run_sends(recovery, monkeypatch):
    """MiniWoB's enter-text types into a field and clicks Submit, which loads
    no other page (MiniWoB ends the episode, no site refuses anything): no
    early submit is tried, and the task counts as having no mistake point."""
    monkeypatch.setattr(recovery, "config", RecoveryConfig(kinds=["early-submit"]))
    t = await recovery.run(tasks_from(MINIWOB, ["enter-text"], seeds=1)[0])
    assert t.status == "rejected" and t.error is None and not t.steps
    assert t.reject_reason.startswith("recovery: no mistake point"), t.reject_reason


# ---------------------------------------------------------------- the mistake is never a training target


async def test_the_mistake_is_history_in_every_view_never_a_target(recovery, tmp_path):
    task = tasks_from(MINIWOB, ["enter-text"], seeds=1)[0]
    t = await recovery.run(task)
    assert t.status == "accepted", t.reject_reason
    row = t.model_dump()
    mistake = next(s.index for s in t.steps if s.role == "mistake")
    views = list(steps(row))
    assert mistake not in [v.index for v in views]
    after = next(v for v in views if v.index == mistake + 1)
    assert mistake in [h.index for h in after.history]
    for name, fmt in FORMATS.items():
        samples = [s for s in fmt.samples(row) if isinstance(s, dict)]
        assert samples and len(samples) <= len(t.steps) - 1, name
        if fmt.schema is not None:  # the Parquet views say which step each sample is
            indexes = [s["step_index"] for s in samples]
            assert mistake not in indexes and mistake + 1 in indexes, (name, indexes)
    # and through real staging, shards and the native Aguvis/CogAgent files built from data/steps
    from synth import staging
    from synth.export.shards import export

    staging.write_batch(tmp_path / "staging", [t], "batch-000000")
    export(tmp_path, native=["aguvis", "cogagent"])
    wrong, right = f"{t.trajectory_id}-{mistake:03d}", f"{t.trajectory_id}-{mistake + 1:03d}"
    stage1 = json.loads((tmp_path / "native/aguvis/stage1.json").read_text())
    assert right in {r["id"] for r in stage1} and wrong not in {r["id"] for r in stage1}
    native = ("train.jsonl", "dev.jsonl")
    cog = [json.loads(line) for name in native for line in (tmp_path / "native/cogagent" / name).read_text().splitlines()]
    assert right in {r["id"] for r in cog} and wrong not in {r["id"] for r in cog}


# ---------------------------------------------------------------- the gates keep the variant beside its clean run


async def test_dedup_does_not_take_a_variant_for_its_clean_run(recovery, tmp_path):
    """A variant differs from the solver's run it was made from by two or
    three steps, within the near-duplicate threshold: dedup compares variants
    only with each other, so both are kept (real staging files, real gates)."""
    from synth import staging
    from synth.config import QualityConfig
    from synth.episode import run_episode
    from synth.quality.stage import assess
    from synth.solver import get_solver
    from synth.tasks import TaskSet, select_templates

    task = tasks_from(ROOT / "templates/tasks/forum", ["comment-on-post"], seeds=1)[0]
    variant = await recovery.run(task)
    assert variant.status == "accepted", variant.reject_reason
    clean = await run_episode(await recovery.env(task), task, get_solver(task.solver), source="solver",
                              source_detail=task.solver)
    assert clean.status == "accepted", clean.reject_reason
    staging.write_batch(tmp_path / "staging", [clean, variant], "batch-000000")
    (site, tpl), = select_templates(ROOT / "templates/tasks/forum", ["comment-on-post"])
    config = QualityConfig.model_validate({"replay": {"enabled": False}})
    verdicts, gates = assess(tmp_path, config, TaskSet([(site, tpl, range(1))]), replay=None)
    assert verdicts[variant.trajectory_id].status == "accepted", verdicts[variant.trajectory_id]
    assert verdicts[clean.trajectory_id].status == "accepted"
    assert gates["dedup"]["rejected"] == 0


async def test_a_run_of_three_episodes_is_not_taken_for_a_hang(tmp_path, monkeypatch, make_task, slow_actions):
    """A recovery run plays three episodes (clean, prefix, variant). On a busy
    machine each one stays within `episode_timeout_s` while the three together
    do not; the worker must not abandon the run as hung (a make run under
    load lost shop/add-address that way and restarted the browser under its
    neighbours' episodes)."""
    from synth import workers
    from synth.workers import SourceActor

    slow_actions(1.0)
    monkeypatch.setattr(workers, "HANG_GRACE_S", 0.0)
    config = RecoveryConfig(kinds=["typo"], episode_timeout_s=12, episode_retries=0)
    actor = SourceActor.__ray_actor_class__("recovery", {"config": config}, str(tmp_path), "t", 1)
    try:
        await actor._start(actor.source)
        t = await actor._attempts(make_task("enter-text", seed=0, solver="miniwob.enter-text"))
    finally:
        await actor.shutdown()
    assert t.error is None and "typo" in t.source_detail, (t.error, t.reject_reason)
    assert t.duration_s < 12, "the variant alone fits the episode timeout"
    assert t.verdict.passed, t.verdict.reason
