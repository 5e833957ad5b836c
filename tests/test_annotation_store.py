"""The annotation queue and the harvest into staging, without a browser:
leases under real concurrency (threads, a connection each, one SQLite file),
expiry, skips, overlap, tokens, and harvesting each trajectory exactly once."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation_ui import harvest
from annotation_ui.store import SCHEMA, LeaseLost, Store, hash_secret, token_key
from synth import staging
from synth.config import HumanSourceConfig
from synth.schema import Action, Box, Monologue, Observation, Step, Task, Trajectory, Verdict, trajectory_id
from synth.sites.miniwob import make_task


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def fake_trajectory(task: Task, labeler: str, attempt: int = 0, passed: bool = True, source: str = "human") -> Trajectory:
    obs = Observation(url="http://x/", area=Box(x=0, y=0, width=160, height=210), screenshot=b"\x89PNG fake")
    return Trajectory(
        trajectory_id=trajectory_id(task.task_id, source, labeler, attempt),
        task_id=task.task_id, template_id=task.template_id, site=task.site, seed=task.seed,
        source=source, source_detail=labeler, instruction="Click the button.",
        steps=[Step(index=0, observation=obs, action=Action(name="click", x=0.5, y=0.5),
                    monologue=Monologue(thought="the button"))],
        verdict=Verdict(passed=passed, score=float(passed), reason="test"),
        status="accepted" if passed else "rejected", reject_reason=None if passed else "judge: test",
    )


def tasks(n: int, name: str = "click-test", solver: str | None = None) -> list[Task]:
    return [make_task(name, seed, solver=solver) for seed in range(n)]


TOKEN = re.compile(r"syn_([A-Za-z0-9_\-]{8,32})\.[A-Za-z0-9_\-]{40,}")


def test_tokens_are_stored_only_as_hashes(tmp_path):
    store = Store(tmp_path / "q.db")
    token = store.add_user("alice", "labeler")
    kid = TOKEN.fullmatch(token).group(1)
    assert token_key(token) == kid and "alice" not in kid and store.has_key(kid)
    assert store.user_by_token(token).name == "alice"
    assert store.user_by_token(token + "x") is None and store.user_by_token("") is None
    assert store.user_by_token(token.replace(".", ".x", 1)) is None  # the right key id, a wrong secret
    store.close()
    secret = token.split(".", 1)[1]
    for f in tmp_path.iterdir():  # the database and its WAL never hold the token (the key id is public)
        assert token.encode() not in f.read_bytes() and secret.encode() not in f.read_bytes()
    with pytest.raises(ValueError, match="already exists"):
        Store(tmp_path / "q.db").add_user("alice", "reviewer")
    with pytest.raises(ValueError, match="role"):
        Store(tmp_path / "q.db").add_user("bob", "root")


def test_a_queue_file_from_before_key_ids_keeps_its_tokens_working(tmp_path):
    """An older file: no `users.token_id`, tokens `syn_<secret>`. The column is
    added on open, the old token still logs in; a rotation or a new user gets
    a key id, and a revoked user has none."""
    db = tmp_path / "q.db"
    old = sqlite3.connect(db)
    old.executescript(SCHEMA.replace("    token_id    TEXT,\n", ""))
    legacy = "syn_" + "A" * 43
    old.execute("INSERT INTO users (name, role, token_hash, created_at) VALUES ('old', 'labeler', ?, 0)",
                (hash_secret(legacy),))
    old.commit()
    old.close()
    store = Store(db)
    assert token_key(legacy) is None and store.user_by_token(legacy).name == "old"
    assert TOKEN.fullmatch(store.add_user("new", "labeler"))
    rotated = store.rotate_token("old")
    assert TOKEN.fullmatch(rotated) and store.user_by_token(legacy) is None
    assert store.user_by_token(rotated).name == "old"
    store.revoke_token("old")
    assert store.user_by_token(rotated) is None and not store.has_key(token_key(rotated))
    store.revoke_token("new")  # two users without a key id: the unique index allows it
    assert Store(db).user_by_token(legacy) is None  # opening again migrates nothing twice


def test_twenty_labelers_in_threads_never_share_a_lease_and_lose_nothing(tmp_path):
    db = tmp_path / "q.db"
    setup = Store(db)
    todo = tasks(60)
    assert setup.enqueue_many([(t, 1, "template", 0) for t in todo]) == 60
    users = [setup.user_by_token(setup.add_user(f"l{i}", "labeler")) for i in range(20)]
    leased: list[tuple[int, str]] = []
    submitted: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def labeler(user) -> None:
        store = Store(db)  # its own connections, as separate server workers would have
        try:
            start.wait()
            while (lease := store.lease_next(user)) is not None:
                with lock:
                    leased.append((lease.item_id, user.name))
                t = fake_trajectory(lease.task, user.name, store.attempt(user, lease.task.task_id))
                store.submit(user, lease.item_id, t)
                with lock:
                    submitted.append(t.trajectory_id)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            store.close()

    threads = [threading.Thread(target=labeler, args=(u,)) for u in users]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    items = [i for i, _ in leased]
    assert len(items) == len(set(items)) == 60  # no item leased twice
    assert len({name for _, name in leased}) > 1  # the work really was shared
    assert len(submitted) == len(set(submitted)) == 60
    stored = {s["trajectory_id"] for s in setup.trajectory_summaries()}
    assert stored == set(submitted)  # no submission lost
    assert setup.counts() == {"queued": 0, "leased": 0, "done": 60, "dropped": 0}
    log = setup.lease_log()
    assert len(log) == 60 and all(r["outcome"] == "submitted" for r in log)


def test_an_expired_lease_returns_the_task_and_the_late_labeler_is_refused(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "q.db", lease_seconds=60, clock=clock)
    store.enqueue(tasks(1)[0])
    a = store.user_by_token(store.add_user("a", "labeler"))
    b = store.user_by_token(store.add_user("b", "labeler"))
    lease = store.lease_next(a)
    assert store.lease_next(b) is None  # held by a
    clock.now += 45
    store.heartbeat(a, lease.item_id)  # extends to now + 60
    clock.now += 45
    assert store.lease_next(b) is None  # still a's thanks to the heartbeat
    store.save_draft(a, lease.item_id, [{"action": {"name": "click", "x": 0.1, "y": 0.2}, "thought": ""}])
    clock.now += 61
    assert store.counts()["queued"] == 1  # expired counts as queued even before a sweep
    again = store.lease_next(b)
    assert again is not None and again.item_id == lease.item_id and again.draft == []  # a's draft is not b's
    with pytest.raises(LeaseLost):
        store.heartbeat(a, lease.item_id)
    with pytest.raises(LeaseLost):
        store.submit(a, lease.item_id, fake_trajectory(lease.task, "a"))
    store.submit(b, again.item_id, fake_trajectory(again.task, "b"))
    assert [r["outcome"] for r in store.lease_log()] == ["expired", "submitted"]


def test_a_lost_lease_keeps_its_draft_for_its_labeler_until_someone_else_takes_the_task(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "q.db", lease_seconds=60, clock=clock)
    store.enqueue_many([(t, 1, "manual", 0) for t in tasks(2)])
    a = store.user_by_token(store.add_user("a", "labeler"))
    b = store.user_by_token(store.add_user("b", "labeler"))
    draft = [{"action": {"name": "click", "x": 0.1, "y": 0.2}, "thought": "first"}]
    lease = store.lease_next(a)
    store.save_draft(a, lease.item_id, draft)
    assert store.lost_draft(a) is None
    clock.now += 61
    assert store.expire_leases() == 1
    lost = store.lost_draft(a)
    assert lost == {"item_id": lease.item_id, "template_id": lease.task.template_id, "steps": 1,
                    "lost_at": clock.now, "reclaimable": True}
    with pytest.raises(LeaseLost):
        store.reclaim(b, lease.item_id)  # not b's draft
    back = store.reclaim(a, lease.item_id)
    assert back.item_id == lease.item_id and back.draft == draft and store.lost_draft(a) is None
    # lost again; this time b takes the task first: a's draft is gone, and a is told
    clock.now += 61
    assert store.lease_next(b).item_id == lease.item_id and store.lease_next(b).draft == []
    assert store.lost_draft(a)["reclaimable"] is False
    with pytest.raises(LeaseLost, match="someone else"):
        store.reclaim(a, lease.item_id)
    # a labeler who simply takes the next task and gets their own lost one back gets the draft too
    store.skip(b, lease.item_id, "other")
    c = store.user_by_token(store.add_user("c", "labeler"))
    mine = store.lease_next(c)
    store.save_draft(c, mine.item_id, draft)
    clock.now += 61
    assert store.lease_next(c).draft == draft and store.lost_draft(c) is None


def test_overlap_slots_go_to_different_labelers(tmp_path):
    store = Store(tmp_path / "q.db")
    t = tasks(1)[0]
    assert store.enqueue(t, slots=2) == 2
    assert store.enqueue(t, slots=2) == 0  # idempotent
    a = store.user_by_token(store.add_user("a", "labeler"))
    b = store.user_by_token(store.add_user("b", "labeler"))
    la = store.lease_next(a)
    assert store.lease_next(a).item_id == la.item_id  # the same lease again, not a second one
    store.submit(a, la.item_id, fake_trajectory(t, "a"))
    assert store.lease_next(a) is None  # a never gets a second slot of a task
    lb = store.lease_next(b)
    assert lb.task.task_id == t.task_id and lb.slot != la.slot


def test_skips_pass_the_task_on_and_drop_it_after_max_skips(tmp_path):
    store = Store(tmp_path / "q.db", max_skips=2)
    store.enqueue(tasks(1)[0])
    a, b, c = (store.user_by_token(store.add_user(n, "labeler")) for n in "abc")
    assert store.skip(a, store.lease_next(a).item_id, "task unclear") == "queued"
    assert store.lease_next(a) is None  # not offered again to a
    assert store.skip(b, store.lease_next(b).item_id, "page broken") == "dropped"
    assert store.lease_next(c) is None
    assert {s["reason"] for s in store.recent_skips()} == {"task unclear", "page broken"}


def write_bootstrap(staging_dir: Path, accepted: list[Task], failed: list[Task]) -> None:
    ts = [fake_trajectory(t, "gpt-4o", source="bootstrap") for t in accepted]
    ts += [fake_trajectory(t, "gpt-4o", passed=False, source="bootstrap") for t in failed]
    staging.write_batch(staging_dir, ts, "bootstrap-000")


def test_sync_enqueues_what_the_config_selects_once(tmp_path):
    out = tmp_path / "out"
    with_solver = tasks(10, "click-button", solver="miniwob.click-button")
    no_solver = tasks(3, "click-test")
    write_bootstrap(out / "staging", accepted=with_solver[:2], failed=with_solver[2:4])
    config = HumanSourceConfig(enabled=True, select={"sample": 0.3}, overlap=1.0, overlap_labelers=3)
    picked = dict((t.task_id, r) for t, r in harvest.select(config, with_solver + no_solver, out / "staging"))
    assert {r for r in picked.values()} >= {"no_solver", "bootstrap_failed"}
    assert all(picked[t.task_id] == "no_solver" for t in no_solver)
    assert all(picked[t.task_id] == "bootstrap_failed" for t in with_solver[2:4])
    assert all(picked.get(t.task_id) != "bootstrap_failed" for t in with_solver[:2])  # the agent passed these
    first = harvest.sync(config, with_solver + no_solver, out, "run1")
    assert first["enqueued"] == 3 * len(picked) and first["queue_queued"] == 3 * len(picked)
    again = harvest.sync(config, with_solver + no_solver, out, "run2")
    assert again["enqueued"] == 0 and again["queue_queued"] == first["queue_queued"]
    # the same sample in every run, and templates select whole templates
    only = HumanSourceConfig(select={"no_solver": False, "bootstrap_failed": False, "templates": ["miniwob/click-b*"]})
    assert [t.task_id for t, _ in harvest.select(only, with_solver + no_solver, out / "staging")] == [
        t.task_id for t in with_solver
    ]


def test_harvest_writes_each_trajectory_once_even_after_a_crash(tmp_path, monkeypatch):
    out = tmp_path / "out"
    config = HumanSourceConfig(enabled=True, select={"templates": ["miniwob/*"]})
    todo = tasks(3)
    harvest.sync(config, todo, out, "run1")
    store = harvest.open_store(config, out)
    a = store.user_by_token(store.add_user("a", "labeler"))
    ids = []
    while (lease := store.lease_next(a)) is not None:
        t = fake_trajectory(lease.task, "a")
        store.submit(a, lease.item_id, t)
        ids.append(t.trajectory_id)

    # crash between writing the staging file and marking the rows harvested
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "mark_harvested", crash)
    with pytest.raises(KeyboardInterrupt):
        harvest.sync(config, todo, out, "run2")
    monkeypatch.undo()
    assert len(staging.files(out / "staging")) == 1
    second = harvest.sync(config, todo, out, "run3")
    assert second["harvested"] == 0  # already staged: only marked now
    third = harvest.sync(config, todo, out, "run4")
    assert third["harvested"] == 0
    rows = list(staging.iter_rows(out / "staging"))
    assert sorted(r["trajectory_id"] for r in rows) == sorted(ids)
    assert {r["source"] for r in rows} == {"human"} and {r["run_id"] for r in rows} == {"run2"}
    assert rows[0]["steps"][0]["monologue"]["thought"] == "the button"

    # new submissions later land in a new file, and nothing twice
    harvest.sync(HumanSourceConfig(enabled=True, select={"templates": ["miniwob/*"]}), tasks(4), out, "run5")
    lease = store.lease_next(a)
    store.submit(a, lease.item_id, fake_trajectory(lease.task, "a"))
    assert harvest.sync(config, tasks(4), out, "run6")["harvested"] == 1
    assert len(staging.files(out / "staging")) == 2
    assert len({r["trajectory_id"] for r in staging.iter_rows(out / "staging")}) == 4


def test_reviews_parquet_holds_the_latest_verdict_per_trajectory(tmp_path):
    out = tmp_path / "out"
    config = HumanSourceConfig(enabled=True)
    store = harvest.open_store(config, out)
    clock = Clock()
    store.clock = clock
    store.add_review("a" * 16, "rev1", "accept", [], "fine")
    clock.now += 10
    store.add_review("a" * 16, "rev2", "reject", ["wrong-element", "<b>x</b>"], "clicked the wrong 'OK'")
    store.add_review("b" * 16, "rev1", "accept", [], "")
    assert harvest.sync(config, [], out, "r")["reviews"] == 2
    table = pq.read_table(out / "reviews.parquet")
    assert table.schema.names == ["trajectory_id", "reviewer", "verdict", "tags", "comment", "reviewed_at",
                                  "override_judge", "override_reason"]
    tags = table.schema.field("tags").type
    assert pa.types.is_list(tags) and tags.value_type == pa.string()
    rows = {r["trajectory_id"]: r for r in table.to_pylist()}
    assert rows["a" * 16]["verdict"] == "reject" and rows["a" * 16]["reviewer"] == "rev2"
    assert rows["a" * 16]["tags"] == ["wrong-element", "<b>x</b>"]
    assert rows["b" * 16]["verdict"] == "accept"
    assert not list(out.glob(".*.tmp"))


def test_agreement_compares_outcomes_and_sequences_up_to_the_steps_minimality_would_drop(tmp_path):
    from annotation_ui import agreement
    from synth.schema import Element

    task = tasks(1)[0]
    store = Store(tmp_path / "q.db")
    store.enqueue(task, slots=3)
    area = Box(x=0, y=0, width=160, height=210)
    ok = Element(id=1, tag="button", role="button", name="OK", box=Box(x=10, y=10, width=40, height=20))
    before = Observation(url="http://x/", area=area, elements=[ok])
    after = Observation(url="http://x/done", area=area, elements=[])

    def made(labeler: str, actions: list[tuple[Action, Element | None]], passed: bool) -> None:
        user = store.user_by_token(store.add_user(labeler, "labeler"))
        lease = store.lease_next(user)
        obs = [before] * len(actions)  # the page changes only with the last action
        steps = [Step(index=i, observation=o, action=a, element=el) for i, ((a, el), o) in enumerate(zip(actions, obs))]
        t = fake_trajectory(task, labeler, passed=passed).model_copy(update={"steps": steps})
        store.submit(user, lease.item_id, t, final=after)

    click_ok = (Action(name="click", x=0.19, y=0.1), ok)
    made("ann", [click_ok], True)
    # a click on nothing first (the page did not change: minimality would drop it), then the same
    made("bob", [(Action(name="click", x=0.9, y=0.9), None), (Action(name="click", x=0.2, y=0.11), ok)], True)
    made("cy", [(Action(name="type", text="OK"), None)], False)
    pairs = {(p.labeler_a, p.labeler_b): p for p in agreement.pairs(store)}
    assert set(pairs) == {("ann", "bob"), ("ann", "cy"), ("bob", "cy")}
    assert pairs["ann", "bob"].same_sequence and pairs["ann", "bob"].same_outcome
    assert pairs["ann", "bob"].step_agreement == 1.0
    assert not pairs["ann", "cy"].same_outcome and not pairs["ann", "cy"].same_sequence
    assert pairs["ann", "cy"].step_agreement == 0.0
    assert agreement.agreement_table(store) == [{
        "template_id": task.template_id, "tasks": 1, "pairs": 3, "outcome_agreement": round(1 / 3, 4),
        "sequence_agreement": round(1 / 3, 4), "step_agreement": round(1 / 3, 4), "disagreements": 2,
    }]
    assert [(d["labeler_a"], d["labeler_b"]) for d in agreement.disagreements(store)] == [("ann", "cy"), ("bob", "cy")]
    assert store.final_state(pairs["ann", "bob"].a)["url"] == "http://x/done"
    assert agreement.agreement_for_run(tmp_path, db="q.db")[0]["pairs"] == 3
    assert agreement.agreement_for_run(tmp_path / "nowhere") == []


def test_reviews_become_judge_accuracy_labels_overrides_as_false_negatives(tmp_path):
    from annotation_ui.judge_labels import review_labels
    from synth.judge_eval import JudgeReport

    store = Store(tmp_path / "q.db")
    ts = tasks(5)
    store.enqueue_many([(t, 1, "manual", 0) for t in ts])
    user = store.user_by_token(store.add_user("ann", "labeler"))
    passed = [True, True, True, False, False]
    ids = []
    for ok in passed:
        lease = store.lease_next(user)
        t = fake_trajectory(lease.task, "ann", passed=ok).model_copy(update={"task_config": lease.task.model_dump_json()})
        store.submit(user, lease.item_id, t)
        ids.append(t.trajectory_id)
    store.add_review(ids[0], "rev", "accept", [], "")  # judge right: a true positive
    store.add_review(ids[1], "rev", "reject", ["incomplete"], "never reached the cart")  # judge wrong: false positive
    store.add_review(ids[2], "rev", "reject", ["unnecessary-steps"], "")  # not about the outcome: no label
    store.add_review(ids[3], "rev", "accept", ["judge-wrong"], "", override_reason="the checker missed it")  # FN
    store.add_review(ids[4], "rev", "accept", [], "")  # an accept of a failure without an override: no label
    with pytest.raises(ValueError):
        store.add_review(ids[0], "rev", "reject", [], "", override_reason="x")  # an override accepts
    store.close()
    items = review_labels(tmp_path / "q.db")
    assert {i.trajectory_id: (i.judge_passed, i.correct) for i in items} == {
        ids[0]: (True, True), ids[1]: (True, False), ids[3]: (False, True)}
    assert all(i.judge == "miniwob_reward" and i.kind == "review" for i in items), {i.judge for i in items}
    assert "the checker missed it" in next(i.oracle for i in items if i.trajectory_id == ids[3])
    acc = JudgeReport(items=items).by_template()[ts[0].template_id]
    assert (acc.tp, acc.fp, acc.fn, acc.tn) == (1, 1, 1, 0)


def test_reading_a_stored_trajectory_starts_no_native_thread_that_could_outlive_a_command():
    """`synth annotate agreement` once exited -6 after printing its table: a
    thread of Arrow's dataset scanner (which `pq.read_table` uses) was alive
    at interpreter exit. Decoding a stored trajectory reads it whole, starts
    no thread, and gives every staging column."""
    code = (
        "import os\n"
        "from annotation_ui.store import decode_trajectory, encode_trajectory\n"
        "from tests.test_annotation_store import fake_trajectory, tasks\n"
        "data = encode_trajectory(fake_trajectory(tasks(1)[0], 'e1'))\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "row = decode_trajectory(data)\n"
        "print(len(os.listdir('/proc/self/task')) - before, row['source_detail'], row['steps'][0]['action']['name'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "e1", "click"]
