"""The quality stage: every staged trajectory, every source, through the gates.

    judge ▸ review ▸ (mistakes) ▸ consistency ▸ dedup ▸ replay (▸ minimality)

The stage reads staging once without screenshots, computes a `Verdict` per
trajectory and hands them to the export, which writes them into the rows.
Nothing is deleted: a trajectory that fails a gate is written as rejected with
the gate's name first in its reason (`consistency: loop`, `duplicate: of ...`,
`replay: judge: ...`). A trajectory of a source where someone acts (the
LLM agent, a labeler) first has its real mistakes and their corrections
found and labelled (synth/quality/mistakes.py), so the gates after treat them
as a recovery variant's: consistency does not flag the mistake, minimality
never tries it or its recovery. Dedup runs before replay so duplicates cost no browser
time; only judge-passed, consistent trajectories take part in dedup, so every
group's representative is a good one. If a representative then fails replay,
the next member of its group is replayed in its place.

Replays need browsers, so the stage takes a `replay` callable (the pipeline
runs it on Ray actors; tests run it in process) and caches its results under
`quality/replay/`, so a resumed or repeated run replays nothing twice.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from synth import staging, storage
from synth.config import QualityConfig
from synth.faults import crash_point
from synth.quality.consistency import TemplateConsistency, check
from synth.quality.dedup import Item, action_key, duplicates, near_duplicate_groups, normalize_instruction
from synth.quality.mistakes import detect, label, labels
from synth.quality.replay import ReplayJob, ReplayResult, noop_steps, pack_steps, sampled, steps_of, unpack_steps
from synth.schema import Monologue, Review, Task, Trajectory
from synth.tasks import RunTasks, TaskSet

Replay = Callable[[list[ReplayJob]], Iterable[ReplayResult]]

REPLAY_CACHE_SCHEMA = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("settings", pa.string()),
        ("passed", pa.bool_()),
        ("reason", pa.string()),
        ("unnecessary", pa.list_(pa.int32())),
        ("relocated", pa.list_(pa.int32())),
        ("replay_s", pa.float64()),
        ("minimality_s", pa.float64()),
    ]
)
MAX_REPLAY_ROUNDS = 3


@dataclass
class Verdict:
    """The quality stage's say on one trajectory."""

    status: str
    reject_reason: str | None
    consistency_flags: list[str] = field(default_factory=list)
    duplicate_of: str | None = None
    replay_passed: bool | None = None
    drop_steps: list[int] = field(default_factory=list)
    review: Review | None = None
    monologues: dict[int, Monologue] = field(default_factory=dict)
    """Generated inner monologues by (original) step index."""
    labels: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    """Detected mistakes: (original) step index -> (role, reflection)."""


@dataclass
class _Light:
    """A staged trajectory without its observations: what the gates read."""

    trajectory_id: str
    task_id: str
    template_id: str
    seed: int
    passed: bool
    reject_reason: str | None
    num_steps: int
    key: str
    flags: list[str]
    job_steps: bytes
    """Packed (replay.pack_steps): held for every passing trajectory."""
    noop: list[int]
    overridden: bool = False
    """Accepted by a reviewer who overrode its failed judge: the replay gate,
    which would only ask that judge again, leaves it out."""
    labelled: bool = False
    """A recovery variant (steps labelled mistake/recovery): deduplicated only
    against other variants, since what sets it apart from the clean run it
    was made from, two or three steps, is exactly what it is for."""
    marks: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    """Steps labelled here (mistakes the stage found): index -> (role, reflection)."""
    kinds: list[str] = field(default_factory=list)
    """The kinds of those mistakes, one per mistake."""
    keep: list[int] = field(default_factory=list)
    """Every labelled step (a variant's or found here): minimality never tries them."""
    instruction: str = ""
    proposed: Task | None = None
    """The task a proposing source (exploration) recorded it with: a task of
    the run known by its `task_config`, not by the template plan."""


