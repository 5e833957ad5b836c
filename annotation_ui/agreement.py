"""Agreement between labelers who did the same task (overlap slots).

A share of tasks goes to several labelers (`sources.human.overlap`); every
pair of their trajectories is compared three ways, as Label Studio's
agreement matrix and Argilla's multi-response metrics do for labels:

- **outcome**: both passed the judge, or both failed it;
- **sequence**: the same actions in the same order, once the steps the
  minimality gate would try to drop (a step after which the page did not
  change, `synth.quality.replay.noop_steps`) are left out;
- **steps**: how much of the two sequences is shared, 2·LCS / (len a + len b)
  over those essential steps (1.0 when identical, 0.0 when nothing is).

Actions are compared by what they did, not by pixels: a pointer action by its
target element (role and name), else its point on a coarse grid; text by its
words, case-folded; a key by name; a scroll by its direction.

`agreement_table(db)` is the per-template table, `disagreements(db)` the
pairs to look at, worst first; `for_output(out_dir)` gives both for a
pipeline's output, its queue found the way `synth run` put it there (what
`synth stats` prints and its HTML report shows).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Hashable

from annotation_ui.store import Store
from synth import storage
from synth.quality.replay import noop_steps
from synth.schema import POINTER_ACTIONS, Step, Trajectory

GRID = 0.05
"""Points closer than this (a fraction of the screenshot) are the same place."""


@dataclass(frozen=True)
class Pair:
    """Two labelers' trajectories of one task, compared."""

    task_id: str
    template_id: str
    a: str
    b: str
    labeler_a: str
    labeler_b: str
    passed_a: bool
    passed_b: bool
    same_outcome: bool
    same_sequence: bool
    step_agreement: float

    @property
    def agrees(self) -> bool:
        return self.same_outcome and self.same_sequence


def action_key(step: Step) -> Hashable:
    """What an action did, comparable across labelers."""
    a = step.action
    if a.name in POINTER_ACTIONS or a.name == "select":
        if step.element is not None and (step.element.name or step.element.role):
            where: Hashable = (step.element.role, step.element.name.strip().casefold())
        elif a.x is not None and a.y is not None:
            where = (round(a.x / GRID), round(a.y / GRID))
        else:
            where = None
        extra = " ".join((a.text or "").split()).casefold() if a.name == "select" else None
        return (a.name, where, extra)
    if a.name in ("type", "answer"):
        return (a.name, " ".join((a.text or "").split()).casefold())
    if a.name == "press":
        return (a.name, a.key)
    if a.name == "scroll":
        return (a.name, (a.dy or 0) > 0, (a.dy or 0) < 0, (a.dx or 0) > 0, (a.dx or 0) < 0)
    return (a.name,)


def essential(t: Trajectory) -> list[Hashable]:
    """The trajectory's actions without those the minimality gate would try
    to remove (steps that changed nothing on the page)."""
    drop = set(noop_steps(t))
    return [action_key(s) for s in t.steps if s.index not in drop]


