"""Outputs on pyarrow filesystems: synth.storage against a local folder and a
real S3-compatible server (moto's, on 127.0.0.1), then `synth run` end to end
with `output_dir: s3://...`, resumed, queried and pushed from there."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from synth import staging, storage
from synth.config import ConfigError, load_pipeline
from synth.episode import failed_trajectory
from synth.sites.miniwob import make_task

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "synth-test"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A real S3 API on a free local port, with one bucket; yields the URI of
    a prefix in it (a fresh one per call of `s3()`)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"endpoint_override=127.0.0.1:{port}&scheme=http"
    fs, _ = storage.resolve(f"s3://{BUCKET}?{endpoint}&allow_bucket_creation=true")
    fs.create_dir(BUCKET)
    try:
        yield lambda: f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}?{endpoint}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path) -> str:
    """An empty output location: a local folder, or a prefix on the S3 server."""
    return str(tmp_path / "out") if request.param == "local" else request.getfixturevalue("s3")()


def test_child_keeps_the_query_and_cache_dir_is_local():
    uri = "s3://b/run?endpoint_override=h:9000&scheme=http"
    assert storage.child(uri, "staging") == "s3://b/run/staging?endpoint_override=h:9000&scheme=http"
    assert storage.child("file:///data/run", "data", "x") == "file:///data/run/data/x"
    assert storage.child("out/web", "staging") == os.path.join("out/web", "staging")
    assert storage.cache_dir("out/web") == os.path.abspath("out/web/cache")
    remote = storage.cache_dir(uri)
    assert remote.startswith("~/.cache/synth/") and remote == storage.cache_dir(uri) != storage.cache_dir(uri + "x")
    assert storage.cache_dir(uri, "~/c") == "~/c" and storage.cache_dir(uri, "c") == os.path.abspath("c")


def test_whole_file_writes_are_atomic(location):
    fs, root = storage.resolve(location)
    path = storage.join(root, "sub", "manifest.json")
    storage.write_atomic(fs, path, '{"a": 1}')
    storage.write_atomic(fs, path, b'{"a": 2}')  # replaces
    assert json.loads(storage.read_text(fs, path)) == {"a": 2}
    with pytest.raises(RuntimeError):
        with storage.atomic_output(fs, storage.join(root, "sub", "half.bin")) as f:
            f.write(b"half")
            raise RuntimeError("the writer failed")
    # neither the half-written file nor a temporary one is left
    assert storage.list_files(fs, storage.join(root, "sub"), hidden=True) == [path]
    assert storage.exists(fs, path) and not storage.exists(fs, storage.join(root, "nope"))


def test_listing_deleting_and_moving(location):
    fs, root = storage.resolve(location)
    for name in ("b.parquet", "a.parquet", ".a.parquet.1234.tmp", "c.txt", "d/e.parquet"):
        storage.write_atomic(fs, storage.join(root, name), b"x")
    names = lambda paths: [p.rsplit("/", 1)[-1] for p in paths]  # noqa: E731
    assert names(storage.list_files(fs, root, ".parquet")) == ["a.parquet", "b.parquet"]
    assert names(storage.list_files(fs, root, ".tmp", hidden=True)) == [".a.parquet.1234.tmp"]
    assert names(storage.list_files(fs, root, ".parquet", recursive=True)) == ["a.parquet", "b.parquet", "e.parquet"]
    assert names(storage.list_dirs(fs, root)) == ["d"]
    storage.move(fs, storage.join(root, "c.txt"), storage.join(root, "d", "c.txt"))
    assert names(storage.list_files(fs, storage.join(root, "d"))) == ["c.txt", "e.parquet"]
    storage.delete(fs, storage.join(root, "a.parquet"))
    storage.delete(fs, storage.join(root, "a.parquet"))  # missing: no error
    storage.delete_dir(fs, storage.join(root, "d"))
    storage.delete_dir(fs, storage.join(root, "d"))
    assert names(storage.list_files(fs, root, recursive=True)) == ["b.parquet"]
    assert storage.list_files(fs, storage.join(root, "missing")) == []


def test_replace_dir_swaps_a_folder_in(location):
    fs, root = storage.resolve(location)
    current, new = storage.join(root, "data"), storage.join(root, ".data-1.tmp")
    storage.write_atomic(fs, storage.join(current, "old", "train-00000-of-00002.parquet"), b"old")
    storage.write_atomic(fs, storage.join(current, "old", "train-00001-of-00002.parquet"), b"old")
    storage.write_atomic(fs, storage.join(new, "steps", "train-00000-of-00001.parquet"), b"new")
    seen = []
    storage.replace_dir(fs, new, current, between=lambda: seen.append(storage.exists(fs, current)))
    assert seen == [False]  # the old folder was gone when `between` ran
    assert storage.list_files(fs, current, recursive=True) == [storage.join(current, "steps", "train-00000-of-00001.parquet")]
    assert storage.read_bytes(fs, storage.join(current, "steps", "train-00000-of-00001.parquet")) == b"new"
    assert not storage.exists(fs, new)
    assert [d for d in storage.list_dirs(fs, root)] == [current]  # no `.data-old-*` left


def test_staging_round_trip(location):
    staging_dir = storage.child(location, "staging")
    tasks = [make_task("click-button", seed) for seed in range(3)]
    trajectories = [failed_trajectory(t, "solver", "none", "test", "r1") for t in tasks]
    staging.write_batch(staging_dir, trajectories[:2], "w0-000000")
    staging.write_batch(staging_dir, trajectories[2:], "w0-000001")
    fs, folder = storage.resolve(staging_dir)
    storage.write_atomic(fs, storage.join(folder, ".w0-000002.parquet.dead.tmp"), b"killed mid-write")
    assert len(staging.files(staging_dir)) == 2
    assert staging.finished_task_ids(staging_dir) == {t.task_id for t in tasks}
    assert staging.finished_task_ids(staging_dir, source="human") == set()
    assert [r["trajectory_id"] for r in staging.iter_rows(staging_dir)] == [t.trajectory_id for t in trajectories]
    assert staging.remove_partial(staging_dir) == 1 and staging.remove_partial(staging_dir) == 0


def test_annotation_reads_staging_and_writes_reviews_there_with_the_queue_local(location, tmp_path):
    """The human source with the output on S3: reviews.parquet goes to the
    output, the SQLite queue to the local cache_dir; the review pages list and
    open staged trajectories from there."""
    from annotation_ui import harvest
    from annotation_ui.staged import Trajectories
    from synth.config import HumanSourceConfig
    from synth.quality.stage import read_reviews

    config = HumanSourceConfig(enabled=True)
    db = harvest.db_path(config, location, str(tmp_path / "cache"))
    assert db == (tmp_path / "cache" / "annotations.db" if storage.is_remote(location) else Path(location) / "annotations.db")
    store = harvest.open_store(config, location, str(tmp_path / "cache"))
    store.add_review("a" * 16, "rev1", "reject", ["loop"], "went round")
    assert harvest.sync(config, [], location, "r1", str(tmp_path / "cache"))["reviews"] == 1
    assert read_reviews(location)["a" * 16].verdict == "reject"
    fs, root = storage.resolve(location)
    assert storage.exists(fs, storage.join(root, "reviews.parquet"))
    assert storage.list_files(fs, root, ".tmp", hidden=True) == []  # no temporary file left
    assert not storage.exists(fs, storage.join(root, "annotations.db")) or not storage.is_remote(location)
    t = failed_trajectory(make_task("click-button", 1), "solver", "none", "test", "r1")
    staging.write_batch(storage.child(location, "staging"), [t], "w0-000000")
    pages = Trajectories(store, location)
    assert [r["trajectory_id"] for r in pages.list()] == [t.trajectory_id]
    assert pages.get(t.trajectory_id)["task_id"] == t.task_id


def test_push_from_s3_commits_the_bucket_files(s3, tmp_path, monkeypatch):
    """`synth push s3://...` (no pipeline run: staged trajectories exported on
    the bucket): the files go through a local temporary copy into one commit
    on a local server speaking the Hub's API, byte for byte as in the bucket."""
    from hub_server import HubServer, online
    from typer.testing import CliRunner

    from synth.cli import app
    from synth.export.card import card, manifest
    from synth.export.hub import plan_push
    from synth.export.shards import export

    out = s3()
    tasks = [make_task("click-button", seed) for seed in range(3)]
    staging.write_batch(storage.child(out, "staging"), [failed_trajectory(t, "solver", "none", "test", "r1")
                                                         for t in tasks], "w0-000000")
    m = manifest("s3-push", export(out, formats=[]), {})
    fs, root = storage.resolve(out)
    storage.write_atomic(fs, storage.join(root, "manifest.json"), json.dumps(m))
    storage.write_atomic(fs, storage.join(root, "README.md"), card(m))
    with HubServer({"hf_x": "me"}) as server:
        online(monkeypatch, server)
        r = CliRunner().invoke(app, ["push", out, "--repo", "me/s3", "--token", "hf_x"])
        sent = server.state.files("me/s3")
    assert r.exit_code == 0 and "/datasets/me/s3/commit/" in r.stdout, r.output
    assert "copied to a temporary folder first" in r.output
    assert len(server.state.commit_payloads) == 1 and sent.pop(".gitattributes")
    assert sorted(sent) == sorted(plan_push(out).files)
    assert all(fs.open_input_stream(storage.join(root, f)).read() == data for f, data in sent.items())


