"""The README's cluster path, for real: `ray start --head` with a dashboard, a
worker node from a second `ray start --address ...` (separate processes, as on
two machines), then, in a project folder, the README's `ray job submit
--address http://<head>:<dashboard port> --working-dir . -- synth run
pipelines/web.yaml`.

The project (the pipeline and its task templates) reaches the job only
through the working-dir upload; synth itself is installed on the nodes (this
venv, first on PATH of both `ray start`s: the job's entrypoint runs in a shell
with the head's environment, the actors with their node's). The output is an
absolute path both nodes can write, as a shared mount would be.

The cluster has its own ports, `--temp-dir` (so its `ray_current_cluster` and
session folders are its own: a plain `ray.init()` elsewhere on the machine
does not join it) and a marker in the environment of every process it
starts; teardown kills those processes only, never with a bare `ray stop`,
which would take down every other Ray instance on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq
import pytest

from synth import staging
from synth.pipeline import prepare
from synth.schema import trajectory_id

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
MARKER = "SYNTH_TEST_RAY_NODE"
"""Environment variable set on each `ray start`; every process of that node
(raylet, GCS, workers, their Playwright drivers and Chromiums, which run in
sessions of their own) inherits it, so a node can be killed whole."""
TEMPLATES = ["click-button", "click-link", "login-user"]
PIPELINE = "pipelines/web.yaml"

pytestmark = pytest.mark.slow


def free_ports(n: int) -> list[int]:
    """`n` distinct loopback ports free right now (held open together so the
    kernel cannot hand out one twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def marked_pids(marker: str) -> list[int]:
    """Live processes whose MARKER is `marker` or starts with `marker-`."""
    exact, below = f"{MARKER}={marker}".encode(), f"{MARKER}={marker}-".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()  # empty for a zombie
        except OSError:  # gone, or not ours
            continue
        if any(var == exact or var.startswith(below) for var in env.split(b"\0")):
            pids.append(int(entry.name))
    return pids


def kill_marked(marker: str) -> None:
    for _ in range(3):  # a process may fork while we look
        for pid in marked_pids(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


class StartFailed(AssertionError):
    """`ray start` exited before its node was up."""


@dataclass
class Node:
    """One `ray start --block`, in a session of its own; `marker` is both
    its processes' MARKER and its Ray node name."""

    marker: str
    proc: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """SIGKILL the whole node, as if its machine died: its process group
        (ray start, raylet, GCS, dashboard, workers) and what left the group
        but carries its marker (Chromium)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        kill_marked(self.marker)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Let `ray start --block` stop its processes, then kill what is left."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


@dataclass
class Cluster:
    """A head (GCS, dashboard, job server) and a worker node, each a `ray start`."""

    temp_dir: Path
    env: dict[str, str]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    nodes: dict[str, Node] = field(default_factory=dict)
    started: list[Node] = field(default_factory=list)
    gcs: str = ""
    dashboard: str = ""

    def _start(self, name: str, args: Callable[[], list[str]], what: str) -> Node:
        """`ray start` a node and wait until the head lists it alive. Ray
        gives a node 30 s to register (hard-coded); on a machine busy with
        other tests that can run out, so a failed start is tried again once."""
        for attempt in range(2):
            ports = free_ports(6)
            marker = f"{self.id}-{name}{len(self.started)}"
            log = self.temp_dir / f"{marker}.log"
            cmd = [
                RAY, "start", *args(), "--block", "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
                f"--node-name={marker}",
                # ports of their own: the defaults (52365 for the agent, ...)
                # clash between two nodes on one machine and with other Rays
                f"--node-manager-port={ports[0]}", f"--object-manager-port={ports[1]}",
                f"--dashboard-agent-listen-port={ports[2]}", f"--dashboard-agent-grpc-port={ports[3]}",
                f"--runtime-env-agent-port={ports[4]}", f"--metrics-export-port={ports[5]}",
                f"--object-store-memory={200 * 2**20}",  # two nodes' stores in one small /dev/shm
            ]
            with open(log, "wb") as out:
                proc = subprocess.Popen(cmd, env={**self.env, MARKER: marker}, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            node = Node(marker, proc, log)
            self.started.append(node)
            try:
                self._wait(lambda: self.node_id(marker) is not None, node, what)
            except StartFailed:
                node.kill()
                if attempt:
                    raise
                continue
            self.nodes[name] = node
            return node
        raise AssertionError("unreachable")

    def start_head(self, num_cpus: int) -> None:
        def args() -> list[str]:
            gcs, dashboard, client = free_ports(3)
            self.gcs, self.dashboard = f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}"
            return ["--head", f"--port={gcs}", f"--num-cpus={num_cpus}", "--include-dashboard=true",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}"]

        self._start("head", args, "the head")

    def worker(self, num_cpus: int = 1) -> str:
        """The worker node's id; (re)started if it is not alive."""
        node = self.nodes.get("worker")
        if node is None or node.proc.poll() is not None or self.node_id(node.marker) is None:
            node = self._start("worker", lambda: [f"--address={self.gcs}", f"--num-cpus={num_cpus}"], "the worker node")
        return self.node_id(node.marker)

    def head_node_id(self) -> str:
        return self.node_id(self.nodes["head"].marker)

    def node_id(self, name: str) -> str | None:
        """The id of the live node named `name`, if there is one."""
        return next((n["node_id"] for n in self._state("nodes", node_name=name) if n["state"] == "ALIVE"), None)

    def _get(self, path: str, **params: Any) -> Any:
        """GET from the dashboard's HTTP API, with the cluster's token."""
        import requests

        r = requests.get(f"{self.dashboard}{path}", params=params, timeout=10,
                         headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"})
        r.raise_for_status()
        return r.json()

    def _wait(self, ready: Callable[[], bool], node: Node, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise StartFailed(f"`ray start` of {what} exited:\n{node.log.read_text()[-3000:]}")
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.5)
        raise AssertionError(f"{what} not up after {timeout}s:\n{node.log.read_text()[-3000:]}")

    def _state(self, resource: str, **filters: str) -> list[dict[str, Any]]:
        """Ray's state API (what `ray list <resource>` shows)."""
        reply = self._get(f"/api/v0/{resource}", limit=10000, timeout=10, filter_keys=list(filters),
                          filter_predicates=["="] * len(filters), filter_values=list(filters.values()))
        assert reply["result"], reply
        return reply["data"]["result"]["result"]

    def calls(self, name: str, node_id: str) -> dict[str, str]:
        """State by task id of the calls named `name` that ran on `node_id`
        (of every job so far)."""
        return {t["task_id"]: t["state"] for t in self._state("tasks", name=name, node_id=node_id)}

    def stop(self) -> None:
        for node in sorted(self.started, key=lambda n: n is self.nodes.get("head")):  # the head last
            node.stop()
        kill_marked(self.id)  # nothing should be left; in case a node's group did not hold it all


@pytest.fixture(scope="module")
def cluster():
    temp_dir = Path(tempfile.mkdtemp(prefix="synth-rj-"))  # short: Ray's unix sockets live in it
    env = {
        **os.environ,
        # where the job's entrypoint (`synth`) is found, and the actors' Python
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # Ray turns token auth on when ~/.ray/auth_token exists (a local
        # ray.init() writes one). This cluster has a token of its own, for
        # both nodes and `ray job submit`, so ~/.ray is neither read nor written.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        # The GCS declares a silent node dead after 5 missed health checks
        # 3 s apart; 3 at 1 s keeps the node-death test short.
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    }
    env.pop("RAY_ADDRESS", None)
    c = Cluster(temp_dir, env)
    try:
        c.start_head(num_cpus=2)
        yield c
    finally:
        c.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


def write_project(tmp_path: Path, seeds: int, replay: float = 1.0) -> tuple[Path, Path]:
    """A project folder laid out as this repository is (`pipelines/web.yaml`
    naming `../templates/tasks/miniwob.yaml`), read by the job from the
    uploaded working dir; the output at an absolute path every node can write.

    The head has 2 CPUs and the worker 1, so of the two solver actors (one
    CPU each) Ray places one per node (a node half busy is not packed
    further), and the head has room for a replacement when the worker dies.
    The replay actor runs beside the solvers and reserves no CPU: an actor
    that fits nowhere would wait, and with it the run."""
    project, out = tmp_path / "project", tmp_path / "out"
    (project / "templates/tasks").mkdir(parents=True)
    (project / "pipelines").mkdir()
    shutil.copy(ROOT / "templates/tasks/miniwob.yaml", project / "templates/tasks/miniwob.yaml")
    (project / PIPELINE).write_text(
        f"""
name: ray-jobs
output_dir: {out}
tasks:
  - templates: ../templates/tasks/miniwob.yaml
    include: {json.dumps(TEMPLATES)}
    seeds_per_template: {seeds}
sources:
  solver: {{actors: 2, contexts_per_actor: 2, num_cpus: 1}}
quality:
  replay: {{actors: 1, contexts_per_actor: 2, num_cpus: 0, sample_rate: {replay}}}
ray: {{batch_size: 2}}
"""
    )
    return project, out


def submit(c: Cluster, project: Path) -> subprocess.Popen:
    """The README's command, in the project folder."""
    return subprocess.Popen(
        [RAY, "job", "submit", "--address", c.dashboard, "--working-dir", ".", "--", "synth", "run", PIPELINE],
        cwd=project, env=c.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def finish(job: subprocess.Popen, timeout: float = 200) -> str:
    """The job's log, once `ray job submit` reports it succeeded."""
    try:
        log, _ = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        job.kill()
        log, _ = job.communicate()
        raise AssertionError(f"the job did not finish in {timeout}s:\n{log[-4000:]}") from None
    assert job.returncode == 0, log[-4000:]
    assert "succeeded" in log, log[-4000:]
    return log


def check_output(project: Path, out: Path) -> dict[str, Any]:
    """Every planned task exactly once, in staging and in the shards; the
    manifest agrees; every shard reads. Returns the manifest."""
    planned = {t.task_id: t for t in prepare(project / PIPELINE).tasks}
    staged = staging.table(str(out / "staging"), ["task_id"])["task_id"].to_pylist()
    twice = {k: n for k, n in Counter(staged).items() if n > 1}
    assert not twice, f"staged more than once: {twice}"
    assert set(staged) == set(planned)
    assert not list((out / "staging").glob(".*.tmp")), "a partial staging file was left"
    ids = pq.read_table(out / "data/trajectories").column("trajectory_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(planned)
    assert set(ids) == {trajectory_id(t.task_id, "solver", t.solver) for t in planned.values()}
    for shard in (out / "data").rglob("*.parquet"):
        pq.read_table(shard)
    m = json.loads((out / "manifest.json").read_text())
    assert m["trajectories"] == len(planned) and m["accepted"] + m["rejected"] == len(planned)
    assert m["accepted"] > 0
    assert set(m["by_template"]) == {f"miniwob/{t}" for t in TEMPLATES}
    return m


def test_job_submit_runs_on_both_nodes(cluster, tmp_path):
    worker, head = cluster.worker(), cluster.head_node_id()
    project, out = write_project(tmp_path, seeds=3)
    log = finish(submit(cluster, project))
    m = check_output(project, out)
    nodes = m["nodes_this_run"]
    assert set(nodes) == {head, worker}, log[-3000:]
    assert sum(nodes.values()) == m["trajectories"] and min(nodes.values()) > 0


def test_worker_node_killed_mid_run_loses_nothing(cluster, tmp_path):
    worker, head = cluster.worker(), cluster.head_node_id()
    # The worker's first batch waits for its browser to start while the head
    # records ~20 tasks: 48 leave the head plenty to do after the kill.
    project, out = write_project(tmp_path, seeds=16, replay=0.2)
    planned = len(prepare(project / PIPELINE).tasks)
    earlier = cluster.calls("SourceActor.run_batch", worker)  # of the job before
    job = submit(cluster, project)
    # Kill the worker node once it has staged a batch and is running another.
    deadline = time.monotonic() + 150
    while True:
        if job.poll() is not None:
            raise AssertionError(f"the job ended before the worker node was killed:\n{job.communicate()[0][-4000:]}")
        assert time.monotonic() < deadline, "the worker node never finished a batch"
        calls = cluster.calls("SourceActor.run_batch", worker)
        states = Counter(state for task, state in calls.items() if task not in earlier)
        if states["FINISHED"] >= 1 and states["RUNNING"] >= 1:
            break
        time.sleep(0.5)
    cluster.nodes["worker"].kill()
    killed_at = time.monotonic()
    staged_at_kill = staging.table(str(out / "staging"), ["task_id"]).num_rows
    assert not marked_pids(cluster.nodes["worker"].marker), "a process of the worker node survived"
    assert staged_at_kill < planned, "the recording was over before the worker node died"
    log = finish(job)
    print(f"worker node killed with {staged_at_kill}/{planned} tasks staged; the job ended {time.monotonic() - killed_at:.0f}s later")
    m = check_output(project, out)
    nodes = m["nodes_this_run"]
    assert set(nodes) == {head, worker}, log[-3000:]
    # a batch the worker staged but could not report is in no node's count
    assert sum(nodes.values()) <= m["trajectories"]
    lost = Counter(state for task, state in cluster.calls("SourceActor.run_batch", worker).items()
                   if task not in earlier)
    assert lost["FAILED"] >= 1, f"no batch was in flight on the worker node when it died: {lost}"
