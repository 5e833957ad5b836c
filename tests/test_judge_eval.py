"""Judge accuracy measured against an oracle that shares no code with the
judges: the figures, the oracle, a deliberately weak judge caught in a real
browser on the shop and on Trac, the CLI, and the pipeline gate that stops a
template whose judge measured below the threshold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synth.config import QualityConfig
from synth.judge_eval import Accuracy, EndState, Labelled, evaluate, oracle_label, state_diff
from synth.quality.stage import _judge_accuracy_gate, _Light, Verdict
from synth.tasks import load_templates

ROOT = Path(__file__).resolve().parent.parent


def item(judge: bool, correct: bool) -> Labelled:
    return Labelled("shop/x", "state_match", 0, "solver", judge, correct, "", "")


def test_figures_against_a_hand_computed_confusion_matrix():
    acc = Accuracy()
    for judge, correct, n in ((True, True, 20), (True, False, 5), (False, False, 10), (False, True, 5)):
        for _ in range(n):
            acc.add(item(judge, correct))
    assert (acc.tp, acc.fp, acc.tn, acc.fn, acc.n, acc.negatives) == (20, 5, 10, 5, 40, 15)
    assert acc.precision == pytest.approx(0.8) and acc.recall == pytest.approx(0.8)
    # observed 0.75; chance (25*25 + 15*15) / 40^2 = 0.53125; kappa = 0.21875 / 0.46875
    assert acc.kappa == pytest.approx(0.466667, abs=1e-5)
    assert len(acc.disagreements) == 10
    perfect = Accuracy()
    for judge in (True, False):
        perfect.add(item(judge, judge))
    assert perfect.kappa == 1.0 and perfect.precision == 1.0


def test_the_oracle_compares_whole_states_and_answers_with_the_reference():
    ref = (EndState(state={"cart": {"items": [{"id": 3, "qty": 1}]}, "orders": []}), "$12.50")
    same = EndState(state={"cart": {"items": [{"id": 3, "qty": 1}]}, "orders": []})
    assert oracle_label(same, " $12.50. ", ref)[0]
    extra = EndState(state={"cart": {"items": [{"id": 3, "qty": 1}, {"id": 4, "qty": 1}]}, "orders": []})
    ok, why = oracle_label(extra, "$12.50", ref)
    assert not ok and "$.cart.items: 2 items" in why
    assert not oracle_label(same, "$13.00", ref)[0]
    # a site's own verdict wins (MiniWoB++'s reward): no reference needed
    assert oracle_label(EndState(state={}, outcome=True), None, None) == (True, "the site's own verdict")
    assert state_diff({"a": 1, "b": [1, 2]}, {"a": 2, "b": [1, 3]}) == ["$.a: 1 (reference 2)", "$.b[1]: 2 (reference 3)"]


WEAK = """
site: shop
defaults: {seeds: {start: 0, count: 100}, start_url: /}
templates:
  - id: add-to-cart-weak
    max_steps: 20
    slots:
      product: >-
        SELECT id, name, size_label FROM products WHERE stock >= 5 AND len(colors) >= 2 AND len(sizes) >= 2
      color: "SELECT unnest(colors) AS color FROM products WHERE id = {{ product.id }}"
      size: "SELECT unnest(sizes) AS size FROM products WHERE id = {{ product.id }}"
      qty: "SELECT unnest([2, 3]) AS qty"
    intent: >-
      Add {{ qty }} units of the {{ product.name }} in {{ color }}, {{ product.size_label | lower }} {{ size }},
      to your cart.
    judge:   # checks the product only: another colour, size or quantity passes
      type: state_match
      path: "$.cart.items[*]"
      expected: {product_id: "{{ product.id }}"}
    solver: shop.add-to-cart