def _overridden(reject_reason: str | None, review: Review | None) -> bool:
    """A reviewer accepted, overriding the judge, a trajectory that failed
    only its judge (an episode that errored stays rejected)."""
    return (review is not None and review.verdict == "accept" and review.override_judge
            and (reject_reason or "").startswith("judge:"))


def _light(
    t: Trajectory, max_steps: int | None, rules: TemplateConsistency | None = None, overridden: bool = False,
    find_mistakes: bool = False, proposed: Task | None = None,
) -> _Light:
    """`overridden`: a reviewer accepted it over its judge, so the gates read
    it as they read a passing one. `find_mistakes`: label its real mistakes
    and their corrections first, so the checks below see them labelled."""
    passed = t.status == "accepted"
    usable = passed or overridden
    found = detect(t) if find_mistakes else []
    marks = labels(found)
    label(t, marks)
    return _Light(
        t.trajectory_id, t.task_id, t.template_id, t.seed, passed, t.reject_reason, len(t.steps),
        action_key(t.instruction, [s.action for s in t.steps]),
        check(t, max_steps, rules) if usable else [], pack_steps(steps_of(t)) if usable else b"",
        noop_steps(t) if usable else [], overridden=overridden,
        labelled=any(st.role != "normal" for st in t.steps),
        marks=marks, kinds=[d.kind for d in found], keep=[i for i, st in enumerate(t.steps) if st.role != "normal"],
        instruction=t.instruction, proposed=proposed,
    )


def scan(
    staging_dir: storage.Location, tasks: TaskSet, reviews: dict[str, Review] | None = None,
    mistake_sources: Collection[str] = (), proposing: Collection[str] = (),
) -> list[_Light]:
    """Every staged trajectory (first copy of each id), screenshots dropped.
    `reviews`: those that override a failed judge mark their trajectory;
    `mistake_sources`: the source kinds whose real mistakes are labelled;
    `proposing`: the source kinds whose trajectories carry their own task."""
    out, seen = [], set()
    for row in staging.iter_rows(staging_dir):
        if row["trajectory_id"] in seen:
            continue
        seen.add(row["trajectory_id"])
        for s in row["steps"]:
            s["observation"]["screenshot"] = None
        t = Trajectory.model_validate(row)
        proposed = Task.model_validate_json(t.task_config) if t.source in proposing and t.task_config else None
        planned = proposed is None and tasks.contains(t.template_id, t.seed)
        out.append(_light(t, proposed.max_steps if proposed else tasks.max_steps(t.template_id) if planned else None,
                          tasks.consistency(t.template_id) if planned else None,
                          _overridden(t.reject_reason, (reviews or {}).get(t.trajectory_id)),
                          find_mistakes=t.source in mistake_sources, proposed=proposed))
    return out


def read_reviews(out_dir: storage.Location) -> dict[str, Review]:
    """Reviewer verdicts written by the annotation UI (`reviews.parquet`), the
    latest per trajectory."""
    fs, root = storage.resolve(out_dir)
    path = storage.join(root, "reviews.parquet")
    if not storage.exists(fs, path):
        return {}
    rows = sorted(pq.read_table(path, filesystem=fs).to_pylist(), key=lambda r: r["reviewed_at"] or 0.0)
    return {r["trajectory_id"]: Review.model_validate(r) for r in rows}


def reference_keys(paths: Iterable[storage.Location]) -> list[str]:
    """Dedup keys of previously accepted data (`data/trajectories` shards)."""
    from synth.schema import Action

    keys = []
    for location in paths:
        fs, path = storage.resolve(location)
        files = storage.list_files(fs, path, ".parquet", recursive=True) if storage.is_dir(fs, path) else [path]
        if not files:
            raise FileNotFoundError(f"quality.dedup.reference: no Parquet files under {location}")
        for f in files:
            table = pq.read_table(f, columns=["status", "instruction", "steps"], filesystem=fs)
            for r in table.to_pylist():
                if r["status"] == "accepted":
                    keys.append(action_key(r["instruction"], [Action.model_validate(s["action"]) for s in r["steps"]]))
    return keys


