"""Quality gates on real recorded trajectories and on synthetic near-duplicates."""

from __future__ import annotations

import random

from synth.solver import get_solver
from synth.episode import run_episode
from synth.quality.consistency import ConsistencyCheck, check
from synth.quality.dedup import Dedup, near_duplicate_groups, optimal_bands


async def record(env, make_task, name, seed):
    return await run_episode(env, make_task(name, seed), get_solver(f"miniwob.{name}"), source="solver",
                             source_detail=f"miniwob.{name}")


async def test_solver_trajectories_raise_no_flags(env, make_task):
    for name, seed in [("login-user", 0), ("click-checkboxes", 1), ("enter-text", 2)]:
        t = await record(env, make_task, name, seed)
        assert t.status == "accepted" and check(t) == [], (name, check(t))


async def test_flags_name_what_is_wrong(env, make_task):
    t = await record(env, make_task, "login-user", 0)
    click = next(s for s in t.steps if s.action.name == "click")
    typed = next(s for s in t.steps if s.action.name == "type")
    # a click whose point is outside the element it claims
    click.action = click.action.model_copy(update={"x": 0.99, "y": 0.99})
    typed.action = typed.action.model_copy(update={"text": "hallucinated-value"})
    t.steps.append(t.steps[-1].model_copy(update={"index": len(t.steps)}))  # same action, same state
    flags = check(t, max_steps=3)
    assert {"click_outside_target", "typed_text_ungrounded", "loop", "too_many_steps"} <= set(flags)
    gate = ConsistencyCheck(max_steps={t.template_id: 3}, ignore=frozenset({"loop"}))
    (out,) = list(gate([t]))
    assert "loop" in out.consistency_flags and "loop" not in gate.rejects(out)


async def test_exact_duplicates_keep_the_passing_shortest(env, make_task):
    a = await record(env, make_task, "click-button", 4)
    b = a.model_copy(deep=True, update={"trajectory_id": "b-copy"})
    c = a.model_copy(deep=True, update={"trajectory_id": "0-failed"})
    c.verdict = c.verdict.model_copy(update={"passed": False})
    other = await record(env, make_task, "login-user", 5)
    Dedup()([c, b, a, other])
    kept = min([a, b], key=lambda t: t.trajectory_id)
    assert kept.duplicate_of is None and other.duplicate_of is None
    assert {t.duplicate_of for t in (a, b, c) if t is not kept} == {kept.trajectory_id}


def test_near_duplicates_found_and_distinct_rows_kept():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    base = [" ".join(rng.choices(vocab, k=60)) for _ in range(400)]
    edited = []
    for text in base[:100]:
        words = text.split()
        words[rng.randrange(60)] = "CHANGED"
        edited.append(" ".join(words))
    groups = near_duplicate_groups(base + edited, threshold=0.8)
    assert all(groups[i] == i for i in range(400))  # unrelated rows stay apart
    found = sum(groups[400 + i] == i for i in range(100))
    assert found >= 90  # one word in 60 changed: Jaccard ~0.9


def test_band_choice_matches_datasketch():
    # datasketch 1.6 _optimal_param gives these for the same settings
    assert optimal_bands(0.8, 128) == (9, 13)
    assert optimal_bands(0.5, 128) == (25, 5)
    assert optimal_bands(0.7, 256) == (25, 10)


def test_near_duplicates_verified_by_exact_jaccard():
    # 40 distinct words, one changed in the middle: 38 word 3-grams each, 3 of
    # them differ, so the Jaccard similarity is exactly 35 / 41 = 0.854
    words = [f"w{i}" for i in range(40)]
    edited = words[:20] + ["other"] + words[21:]
    texts = [" ".join(words), " ".join(edited)]
    assert near_duplicate_groups(texts, threshold=0.85) == [0, 0]
    assert near_duplicate_groups(texts, threshold=0.86) == [0, 1]


def test_near_duplicate_groups_are_transitive_and_row_order_free():
    rng = random.Random(1)
    vocab = [f"v{i}" for i in range(500)]
    a = [rng.choice(vocab) for _ in range(60)]
    b = a[:10] + ["x"] + a[11:]  # a ~ b
    c = b[:50] + ["y"] + b[51:]  # b ~ c, so a, b, c are one group
    d = [rng.choice(vocab) for _ in range(60)]
    texts = [" ".join(t) for t in (d, c, a, b)]
    assert near_duplicate_groups(texts) == [0, 1, 1, 1]
    assert near_duplicate_groups(texts[::-1]) == [0, 0, 0, 3]