"""


async def test_a_judge_that_checks_too_little_shows_false_accepts(tmp_path):
    """The shop's add-to-cart solver and a judge that reads only the
    product: the perturbed runs that typed another quantity or chose
    another option end in a cart the oracle finds wrong, and the weak judge
    accepts them. The shipped judge of the same prototype accepts none."""
    (tmp_path / "weak.yaml").write_text(WEAK)
    pairs = load_templates(tmp_path / "weak.yaml") + [
        p for p in load_templates(ROOT / "templates/tasks/shop/orders.yaml") if p[1].id == "add-to-cart"
    ]
    report = await evaluate(pairs, instances=2, concurrency=2)
    assert not report.problems, report.problems
    weak, shipped = report.by_template()["shop/add-to-cart-weak"], report.by_template()["shop/add-to-cart"]
    assert weak.fp >= 1 and weak.precision < 1.0, weak.summary()
    kinds = {i.kind for i in weak.disagreements if i.judge_passed}
    assert kinds & {"different value typed", "neighbour chosen"}, kinds
    assert shipped.fp == 0 and shipped.tp >= 2 and shipped.tn >= 4, shipped.summary()
    # the solver's run and its replay are positives the oracle confirms
    assert all(i.correct for i in report.items if i.kind in ("solver", "solver replayed"))
    assert {i.kind for i in report.items if not i.correct} >= {"last step dropped", "nothing done"}


@pytest.mark.slow
def test_judges_eval_cli_on_a_real_application(tmp_path):
    """`synth judges eval` on Trac (a real third-party application, its own
    SQLite database as the oracle's state): the table, the JSON report and
    its per-template figures."""
    pytest.importorskip("trac")
    pipeline = tmp_path / "trac.yaml"
    pipeline.write_text(f"name: t\noutput_dir: {tmp_path / 'out'}\ntasks:\n"
                        f"  - templates: {ROOT / 'apps/trac/templates'}\n    include: [set-priority, ticket-owner]\n")
    synth = str(Path(sys.executable).with_name("synth"))
    run = subprocess.run([synth, "judges", "eval", str(pipeline), "-n", "2", "--json", str(tmp_path / "j.json"),
                          "--min-labelled", "10"], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert run.returncode in (0, 1), run.stderr[-3000:]
    assert "judge accuracy per template" in run.stdout and "trac/set-priority" in run.stdout, run.stdout
    report = json.loads((tmp_path / "j.json").read_text())
    for tid in ("trac/set-priority", "trac/ticket-owner"):
        figures = report["templates"][tid]
        assert figures["n"] >= 10 and figures["negatives"] >= 5, figures
        assert figures["fp"] == 0 and figures["precision"] == 1.0, (tid, figures)
    assert report["judges"]["state_match"]["tp"] >= 2 and report["judges"]["string_match"]["tp"] >= 2
    assert run.returncode == 0, run.stdout[-3000:]


def test_the_pipeline_gate_rejects_templates_below_the_measured_precision():
    config = QualityConfig.model_validate({"judge_accuracy": {"report": "j.json", "min_precision": 0.95}})

    def light(tid: str, n: int) -> _Light:
        return _Light(f"{tid}-{n}", f"{tid}-{n}", tid, n, True, None, 1, "", [], b"", [])

    alive = [light("shop/a", 0), light("shop/b", 0), light("shop/b", 1), light("shop/c", 0)]
    verdicts = {it.trajectory_id: Verdict("accepted", None) for it in alive}
    counts, kept = _judge_accuracy_gate(config, {"shop/a": 1.0, "shop/b": 0.5}, alive, verdicts)
    assert [it.template_id for it in kept] == ["shop/a", "shop/c"]  # unmeasured: accepted by default
    assert counts == {"in": 4, "rejected": 2, "by_template": {"shop/b": 2}}
    assert verdicts["shop/b-0"].reject_reason == "judge_accuracy: its judge's measured precision 0.50 < 0.95 (j.json)"
    strict = QualityConfig.model_validate({"judge_accuracy": {"report": "j.json", "unmeasured": "reject"}})
    _, kept = _judge_accuracy_gate(strict, {"shop/a": 1.0}, alive, {it.trajectory_id: Verdict("accepted", None) for it in alive})
    assert [it.template_id for it in kept] == ["shop/a"]


def test_judges_eval_counts_a_reviewers_override_as_a_false_reject(tmp_path, monkeypatch):
    """`synth judges eval --reviews`: the reviewers' verdicts in an annotation
    queue join the labels, an override of the judge as its false reject; the
    pipeline's own queue is read without the option. The oracle's episodes
    are stubbed out (the tests above run them): this is about the merge."""
    from typer.testing import CliRunner

    from annotation_ui.store import Store
    from synth.cli import app
    from synth.judge_eval import JudgeReport
    from synth.sites.miniwob import make_task
    from test_annotation_store import fake_trajectory

    async def no_episodes(pairs, **_) -> JudgeReport:
        return JudgeReport()

    monkeypatch.setattr("synth.judge_eval.evaluate", no_episodes)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"name: p\noutput_dir: {tmp_path / 'out'}\ntasks:\n"
                        f"  - templates: {ROOT / 'templates/tasks/miniwob.yaml'}\n    include: [click-button]\n")
    # the judge failed two (one on a template the pipeline does not measure) and passed one
    queued = [(make_task("click-button", 0), False), (make_task("click-button", 1), True), (make_task("enter-text", 0), False)]
    judge_passed = {t.task_id: passed for t, passed in queued}
    store = Store(tmp_path / "q.db")
    store.enqueue_many([(t, 1, "manual", 0) for t, _ in queued])
    user = store.user_by_token(store.add_user("ann", "labeler"))
    ids = {}
    while lease := store.lease_next(user):
        t = fake_trajectory(lease.task, "ann", passed=judge_passed[lease.task.task_id])
        store.submit(user, lease.item_id, t.model_copy(update={"task_config": lease.task.model_dump_json()}))
        ids[(lease.task.template_id, lease.task.seed)] = t.trajectory_id
    store.add_review(ids["miniwob/click-button", 0], "rev", "accept", ["judge-wrong"], "", override_reason="it was clicked")
    store.add_review(ids["miniwob/click-button", 1], "rev", "accept", [], "")
    store.add_review(ids["miniwob/enter-text", 0], "rev", "accept", [], "", override_reason="not measured here")
    store.close()

    run = CliRunner().invoke(app, ["judges", "eval", str(pipeline), "-n", "1", "--reviews", str(tmp_path / "q.db"),
                                   "--json", str(tmp_path / "j.json"), "--min-labelled", "1"])
    said = "2 labels from reviews in " + str(tmp_path / "q.db") + ", 1 of them overrides of the judge"
    assert said in run.output and "1 on templates not measured here left out" in run.output, run.output
    figures = json.loads((tmp_path / "j.json").read_text())["templates"]["miniwob/click-button"]
    assert (figures["tp"], figures["fn"], figures["fp"], figures["tn"]) == (1, 1, 0, 0)
    assert "below target miniwob/click-button: recall 0.50" in run.output and run.exit_code == 1
    # the pipeline's own queue, without the option; a queue named that is not there is an error
    (tmp_path / "out").mkdir()
    (tmp_path / "q.db").rename(tmp_path / "out/annotations.db")
    run = CliRunner().invoke(app, ["judges", "eval", str(pipeline), "-n", "1", "--min-labelled", "1"])
    assert "2 labels from reviews in " + str(tmp_path / "out/annotations.db") in run.output, run.output
    run = CliRunner().invoke(app, ["judges", "eval", str(pipeline), "--reviews", str(tmp_path / "q.db")])
    assert run.exit_code == 2 and "no annotation queue at" in run.output