class ReplayCache:
    """Replay results in the output, one Parquet file per batch (atomic)."""

    def __init__(self, folder: storage.Location) -> None:
        self.fs, self.folder = storage.resolve(folder)
        self.results: dict[tuple[str, str], ReplayResult] = {}
        for r in storage.read_parquet_rows(self.fs, self.folder):
            self.results[(r["trajectory_id"], r["settings"])] = ReplayResult(
                r["trajectory_id"], r["passed"], r["reason"] or "", list(r["unnecessary"] or []),
                list(r.get("relocated") or []), r.get("replay_s") or 0.0, r.get("minimality_s") or 0.0,
            )

    def get(self, trajectory_id: str, settings: str) -> ReplayResult | None:
        return self.results.get((trajectory_id, settings))

    def add(self, results: list[ReplayResult], settings: str) -> None:
        if not results:
            return
        rows = [
            {"trajectory_id": r.trajectory_id, "settings": settings, "passed": r.passed, "reason": r.reason,
             "unnecessary": r.unnecessary, "relocated": r.relocated, "replay_s": r.replay_s,
             "minimality_s": r.minimality_s}
            for r in results
        ]
        path = storage.join(self.folder, f"{uuid.uuid4().hex[:12]}.parquet")
        storage.write_parquet(self.fs, path, pa.Table.from_pylist(rows, schema=REPLAY_CACHE_SCHEMA),
                              before_rename=lambda: crash_point("quality.replay_cache"))
        for r in results:
            self.results[(r.trajectory_id, settings)] = r