def test_packed_replay_steps_round_trip():
    from synth.quality.replay import ReplayStep, pack_steps, unpack_steps
    from synth.schema import Action

    steps = [
        ReplayStep(Action(name="click", x=0.25, y=0.5), 0.0),
        ReplayStep(Action(name="type", text="héllo 'x'"), 120.5),
        ReplayStep(Action(name="press", key="Control+a")),
        ReplayStep(Action(name="drag", x=0.1, y=0.2, x2=0.3, y2=0.4)),
        ReplayStep(Action(name="scroll", dy=0.5)),
        ReplayStep(Action(name="answer", text="42")),
    ]
    assert unpack_steps(pack_steps(steps)) == steps
    assert unpack_steps(pack_steps([])) == []


def test_a_click_moved_across_the_page_is_not_a_near_duplicate():
    from synth.quality.dedup import Item, action_key, duplicates
    from synth.schema import Action

    def one_click(i: str, y: float) -> Item:
        return Item(i, action_key('Close the dialog box by clicking the "x".', [Action(name="click", x=0.68, y=y)]), True, 1)

    # one word differs: 9 of 11 three-grams shared, Jaccard 0.82 >= 0.8
    base, jitter, moved = one_click("a", 0.47), one_click("b", 0.48), one_click("c", 0.42)
    assert duplicates([base, jitter]) == {"b": "a"}  # a 0.01 jitter: the same sample
    assert duplicates([base, moved]) == {}  # the dialog elsewhere: another grounding sample
    assert duplicates([base, moved], tolerance=0.1) == {"c": "a"}


def test_dedup_verdicts_do_not_depend_on_the_order_trajectories_are_read_in():
    """click-collapsible's keys differ only in where Submit is: clicks 0.02
    apart are near duplicates, 0.04 apart are not, so chains form, and which
    links LSH proposes (each text with its bucket's first) must not depend on
    staging's file order: two make runs once disagreed on one of 1,190."""
    import random

    from synth.quality.dedup import Item, duplicates

    rng = random.Random(3)
    head = "expand the section below and click submit. || pyautogui.click(x=0.5, y={}) ; "
    items = [
        Item(f"t{i:02d}", head.format(rng.choice((0.3, 0.35))) +
             f"pyautogui.click(x=0.32, y={rng.randrange(80, 100) / 100})", True, 2)
        for i in range(40)
    ]
    verdicts = set()
    for _ in range(12):
        rng.shuffle(items)
        verdicts.add(tuple(sorted(duplicates(list(items)).items())))
    assert len(verdicts) == 1, f"{len(verdicts)} different verdicts for 12 orders of the same trajectories"


# ---------------------------------------------------------------- typed text the task asks to compute


async def solve_arithmetic(env, obs, before: str | None = None):
    """MiniWoB's simple-arithmetic ("Solve the math problem..."): read
    "a op b =", type the result (optionally `before` first, then clear it)."""
    import re

    from synth.schema import Action

    problem = next(e for e in obs.elements if re.fullmatch(r"\s*\d+ [-+x] \d+ =\s*", e.name))
    a, op, b = re.fullmatch(r"\s*(\d+) ([-+x]) (\d+) =\s*", problem.name).groups()
    result = {"+": int(a) + int(b), "-": int(a) - int(b), "x": int(a) * int(b)}[op]
    field = obs.find(role="textbox")
    obs = await env.click(field)
    if before is not None:
        obs = await env.type(before)
        obs = await env.step(Action(name="press", key="Control+a"))
        obs = await env.step(Action(name="press", key="Backspace"))
    obs = await env.type(str(result))
    await env.click(obs.find("Submit", role="button"))


