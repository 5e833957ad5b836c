"""Reviewer verdicts as labels for the judge-accuracy measures.

A reviewer who overrides the judge (accepts what it failed, with a reason)
says the judge was wrong: a false negative. A reviewer who accepts what the
judge passed confirms it; one who rejects a judge-passed trajectory *because
the task was not done* (tags `judge-wrong`, `incomplete`, `wrong-answer`) found
a false positive. A rejection for other reasons (unnecessary steps, unsafe...)
says nothing about whether the task got done, so it is no label.

The labels are `synth.judge_eval.Labelled` items, so `JudgeReport(items=...)`
gives precision, recall and kappa per template and per judge from reviews,
next to the oracle-based ones of `synth judges eval`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from annotation_ui.staged import Trajectories
from annotation_ui.store import Store
from synth.judge_eval import Labelled, judge_name
from synth.schema import Task

NOT_DONE_TAGS = frozenset({"judge-wrong", "incomplete", "wrong-answer"})
KIND = "review"


def label(t: dict[str, Any], review: dict[str, Any]) -> Labelled | None:
    """One reviewed trajectory as a judge-accuracy label, or None when the
    review does not say whether the task got done."""
    judge_passed = bool((t.get("verdict") or {}).get("passed"))
    if review["verdict"] == "accept":
        correct = True
        if not judge_passed and not review.get("override_judge"):
            return None  # an accept of a failed trajectory without an override is no claim about the judge
        oracle = f"review override ({review['reviewer']}): {review.get('override_reason', '')}" if not judge_passed \
            else f"review accept ({review['reviewer']})"
    elif NOT_DONE_TAGS & set(review.get("tags") or []):
        correct = False
        oracle = f"review reject ({review['reviewer']}): {', '.join(review['tags'])}"
    else:
        return None
    try:
        task = Task.model_validate_json(t.get("task_config") or "")
        judge, seed = judge_name(task.judge), task.seed
    except ValueError:
        judge, seed = "unknown", int(t.get("seed") or 0)
    return Labelled(
        template_id=t["template_id"], judge=judge, seed=seed, kind=KIND, judge_passed=judge_passed,
        correct=correct, oracle=oracle, judge_reason=(t.get("verdict") or {}).get("reason") or "",
        trajectory_id=t["trajectory_id"],
    )


def review_labels(db: Path | str, out_dir: str | Path | None = None) -> list[Labelled]:
    """Labels from the latest review of every reviewed trajectory: the
    queue's own (human) and, given the run's output folder, its staged ones."""
    store = Store(db)
    try:
        trajectories = Trajectories(store, str(out_dir) if out_dir is not None else None)
        out = []
        for review in store.latest_reviews():
            t = trajectories.get(review["trajectory_id"])
            item = label(t, review) if t is not None else None
            if item is not None:
                out.append(item)
        return out
    finally:
        store.close()