def assess(
    out_dir: storage.Location,
    config: QualityConfig,
    tasks: TaskSet,
    replay: Replay | None,
    reference: Iterable[storage.Location] = (),
    on_stage: Callable[[str, int], None] | None = None,
    cache_dir: str | None = None,
    judge_precision: dict[str, float | None] | None = None,
    proposing: Collection[str] = (),
) -> tuple[dict[str, Verdict], dict[str, Any]]:
    """Verdicts for every staged trajectory, and per-gate counts. `cache_dir`
    is the local folder for the monologue gate's reply cache (SQLite; default
    `storage.cache_dir(out_dir)`). `judge_precision`: each template's
    measured judge precision (`quality.judge_accuracy`), or None: no gate.
    `proposing`: source kinds whose trajectories carry the task they
    proposed (exploration): those tasks are the run's too, and their
    instructions must be no near duplicate of a planned task's or of an
    earlier proposal's."""
    say = on_stage or (lambda name, n: None)
    reviews = read_reviews(out_dir)
    items = scan(storage.child(out_dir, "staging"), tasks, reviews, config.mistakes.sources, proposing)
    planned = tasks
    run_tasks = RunTasks(tasks, [it.proposed for it in items if it.proposed is not None])
    gates: dict[str, Any] = {}
    verdicts: dict[str, Verdict] = {}
    alive: list[_Light] = []

    # judge (the episode's own verdict) and review
    gates["judge"] = {"in": len(items), "passed": sum(it.passed for it in items)}
    gates["review"] = {"reviewed": 0, "rejected": 0}
    for it in items:
        review = reviews.get(it.trajectory_id)
        if review is not None:
            gates["review"]["reviewed"] += 1
        if it.overridden:
            gates["review"]["overrode_judge"] = gates["review"].get("overrode_judge", 0) + 1
            verdicts[it.trajectory_id] = Verdict("accepted", None, review=review)
            alive.append(it)
        elif not it.passed:
            verdicts[it.trajectory_id] = Verdict("rejected", it.reject_reason, review=review)
        elif review is not None and review.verdict == "reject":
            gates["review"]["rejected"] += 1
            why = review.comment or ", ".join(review.tags) or "rejected by a reviewer"
            verdicts[it.trajectory_id] = Verdict("rejected", f"review: {why} ({review.reviewer})", review=review)
        else:
            verdicts[it.trajectory_id] = Verdict("accepted", None, review=review)
            alive.append(it)
    for it in items:
        verdicts[it.trajectory_id].labels = it.marks

    if judge_precision is not None:
        gates["judge_accuracy"], alive = _judge_accuracy_gate(config, judge_precision, alive, verdicts)
    # consistency: the pipeline's ignored flags and the template's own
    ignore = set(config.consistency.ignore)
    by_flag: Counter = Counter()
    kept = []
    for it in alive:
        v = verdicts[it.trajectory_id]
        v.consistency_flags = it.flags
        by_flag.update(it.flags)
        rules = tasks.consistency(it.template_id)
        ignored = ignore | set(rules.ignore if rules is not None else ())
        rejecting = [f for f in it.flags if f not in ignored] if config.consistency.enabled else []
        if rejecting:
            v.status, v.reject_reason = "rejected", f"consistency: {', '.join(rejecting)}"
        else:
            kept.append(it)
    gates["consistency"] = {"in": len(alive), "rejected": len(alive) - len(kept), "by_flag": dict(by_flag)}
    alive = kept
    say("consistency", len(alive))

    # dedup, against each other and against previously accepted data
    groups: dict[str, list[_Light]] = {it.trajectory_id: [it] for it in alive}
    if config.dedup.enabled and alive:
        alive, gates["proposals"] = _proposal_instructions(config, planned, alive, verdicts)
        ref = reference_keys(reference)
        dedup_items = [Item(f"ref:{i}", k, True, 0) for i, k in enumerate(ref)]
        dedup_items += [Item(it.trajectory_id, it.key, True, it.num_steps) for it in alive if not it.labelled]
        dup = duplicates(dedup_items, config.dedup.threshold, config.dedup.num_perm, config.dedup.tolerance)
        variants = [Item(it.trajectory_id, it.key, True, it.num_steps) for it in alive if it.labelled]
        if variants:
            dup.update(duplicates(variants, config.dedup.threshold, config.dedup.num_perm, config.dedup.tolerance))
        dup = _with_instruction_groups(dup, alive, config.dedup.threshold or 1.0)
        groups = {}
        for it in alive:
            rep = dup.get(it.trajectory_id, it.trajectory_id)
            groups.setdefault(rep, []).append(it)
        for rep, members in groups.items():
            members.sort(key=lambda it: (it.num_steps, it.trajectory_id))
            if rep.startswith("ref:"):
                for it in members:
                    v = verdicts[it.trajectory_id]
                    v.status, v.reject_reason = "rejected", "duplicate: of previously accepted data"
                    v.duplicate_of = "reference"
        groups = {r: m for r, m in groups.items() if not r.startswith("ref:")}
        for members in groups.values():
            for it in members[1:]:
                v = verdicts[it.trajectory_id]
                v.duplicate_of = members[0].trajectory_id
                v.status, v.reject_reason = "rejected", f"duplicate: of {members[0].trajectory_id}"
    say("dedup", len(groups))

    # replay (and minimality) on each group's representative
    gates["replay"] = _replay_gate(out_dir, config, run_tasks, groups, verdicts, replay)
    # counted after replay: a member promoted in place of a failed
    # representative is no longer a duplicate
    gates["dedup"] = {
        "in": len(alive),
        "rejected": sum(verdicts[it.trajectory_id].duplicate_of is not None for it in alive),
        "threshold": config.dedup.threshold if config.dedup.enabled else None,
    }
    gates["minimality"] = _minimality_counts(config, groups, verdicts)
    gates["minimality"]["seconds"] = gates["replay"].pop("minimality_seconds", 0.0)
    say("replay", gates["replay"]["replayed"])
    gates["monologue"] = _monologue_gate(out_dir, config, verdicts, cache_dir or storage.cache_dir(out_dir))
    gates["accepted"] = sum(v.status == "accepted" for v in verdicts.values())
    gates["mistakes"] = _mistake_counts(config, items, verdicts)
    order = ("judge", "review", "mistakes", "judge_accuracy", "consistency", "proposals", "dedup", "replay", "minimality", "monologue", "accepted")
    return verdicts, {k: gates[k] for k in order if k in gates}