async def test_computed_answers_are_grounded_where_the_template_says_so(env, make_task):
    """simple-arithmetic asks for a result no page shows: without a
    declaration the flag fires whenever the result's digits are not on the
    page (here on most seeds); a template declaring `typed_text: computed`
    grounds the answer the passing judge read, and only that."""
    import functools

    from synth.quality.consistency import TemplateConsistency

    computed = TemplateConsistency(typed_text="computed")
    trajectories = [await run_episode(env, make_task("simple-arithmetic", seed), solve_arithmetic,
                                      source="solver", source_detail="test") for seed in range(10)]
    assert all(t.status == "accepted" for t in trajectories), [t.reject_reason for t in trajectories]
    undeclared = [check(t) for t in trajectories]
    assert sum(flags == ["typed_text_ungrounded"] for flags in undeclared) >= 3, undeclared
    assert all(check(t, rules=computed) == [] for t in trajectories)

    # a hallucinated value typed (and cleared) before the answer is still one
    noisy = await run_episode(env, make_task("simple-arithmetic", 0),
                              functools.partial(solve_arithmetic, before="forty-two"),
                              source="solver", source_detail="test")
    assert noisy.status == "accepted"
    assert check(noisy, rules=computed) == ["typed_text_ungrounded"]
    # and nothing is grounded by a judge that failed
    wrong = trajectories[0].model_copy(deep=True)
    wrong.verdict = wrong.verdict.model_copy(update={"passed": False})
    assert check(wrong, rules=computed) == check(wrong)


async def test_a_judges_expected_value_grounds_a_computed_answer_only(env, make_task):
    """Where the judge spec holds the answer, typed text is grounded by being
    that answer (normalised), not by the judge having passed."""
    import json

    from synth.quality.consistency import TemplateConsistency

    computed = TemplateConsistency(typed_text="computed")
    for seed in range(10):  # an episode whose result is not on the page
        t = await run_episode(env, make_task("simple-arithmetic", seed), solve_arithmetic, source="solver",
                              source_detail="test")
        if check(t):
            break
    typed = next(s.action.text for s in t.steps if s.action.name == "type")

    def judged(expected):
        config = json.loads(t.task_config)
        config["judge"] = {"type": "all_of", "judges": [{"type": "string_match", "expected": expected}]}
        return t.model_copy(update={"task_config": json.dumps(config)})

    assert check(judged([f"{typed}.00"]), rules=computed) == []
    assert check(judged(["12345"]), rules=computed) == ["typed_text_ungrounded"]
    assert check(judged([typed])) == ["typed_text_ungrounded"]  # undeclared: the judge grounds nothing


def test_typed_text_is_grounded_by_words_not_by_fragments():
    from synth.quality.consistency import grounded

    assert grounded("Agustina", 'Enter "agustina" into the field')
    assert grounded("2010-05-20", "Enter 05/20/2010 as the date")
    assert not grounded("7", "Copyright 2017")  # a digit inside another number grounds nothing
    assert not grounded("ab", "grab a bag")


def test_templates_declare_their_consistency_rules(tmp_path):
    from synth.config import ConfigError
    from synth.tasks import TaskSet, load_templates, seed_range

    path = tmp_path / "arith.yaml"
    path.write_text(
        "site: miniwob\n"
        "templates:\n"
        "  - {id: simple-arithmetic, params: {task: simple-arithmetic}, judge: {type: miniwob_reward},\n"
        "     consistency: {typed_text: computed, ignore: [loop]}}\n"
        "  - {id: enter-text, params: {task: enter-text}, judge: {type: miniwob_reward}}\n"
    )
    (site, arith), (_, plain) = load_templates(path)
    assert arith.consistency.typed_text == "computed" and arith.consistency.ignore == ["loop"]
    assert plain.consistency.typed_text == "seen" and plain.consistency.ignore == []
    tasks = TaskSet([(site, tpl, seed_range(tpl, 2)) for tpl in (arith, plain)])
    assert tasks.consistency("miniwob/simple-arithmetic").typed_text == "computed"
    assert tasks.consistency("miniwob/no-such") is None
    path.write_text(
        "site: miniwob\n"
        "templates:\n"
        "  - {id: x, params: {task: enter-text}, judge: {type: miniwob_reward}, consistency: {ignore: [loops]}}\n"
    )
    try:
        load_templates(path)
    except ConfigError as e:
        assert "templates[0] (x)" in str(e) and "consistency.ignore" in str(e) and "loops" in str(e), str(e)
    else:
        raise AssertionError("an unknown flag loaded")


async def test_a_templates_ignored_flag_is_recorded_but_does_not_reject(env, make_task):
    from synth.quality.consistency import TemplateConsistency

    t = await record(env, make_task, "login-user", 3)
    t.steps.append(t.steps[-1].model_copy(update={"index": len(t.steps)}))  # a loop
    rules = TemplateConsistency(ignore=["loop"])
    plain, lenient = ConsistencyCheck(), ConsistencyCheck(templates={t.template_id: rules})
    (out,) = list(lenient([t]))
    assert out.consistency_flags == ["loop"] and lenient.rejects(out) == [] and plain.rejects(out) == ["loop"]
