"""TaskSet: a pipeline's tasks, instantiated only as they are consumed."""

from pathlib import Path

import pytest

import synth.tasks as tasks_module
from synth.config import ConfigError, load_pipeline
from synth.pipeline import plan
from synth.tasks import TaskSet, seed_range, select_templates, tasks_from
from synth.workers import Pool

MINIWOB = "templates/tasks/miniwob.yaml"


def selections(seeds: int, path: str = MINIWOB, include: list[str] | None = None):
    return [(site, tpl, seed_range(tpl, seeds)) for site, tpl in select_templates(path, include)]


def test_iterates_the_same_tasks_as_tasks_from_in_order():
    expected = tasks_from(MINIWOB, ["click-button", "enter-text"], 3)
    ts = TaskSet(selections(3, include=["click-button", "enter-text"]))
    assert len(ts) == 6
    assert [t.task_id for t in ts] == [t.task_id for t in expected]
    assert [t.task_id for t in ts] == [t.task_id for t in expected]  # iterable again


def test_limit_cuts_across_templates():
    chosen = selections(4, include=["click-button", "enter-text", "login-user"])
    first, second, third = (f"{site}/{tpl.id}" for site, tpl, _ in chosen)
    ts = TaskSet(chosen, limit=6)
    got = list(ts)
    assert len(ts) == len(got) == 6
    assert [t.template_id for t in got] == [first] * 4 + [second] * 2
    assert ts.contains(second, 1) and not ts.contains(second, 2)
    assert not ts.contains(third, 0)


def test_instantiates_lazily(monkeypatch):
    made = []
    real = tasks_module.instantiate_seed
    monkeypatch.setattr(tasks_module, "instantiate_seed", lambda *a: made.append(a[2]) or real(*a))
    ts = TaskSet(selections(1000, include=["click-button"]))
    it = iter(ts)
    first = [next(it) for _ in range(3)]
    assert len(ts) == 1000 and made == [0, 1, 2] and [t.seed for t in first] == [0, 1, 2]


def test_find_recreates_a_task_from_its_template_and_seed():
    ts = TaskSet(selections(5, path="templates/tasks/shop"))
    task = list(ts)[7]
    again = ts.find(task.template_id, task.seed, task.task_id)
    assert again == task
    assert ts.find(task.template_id, task.seed, "task-edited-since") is None
    assert ts.find(task.template_id, 99, task.task_id) is None
    assert ts.find("shop/no-such-template", task.seed, task.task_id) is None


def test_where_selects_whole_templates():
    ts = TaskSet(selections(3, include=["click-button", "enter-text"]))
    picked = ts.where(lambda t: t.template_id.endswith("enter-text"))
    assert len(picked) == 3 and {t.template_id for t in picked} == {"miniwob/enter-text"}


def test_a_template_selected_twice_is_a_config_error():
    twice = selections(2, include=["click-button"]) * 2
    with pytest.raises(ConfigError, match="miniwob/click-button is selected twice"):
        TaskSet(twice)


def test_the_default_pipeline_plans_without_instantiating(monkeypatch):
    monkeypatch.setattr(tasks_module, "instantiate_seed", lambda *a: pytest.fail("instantiated while planning"))
    ts = plan(load_pipeline("pipelines/web.yaml"), Path("pipelines").resolve())
    assert len(ts) == 25 * 44 + 15 * 6


def test_pool_takes_batches_only_when_asked():
    pulled = []

    def items():
        for i in range(10**6):
            pulled.append(i)
            yield i

    pool = Pool("p", lambda i: None, 2, items(), 4, lambda pool, results: None, total=10**6)
    assert pulled == []
    assert pool.next_batch() == [0, 1, 2, 3] and len(pulled) == 4
    pool.requeued.append([0, 1, 2, 3])  # a batch whose worker died comes back first
    assert pool.next_batch() == [0, 1, 2, 3] and len(pulled) == 4
    assert pool.next_batch() == [4, 5, 6, 7]
    assert pool.stop("budget spent") == 10**6 - 8
    assert pool.next_batch() == [] and len(pulled) == 8


def test_prepare_with_a_limit_plans_only_the_first_tasks():
    from synth.pipeline import prepare

    plan_ = prepare("pipelines/web.yaml", limit=50)
    assert len(plan_.tasks) == 50
    (solver,) = [j for j in plan_.jobs if j.kind == "solver"]
    assert len(solver.tasks) == 50 and [t.task_id for t in solver.tasks] == [t.task_id for t in plan_.tasks]