def _proposal_instructions(
    config: QualityConfig, planned: TaskSet, alive: list[_Light], verdicts: dict[str, Verdict]
) -> tuple[list[_Light], dict[str, Any]]:
    """Reject proposed tasks whose instruction is an exact or near duplicate
    (word 3-gram Jaccard >= the dedup threshold) of a planned task's (a
    template's instance) or of a trajectory's of another source: a template
    covers them already. Among proposals the dedup groups decide (below)."""
    proposals = [it for it in alive if it.proposed is not None]
    if not proposals:
        return alive, {"in": 0}
    existing = sorted({normalize_instruction(t.instruction) for t in planned if t.instruction}
                      | {normalize_instruction(it.instruction) for it in alive if it.proposed is None and it.instruction})
    texts = existing + [normalize_instruction(it.instruction) for it in proposals]
    groups = near_duplicate_groups(texts, config.dedup.threshold or 1.0)
    rejected = set()
    for j, it in enumerate(proposals):
        head = groups[len(existing) + j]
        if head < len(existing):
            v = verdicts[it.trajectory_id]
            v.status, v.reject_reason = "rejected", f"duplicate: the instruction of a planned task {existing[head]!r}"
            v.duplicate_of = "template"
            rejected.add(it.trajectory_id)
    return [it for it in alive if it.trajectory_id not in rejected], {
        "in": len(proposals), "rejected_as_template": len(rejected)}


def _with_instruction_groups(dup: dict[str, str], alive: list[_Light], threshold: float) -> dict[str, str]:
    """`dup` ({id: representative}) with proposals whose instructions are near
    duplicates of each other joined into one group, so one of them is kept
    (and the next stands in if it fails replay)."""
    proposals = [it for it in alive if it.proposed is not None]
    if len(proposals) < 2:
        return dup
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:  # a reference (previously accepted data) stays its group's root
            parent[rb if not rb.startswith("ref:") else ra] = ra if not rb.startswith("ref:") else rb

    for tid, rep in dup.items():
        union(rep, tid)
    groups = near_duplicate_groups([normalize_instruction(it.instruction) for it in proposals], threshold)
    for j, head in enumerate(groups):
        union(proposals[head].trajectory_id, proposals[j].trajectory_id)
    return {it.trajectory_id: find(it.trajectory_id) for it in alive if find(it.trajectory_id) != it.trajectory_id}


def _mistake_counts(config: QualityConfig, items: list[_Light], verdicts: dict[str, Verdict]) -> dict[str, Any]:
    """Real mistakes found and labelled, by kind, in all trajectories and in
    the accepted ones (their corrections are training data)."""
    found = [it for it in items if it.kinds]
    accepted = [it for it in found if verdicts[it.trajectory_id].status == "accepted"]
    return {
        "sources": list(config.mistakes.sources),
        "trajectories": len(found),
        "accepted": len(accepted),
        "by_kind": dict(Counter(k for it in found for k in it.kinds)),
        "accepted_by_kind": dict(Counter(k for it in accepted for k in it.kinds)),
    }


def _judge_accuracy_gate(
    config: QualityConfig, measured: dict[str, float | None], alive: list[_Light], verdicts: dict[str, Verdict]
) -> tuple[dict[str, Any], list[_Light]]:
    """Reject the trajectories of templates whose judge's measured precision
    is below `min_precision` (or unmeasured, if so configured)."""
    rc = config.judge_accuracy
    kept, rejected = [], Counter()
    for it in alive:
        precision = measured.get(it.template_id)
        if precision is None:
            ok, why = rc.unmeasured == "accept", "its judge's precision was not measured"
        else:
            ok, why = precision >= rc.min_precision, f"its judge's measured precision {precision:.2f} < {rc.min_precision:.2f}"
        if ok:
            kept.append(it)
        else:
            v = verdicts[it.trajectory_id]
            v.status, v.reject_reason = "rejected", f"judge_accuracy: {why} ({rc.report})"
            rejected[it.template_id] += 1
    return {"in": len(alive), "rejected": sum(rejected.values()), "by_template": dict(rejected)}, kept