def lcs(a: list[Hashable], b: list[Hashable]) -> int:
    """Length of the longest common subsequence (steps are few: O(n·m))."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def step_agreement(a: list[Hashable], b: list[Hashable]) -> float:
    if not a and not b:
        return 1.0
    return 2 * lcs(a, b) / (len(a) + len(b))


def compare(x: Trajectory, y: Trajectory) -> Pair:
    ex, ey = essential(x), essential(y)
    return Pair(
        task_id=x.task_id, template_id=x.template_id, a=x.trajectory_id, b=y.trajectory_id,
        labeler_a=x.source_detail, labeler_b=y.source_detail, passed_a=x.verdict.passed, passed_b=y.verdict.passed,
        same_outcome=x.verdict.passed == y.verdict.passed, same_sequence=ex == ey,
        step_agreement=round(step_agreement(ex, ey), 4),
    )


def _overlapping(store: Store) -> dict[str, list[str]]:
    """Task id -> trajectory ids, for tasks done by two or more labelers
    (each labeler's latest attempt only)."""
    latest: dict[tuple[str, str], tuple[float, str]] = {}
    for s in store.trajectory_summaries():
        key = (s["task_id"], s["labeler"])
        if key not in latest or s["created_at"] >= latest[key][0]:
            latest[key] = (s["created_at"], s["trajectory_id"])
    by_task: dict[str, list[str]] = defaultdict(list)
    for (task_id, _), (_, tid) in sorted(latest.items()):
        by_task[task_id].append(tid)
    return {t: ids for t, ids in by_task.items() if len(ids) >= 2}


def pairs(store: Store, task_id: str | None = None) -> list[Pair]:
    """Every pair of labelers' trajectories of the same task (of one task)."""
    out = []
    for task, ids in _overlapping(store).items():
        if task_id is not None and task != task_id:
            continue
        found = [store.trajectory(tid) for tid in ids]
        ts = [Trajectory.model_validate(row) for row in found if row is not None]
        out.extend(compare(x, y) for x, y in itertools.combinations(ts, 2))
    return out


def table(compared: list[Pair]) -> list[dict[str, Any]]:
    """Per template: tasks and pairs compared, and the share of pairs that
    agree on the outcome, on the sequence, and the mean step agreement."""
    groups: dict[str, list[Pair]] = defaultdict(list)
    for p in compared:
        groups[p.template_id].append(p)
    rows = []
    for template_id, ps in sorted(groups.items()):
        n = len(ps)
        rows.append({
            "template_id": template_id,
            "tasks": len({p.task_id for p in ps}),
            "pairs": n,
            "outcome_agreement": round(sum(p.same_outcome for p in ps) / n, 4),
            "sequence_agreement": round(sum(p.same_sequence for p in ps) / n, 4),
            "step_agreement": round(sum(p.step_agreement for p in ps) / n, 4),
            "disagreements": sum(not p.agrees for p in ps),
        })
    return rows


def _store(db: Path | str | Store) -> tuple[Store, bool]:
    return (db, False) if isinstance(db, Store) else (Store(db), True)


def agreement_table(db: Path | str | Store) -> list[dict[str, Any]]:
    """The per-template agreement table of a queue file (see `table`)."""
    store, mine = _store(db)
    try:
        return table(pairs(store))
    finally:
        if mine:
            store.close()


def _worst_first(compared: list[Pair]) -> list[dict[str, Any]]:
    """The pairs that disagree (outcome or sequence), least step agreement first."""
    bad = [p for p in compared if not p.agrees]
    bad.sort(key=lambda p: (p.same_outcome, p.step_agreement, p.template_id, p.task_id))
    return [asdict(p) for p in bad]


def disagreements(db: Path | str | Store) -> list[dict[str, Any]]:
    """The pairs that disagree (outcome or sequence), least step agreement first."""
    store, mine = _store(db)
    try:
        return _worst_first(pairs(store))
    finally:
        if mine:
            store.close()


COLUMNS = ("template", "tasks", "pairs", "same outcome", "same sequence", "step agreement", "disagreements")
"""The headers of the agreement table both CLIs print (`cells` fills a row)."""


def cells(r: dict[str, Any]) -> tuple[str, ...]:
    """One `table` row as the CLIs print it, in `COLUMNS` order."""
    return (r["template_id"], str(r["tasks"]), str(r["pairs"]), f"{r['outcome_agreement']:.0%}",
            f"{r['sequence_agreement']:.0%}", f"{r['step_agreement']:.2f}", str(r["disagreements"]))


def describe(d: dict[str, Any]) -> str:
    """One disagreement (a `disagreements` row) on one line."""
    return (f"{d['template_id']} {d['task_id']}: {d['labeler_a']} {d['a']} vs {d['labeler_b']} {d['b']} "
            f"(outcome {'same' if d['same_outcome'] else 'differs'}, steps {d['step_agreement']:.2f})")


def queue_file(out_dir: storage.Location, db: str = "annotations.db", cache_dir: str | None = None) -> Path:
    """Where `synth run` keeps the queue of the output `out_dir` (see `harvest.db_path`)."""
    from annotation_ui.harvest import db_path
    from synth.config import HumanSourceConfig

    return db_path(HumanSourceConfig(db=db), str(out_dir), cache_dir)


def output_queue(out_dir: storage.Location, manifest: dict[str, Any] | None = None) -> Path:
    """The queue file of a pipeline's output, as its manifest records the
    pipeline (`sources.human.db`, `cache_dir`); the defaults without one."""
    if manifest is None:
        fs, root = storage.resolve(out_dir)
        path = storage.join(root, "manifest.json")
        manifest = json.loads(storage.read_text(fs, path)) if storage.exists(fs, path) else {}
    config = manifest.get("config") or {}
    human = (config.get("sources") or {}).get("human") or {}
    return queue_file(out_dir, human.get("db") or "annotations.db", config.get("cache_dir"))


@dataclass
class OutputAgreement:
    """A pipeline output's agreement table and disagreements, from its queue."""

    db: Path
    found: bool
    """Whether the queue file is on this machine (a remote output's queue is
    in the local cache of the machine that ran the pipeline)."""
    table: list[dict[str, Any]] = field(default_factory=list)
    disagreements: list[dict[str, Any]] = field(default_factory=list)


def for_output(out_dir: storage.Location, manifest: dict[str, Any] | None = None) -> OutputAgreement:
    """`agreement_table` and `disagreements` of an output's queue, its pairs
    compared once; empty (`found` False) when the queue is not here."""
    path = output_queue(out_dir, manifest)
    if not path.is_file():
        return OutputAgreement(path, False)
    store = Store(path)
    try:
        compared = pairs(store)
    finally:
        store.close()
    return OutputAgreement(path, True, table(compared), _worst_first(compared))


def agreement_for_run(out_dir: str | Path, db: str = "annotations.db", cache_dir: str | None = None) -> list[dict[str, Any]]:
    """The agreement table of a run's queue (`<output_dir>/annotations.db`
    unless `sources.human.db` says otherwise); [] when the run has no queue."""
    path = queue_file(out_dir, db, cache_dir)
    if not path.exists():
        return []
    return agreement_table(path)
