"""`synth tasks validate`: every shipped shop and forum prototype's solver
passes its judge, and no negative control (no-op, wrong answer, another
instance's end state) is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.schema import JudgeSpec, Task
from synth.tasks import instantiate, load_templates
from synth.validate import expected_answers, other_instance, validate

ROOT = Path(__file__).resolve().parents[1]
SITES = [ROOT / "templates" / "tasks" / "shop", ROOT / "templates" / "tasks" / "forum"]
INSTANCES = 1  # `synth tasks validate` runs 3 by default; the controls need only one


@pytest.mark.timeout(600)
async def test_every_shipped_prototype_validates():
    reports = await validate(SITES, instances=INSTANCES, concurrency=3)
    assert len(reports) >= 12
    table = {
        r.template_id: (r.solver_passes, r.instances, {k: (c.false_accepts, c.runs) for k, c in r.controls.items()})
        for r in reports
    }
    bad = {r.template_id: (r.problems, r.solver_failures, [c.examples for c in r.controls.values()])
           for r in reports if not r.ok}
    assert not bad, bad
    for r in reports:
        assert r.solver_passes == r.instances == INSTANCES, table
        assert r.controls["no-op"].runs == INSTANCES and r.controls["other instance"].runs == INSTANCES, table
        assert r.false_accepts == 0, table
    answer_tasks = [r for r in reports if r.controls["wrong answer"].runs]
    assert len(answer_tasks) >= 4  # information seeking prototypes


def test_controls_pick_an_instance_that_expects_something_else():
    def t(i: int, expected: str) -> Task:
        return Task(task_id=str(i), template_id="x/y", site="shop", seed=i,
                    judge=JudgeSpec(type="string_match", expected=expected))

    pool = [t(0, "$10.00"), t(1, "10"), t(2, "$12.00")]
    assert other_instance(pool[0], pool).task_id == "2"  # "$10.00" and "10" are the same answer
    nested = JudgeSpec.model_validate({"type": "all_of", "judges": [{"type": "string_match", "expected": ["a", "b"]},
                                                                    {"type": "url_match", "path": "/"}]})
    assert expected_answers(nested) == ["a", "b"]
    (pair,) = [(s, tpl) for s, tpl in load_templates(SITES[1]) if tpl.id == "vote-post"]
    tasks = instantiate(*pair, seeds=10)
    other = other_instance(tasks[0], tasks)
    assert other is not None and other.judge != tasks[0].judge


def test_a_judge_that_accepts_anything_fails_validation(tmp_path):
    """The controls catch a weak judge: here one that passes whatever happens."""
    (tmp_path / "weak.yaml").write_text(
        "site: forum\n"
        "templates:\n"
        "  - id: vote-post\n"
        "    slots: {post: \"SELECT id, title, forum_name FROM posts WHERE author <> (SELECT username FROM me)\",\n"
        "            vote: \"SELECT * FROM (VALUES ('Upvote', 1)) t(verb, value)\"}\n"
        "    intent: '{{ vote.verb }} the post \"{{ post.title }}\" in the {{ post.forum_name }} forum.'\n"
        "    judge: {type: state_match, path: '$.votes[*].id', mode: none, expected: -1}\n"
        "    solver: forum.vote-post\n"
    )
    result = CliRunner().invoke(app, ["tasks", "validate", str(tmp_path), "-n", "1", "--min-distinct", "1"])
    assert result.exit_code == 1, result.output
    assert "forum/vote-post" in result.output and "FAIL" in result.output
    assert "no-op was accepted" in result.output


MINIWOB = ROOT / "templates" / "tasks" / "miniwob.yaml"


@pytest.mark.timeout(600)
async def test_miniwob_controls_end_the_episode_with_wrong_work():
    """Every MiniWoB++ seed has the same judge (`miniwob_reward`): the page
    holds what is right. The controls are another seed's solution replayed
    here and this seed's solution with one click moved to a sibling; on
    login-user both reach MiniWoB's reward code, which rejects them (-1), and
    a task with nothing to click instead says so rather than passing quietly."""
    reports = await validate(MINIWOB, instances=2, include=["login-user", "click-test-2", "focus-text"])
    by_id = {r.template_id: r for r in reports}
    assert set(by_id) == {"miniwob/login-user", "miniwob/click-test-2", "miniwob/focus-text"}
    for r in reports:
        assert r.ok, (r.template_id, r.problems, r.solver_failures, {k: c.examples for k, c in r.controls.items()})
        assert r.solver_passes == 2 and r.controls["no-op"].runs == 2
    login = by_id["miniwob/login-user"]
    for name in ("other instance", "near miss"):
        c = login.controls[name]
        assert c.runs == 2 and c.false_accepts == 0 and c.errors == 0, (name, c)
        assert all("MiniWoB raw reward -1" in why for why in c.rejections), (name, c.rejections)
    test2 = by_id["miniwob/click-test-2"].controls["near miss"]  # TWO instead of ONE
    assert test2.runs == 2 and all("MiniWoB raw reward -1" in why for why in test2.rejections), test2
    focus = by_id["miniwob/focus-text"]  # one text box, and focusing it is the whole task
    assert focus.controls["near miss"].runs == 0 and focus.controls["near miss"].inapplicable == 2
    assert any(n.startswith("near miss: for 2 seed(s) the solution has no click") for n in focus.notes), focus.notes


def test_a_miniwob_judge_that_accepts_any_ending_fails_validation(tmp_path):
    """The controls test the reward, not only that the episode ended: with
    `min_reward: -1` every ended episode passes, and validate says so."""
    (tmp_path / "weak.yaml").write_text(
        "site: miniwob\n"
        "templates:\n"
        "  - {id: login-user, params: {task: login-user}, solver: miniwob.login-user, max_steps: 10,\n"
        "     judge: {type: miniwob_reward, min_reward: -1}}\n"
    )
    result = CliRunner().invoke(app, ["tasks", "validate", str(tmp_path), "-n", "1"])
    assert result.exit_code == 1, result.output
    assert "miniwob/login-user" in result.output and "FAIL" in result.output
    # each control ends the episode with MiniWoB's -1 (a step failing under
    # load would leave it unended, still rejected: so either may catch it)
    assert "other instance was accepted" in result.output or "near miss was accepted" in result.output
    assert "no-op was accepted" not in result.output  # an episode that never ends is still rejected