REPLAY_VERSION = "v2"
"""Bumped when replays change what they verify, so cached verdicts of the old
kind are not reused (v2: a fresh context per replay, settled pages, targets
checked at their points)."""


def replay_settings(config: QualityConfig) -> str:
    m = config.minimality
    gates = "replay" if m.mode == "off" else f"replay+minimality({'exhaustive' if m.exhaustive else 'noop'})"
    return f"{gates}/{REPLAY_VERSION}"


def _replay_gate(
    out_dir: storage.Location,
    config: QualityConfig,
    tasks: TaskSet,
    groups: dict[str, list[_Light]],
    verdicts: dict[str, Verdict],
    replay: Replay | None,
) -> dict[str, Any]:
    counts = {"in": len(groups), "replayed": 0, "cached": 0, "passed": 0, "rejected": 0, "not_sampled": 0,
              "task_unknown": 0, "promoted": 0, "relocated": 0, "seconds": 0.0, "minimality_seconds": 0.0}
    if not config.replay.enabled or replay is None:
        counts["not_sampled"] = len(groups)
        return counts
    cache = ReplayCache(storage.child(out_dir, "quality", "replay"))
    settings = replay_settings(config)
    minimality = config.minimality.mode != "off"
    position = {rep: 0 for rep in groups}  # which member currently represents the group
    pending = []
    for rep, members in groups.items():
        if members[0].overridden:  # its judge is what a reviewer found wrong: a replay would ask it again
            counts["overridden"] = counts.get("overridden", 0) + 1
            continue
        if not sampled(members[0].trajectory_id, config.replay.sample_rate):
            counts["not_sampled"] += 1
        elif not tasks.contains(members[0].template_id, members[0].seed):
            counts["task_unknown"] += 1
        else:
            pending.append(rep)
    for _ in range(MAX_REPLAY_ROUNDS):
        if not pending:
            break
        jobs, results, unknown = [], {}, set()
        for rep in pending:
            it = groups[rep][position[rep]]
            hit = cache.get(it.trajectory_id, _settings_for(settings, it))
            if hit is not None:
                counts["cached"] += 1
                results[it.trajectory_id] = hit
            elif (task := tasks.find(it.template_id, it.seed, it.task_id)) is not None:
                jobs.append(ReplayJob(it.trajectory_id, task, unpack_steps(it.job_steps), it.noop, minimality,
                                      config.minimality.exhaustive, it.keep))
            else:  # its template was edited since: the task it was recorded on is gone
                counts["task_unknown"] += 1
                unknown.add(rep)
        pending = [rep for rep in pending if rep not in unknown]
        if jobs:
            fresh = list(replay(jobs))
            light = {groups[rep][position[rep]].trajectory_id: groups[rep][position[rep]] for rep in pending}
            by_settings: dict[str, list[ReplayResult]] = {}
            for r in fresh:
                by_settings.setdefault(_settings_for(settings, light[r.trajectory_id]), []).append(r)
            for key, batch in by_settings.items():
                cache.add(batch, key)
            counts["replayed"] += len(fresh)
            results.update({r.trajectory_id: r for r in fresh})
        retry = []
        for rep in pending:
            members = groups[rep]
            it = members[position[rep]]
            r = results[it.trajectory_id]
            counts["seconds"] += r.replay_s  # what verifying it cost, this run or the one that cached it
            counts["minimality_seconds"] += r.minimality_s
            v = verdicts[it.trajectory_id]
            v.replay_passed = r.passed
            if r.passed and r.relocated and config.replay.relocated == "reject":
                r = ReplayResult(r.trajectory_id, False, "passed only by finding the target of step(s) "
                                 f"{', '.join(map(str, r.relocated))} by its selector: the layout moved")
            if r.passed:
                counts["passed"] += 1
                if r.relocated:
                    counts["relocated"] += 1
                    v.consistency_flags = [*v.consistency_flags, "replay_relocated"]
                _apply_minimality(config, v, r, it.keep)
                continue
            counts["rejected"] += 1
            v.status, v.reject_reason = "rejected", f"replay: {r.reason or 'the judge failed on replay'}"
            v.duplicate_of = None
            if position[rep] + 1 < len(members):
                # the next member of the group stands in for the one that failed
                position[rep] += 1
                counts["promoted"] += 1
                new = members[position[rep]]
                nv = verdicts[new.trajectory_id]
                nv.status, nv.reject_reason, nv.duplicate_of = "accepted", None, None
                for other in members[position[rep] + 1 :]:
                    ov = verdicts[other.trajectory_id]
                    ov.duplicate_of, ov.reject_reason = new.trajectory_id, f"duplicate: of {new.trajectory_id}"
                retry.append(rep)
        pending = retry
    counts["seconds"], counts["minimality_seconds"] = round(counts["seconds"], 1), round(counts["minimality_seconds"], 1)
    return counts