def test_a_bad_output_uri_is_a_config_error_naming_field_and_uri(tmp_path):
    def pipeline(output_dir: str) -> Path:
        p = tmp_path / "pipeline.yaml"
        p.write_text(f"name: t\noutput_dir: {output_dir}\ntasks:\n  - templates: x.yaml\n")
        return p

    with pytest.raises(ConfigError) as e:
        load_pipeline(pipeline("nosuchfs://bucket/run"))
    assert str(e.value).startswith(f"{tmp_path / 'pipeline.yaml'}:2: output_dir: ")
    assert "nosuchfs://bucket/run" in str(e.value) and "pyarrow cannot open it" in str(e.value)
    with pytest.raises(ConfigError, match="output_dir: .*names no bucket"):
        load_pipeline(pipeline("s3://"))
    with pytest.raises(ConfigError, match="output_dir: .*credentials in the URI") as e:
        load_pipeline(pipeline("s3://AKIA:hunter2@bucket/run"))
    assert "hunter2" not in str(e.value)
    r = subprocess.run([sys.executable, "-m", "synth.cli", "run", str(pipeline("nosuchfs://bucket/run"))],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "output_dir" in r.stderr and "nosuchfs://bucket/run" in r.stderr


# ---------------------------------------------------------------- end to end


def _write_pipeline(tmp: Path, output_dir: str) -> Path:
    p = tmp / "pipeline.yaml"
    p.write_text(
        f"""
name: s3test
output_dir: "{output_dir}"
tasks:
  - templates: {ROOT / 'templates/tasks/miniwob.yaml'}
    include: ["click-button", "login-user"]
    seeds_per_template: 3
sources:
  solver: {{actors: 1, contexts_per_actor: 3, num_cpus: 1}}
quality:
  replay: {{actors: 1, contexts_per_actor: 3}}
ray: {{batch_size: 3, num_cpus: 2}}
"""
    )
    return p


def _run(pipeline: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synth.cli", "run", str(pipeline)], capture_output=True, text=True, timeout=240,
        cwd=ROOT, env={**os.environ, **AWS_ENV},
    )


@pytest.mark.slow
def test_pipeline_writes_to_s3_and_resumes(s3, tmp_path, monkeypatch):
    """`synth run` with `output_dir: s3://...`: the source actors (Ray
    workers, which inherit the driver's AWS_* environment) write staging, the
    driver writes shards, manifest and card; all load back from S3; a second
    run records nothing and ends with the same totals; `synth query`,
    `synth stats` and `synth push` work on the S3 output."""
    from synth.pipeline import prepare
    from synth.schema import trajectory_id

    out = s3()
    pipeline = _write_pipeline(tmp_path, out)
    r = _run(pipeline)
    assert r.returncode == 0, r.stderr[-3000:]
    fs, root = storage.resolve(out)
    assert isinstance(fs, pafs.S3FileSystem)
    staged = staging.files(storage.child(out, "staging"))
    m = json.loads(storage.read_text(fs, storage.join(root, "manifest.json")))
    (run_id,) = m["run_ids"]
    # staging files are named by the actor that wrote them: the workers reached S3 themselves
    assert staged and all(p.rsplit("/", 1)[-1].startswith(f"{run_id}-solver") for p in staged)
    assert "configs:" in storage.read_text(fs, storage.join(root, "README.md"))
    expected = {trajectory_id(t.task_id, "solver", t.solver) for t in prepare(pipeline).tasks}
    shards = storage.list_files(fs, storage.join(root, "data/trajectories"), ".parquet")
    assert [p.rsplit("/", 1)[-1] for p in shards] == ["train-00000-of-00001.parquet"]
    ids = ds.dataset(shards, filesystem=fs).to_table().column("trajectory_id").to_pylist()
    assert len(ids) == len(set(ids)) == 6 and set(ids) == expected
    steps = ds.dataset(storage.join(root, "data/steps"), filesystem=fs, format="parquet").to_table()
    assert steps.num_rows >= 6 and steps.column("screenshot")[0]["bytes"].as_py()[:4] == b"\x89PNG"
    # replayed beside recording (its results already in the S3 cache when the gate ran) or after it
    replay = m["gates"]["replay"]
    assert m["trajectories"] == 6 and replay["replayed"] + replay["cached"] == replay["in"] >= 1
    assert storage.list_files(fs, storage.join(root, "quality", "replay"), ".parquet"), "no replay cache on S3"
    assert not storage.exists(fs, storage.join(root, "cache"))  # SQLite never goes to the bucket

    again = _run(pipeline)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "6 tasks were already done" in again.stderr
    assert staging.files(storage.child(out, "staging")) == staged  # nothing new recorded
    ids = ds.dataset(shards, filesystem=fs).to_table().column("trajectory_id").to_pylist()
    assert len(ids) == len(set(ids)) == 6 and set(ids) == expected
    m2 = json.loads(storage.read_text(fs, storage.join(root, "manifest.json")))
    assert (m2["trajectories"], m2["accepted"], m2["run_ids"]) == (m["trajectories"], m["accepted"], m["run_ids"])
    assert m2["gates"]["replay"]["replayed"] == 0 and m2["gates"]["replay"]["cached"] >= 1

    _query_stats_and_push(out, tmp_path, monkeypatch, m, ids)


def _query_stats_and_push(out: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, m: dict, ids: list[str]) -> None:
    from typer.testing import CliRunner

    from synth.cli import app

    cli = CliRunner()
    r = cli.invoke(app, ["query", "select count(*) as n, count(distinct trajectory_id) as d from trajectories",
                         "-o", out, "-f", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [{"n": 6, "d": 6}]
    r = cli.invoke(app, ["query", "select count(*) as n from steps where screenshot.bytes is not null", "-o", out,
                         "-f", "csv"])
    assert r.exit_code == 0 and int(r.stdout.split()[-1]) == m["steps"], r.output
    r = cli.invoke(app, ["stats", out, "--html"])
    assert r.exit_code == 0 and "by template" in r.stdout, r.output
    fs, root = storage.resolve(out)
    assert "Quality gates" in storage.read_text(fs, storage.join(root, "report.html"))
    r = cli.invoke(app, ["query", "select 1", "-o", "nosuchfs://x/y"])
    assert r.exit_code == 2 and "nosuchfs://x/y" in r.output

    # pushed from the bucket to a local server speaking the Hub's API (tests/hub_server.py)
    from hub_server import HubServer, online

    with HubServer({"hf_x": "me"}) as server:
        online(monkeypatch, server)
        r = cli.invoke(app, ["push", out, "--repo", "me/s3", "--token", "hf_x"])
        sent = server.state.files("me/s3")
    assert r.exit_code == 0 and "/datasets/me/s3/commit/" in r.stdout, r.output
    assert len(server.state.commit_payloads) == 1
    assert {"README.md", "manifest.json", "data/trajectories/train-00000-of-00001.parquet"} <= set(sent)
    assert not any(f.startswith(("staging/", "quality/")) for f in sent)
    pushed = tmp_path / "pushed-from-s3"
    for name, data in sent.items():
        (pushed / name).parent.mkdir(parents=True, exist_ok=True)
        (pushed / name).write_bytes(data)
    from datasets import load_dataset  # offline: tests/conftest.py sets HF_*_OFFLINE

    # a cache of its own: `datasets` may key a local folder's cache by its name, not its files
    loaded = load_dataset(str(pushed), "trajectories", split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert sorted(loaded["trajectory_id"]) == sorted(ids)


@pytest.mark.slow
def test_a_run_killed_mid_swap_on_s3_resumes_with_exact_totals(s3, tmp_path):
    """On an object store the swap of `data/` is a delete then copies, not a
    rename: killed between the two (SIGKILL of the whole run), the bucket has
    no `data/` and a half-built temporary folder. The same command rebuilds
    `data/` from staging, removes the leftover and ends with the same ids."""
    from synth.pipeline import prepare
    from synth.schema import trajectory_id

    out = s3()
    pipeline = _write_pipeline(tmp_path, out)
    env = {**os.environ, **AWS_ENV, "SYNTH_CRASH_AT": "export.swap:1"}
    killed = subprocess.run(  # its own process group: the crash point kills the group
        [sys.executable, "-m", "synth.cli", "run", str(pipeline)], capture_output=True, text=True, timeout=240,
        cwd=ROOT, env=env, start_new_session=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    fs, root = storage.resolve(out)
    assert not storage.exists(fs, storage.join(root, "data/trajectories"))
    assert [d for d in storage.list_dirs(fs, root) if d.rsplit("/", 1)[-1].startswith(".data-")]
    assert not storage.exists(fs, storage.join(root, "manifest.json"))

    r = _run(pipeline)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not [d for d in storage.list_dirs(fs, root) if d.rsplit("/", 1)[-1].startswith(".data-")]
    shards = storage.list_files(fs, storage.join(root, "data/trajectories"), ".parquet")
    ids = ds.dataset(shards, filesystem=fs).to_table().column("trajectory_id").to_pylist()
    expected = {trajectory_id(t.task_id, "solver", t.solver) for t in prepare(pipeline).tasks}
    assert len(ids) == len(set(ids)) == 6 and set(ids) == expected
    m = json.loads(storage.read_text(fs, storage.join(root, "manifest.json")))
    assert m["trajectories"] == 6 and m["accepted"] + m["rejected"] == 6