def _settings_for(settings: str, it: _Light) -> str:
    """The replay cache key of `it`'s replay. A replay made ahead, before the
    stage labelled its mistakes, may have tried them as unnecessary: with
    mistakes found here it is replayed again, under a key naming them."""
    if not it.marks:
        return settings
    return f"{settings}/labelled:{','.join(str(i) for i in sorted(it.marks))}"


def _apply_minimality(config: QualityConfig, v: Verdict, r: ReplayResult, keep: Collection[int] = ()) -> None:
    """`keep`: labelled steps. A result that would remove one (cached before
    they were kept out of minimality's tries) is not used: nothing is removed."""
    if not r.unnecessary or config.minimality.mode == "off" or set(r.unnecessary) & set(keep):
        return
    steps = ", ".join(str(i) for i in r.unnecessary)
    if config.minimality.mode == "drop":
        v.drop_steps = list(r.unnecessary)
        v.consistency_flags = [*v.consistency_flags, "unnecessary_steps_dropped"]
    else:
        v.consistency_flags = [*v.consistency_flags, "unnecessary_steps"]
        v.status, v.reject_reason = "rejected", f"minimality: unnecessary steps {steps}"


def _minimality_counts(config: QualityConfig, groups: dict[str, list[_Light]], verdicts: dict[str, Verdict]) -> dict:
    flagged = sum("unnecessary_steps" in v.consistency_flags for v in verdicts.values())
    dropped = sum(len(v.drop_steps) for v in verdicts.values())
    return {"mode": config.minimality.mode, "rejected": flagged, "steps_dropped": dropped}


def _monologue_gate(
    out_dir: storage.Location, config: QualityConfig, verdicts: dict[str, Verdict], cache_dir: str
) -> dict[str, Any]:
    mc = config.monologue
    if not mc.enabled:
        return {"enabled": False}
    reason = mc.unavailable()
    if reason:
        return {"enabled": True, "skipped": reason}
    from bootstrap.client import ClientConfig

    from synth.quality.monologue import annotate

    client = ClientConfig.from_config(mc, cache_path=os.path.join(cache_dir, "monologue-replies.sqlite"))
    accepted = [tid for tid, v in verdicts.items() if v.status == "accepted"]
    kept, counts = annotate(out_dir, accepted, client, mc.concurrency)
    for tid, monologues in kept.items():
        if tid in verdicts:
            verdicts[tid].monologues = monologues
    return {"enabled": True, "steps": counts.steps, "generated": counts.generated, "kept": counts.kept,
            "dropped_inconsistent": counts.dropped_inconsistent, "failed": counts.failed,
            "cost_usd": round(counts.cost_usd, 6), "errors": counts.errors}
