"""`synth push` against a local server speaking the Hub's HTTP API
(tests/hub_server.py), run as a user would: the `synth push` command in a
subprocess, pointed at the server with HF_ENDPOINT, `huggingface_hub`'s own
client doing every request. The server records what each commit carries and
can fail chosen requests, so the state of the repo after a failure is
checked, not assumed.

The outputs pushed are real: MiniWoB++ episodes recorded in Chromium, staged
and exported by synth's own `export`, with its card and manifest. The same
trajectories exported with 1 row per shard make a push of more than 256
files (where `upload_folder`, with hf_xet installed, splits a push into
several commits: `_upload_pipeline.pipelined_upload`, deletions in the first).

Both transfers `huggingface_hub` uploads with: Xet (its default whenever
hf_xet is installed: xorbs and shards to the CAS, which the server rebuilds the
files from) and LFS (HF_HUB_DISABLE_XET=1: the git-LFS batch API). The
transfer-independent checks (token, branch, visibility) run with LFS only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from synth.export.hub import plan_push

from hub_server import Fault, HubServer
from outputs import record, write_output

ROOT = Path(__file__).resolve().parent.parent
TOKEN, OTHER = "hf_test_token_me", "hf_test_token_someone_else"
TASKS = [("login-user", 0), ("click-button", 1), ("click-checkboxes", 2)]
COPIES = 12
"""Each recorded trajectory staged this many times (new ids), for enough rows
that 1 row per shard makes more than 256 files."""


@pytest_asyncio.fixture(scope="module")
async def recorded(browser, miniwob_site) -> list:
    return await record(browser, miniwob_site, TASKS)


@pytest.fixture(scope="module")
def outputs(recorded, tmp_path_factory) -> dict[str, Path]:
    """few: a handful of shards; many: the same rows, more than 256 files;
    rebuilt: the trajectories of `few` in other shards than `many`."""
    tmp = tmp_path_factory.mktemp("push-out")
    copies = [t.model_copy(deep=True, update={"trajectory_id": f"{t.trajectory_id}-{i}"})
              for t in recorded for i in range(COPIES)]
    few = write_output(tmp / "few", recorded, "hub-test", rows_per_shard=4, formats=["messages", "aguvis-grounding"])
    many = write_output(tmp / "many", copies, "hub-test", rows_per_shard=1, formats=["messages", "openai"])
    n = len(plan_push(many).files)
    assert n > 256, f"{n} files: not enough for a push above upload_folder's split"
    return {"few": few, "many": many}


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer({TOKEN: "me", OTHER: "someone"}) as h:
        yield h


@pytest.fixture(params=["xet", "lfs"])
def transfer(request) -> str:
    return request.param


def env_for(hub: HubServer, home: Path, token: str | None = TOKEN, transfer: str = "lfs") -> dict[str, str]:
    """A new user's environment pointed at the local hub: online (conftest sets
    HF_HUB_OFFLINE for everything else), the transfer chosen, no stored login."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=hub.base, HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0",
               HF_HUB_DISABLE_XET="1" if transfer == "lfs" else "0", HF_HOME=str(home),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_UPDATE_CHECK="1")
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def synth_push(hub: HubServer, home: Path, out: Path, *args: str, token: str | None = TOKEN,
               transfer: str = "lfs") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synth.cli", "push", str(out), *args], capture_output=True, text=True,
        timeout=300, cwd=ROOT, env=env_for(hub, home, token, transfer),
    )


def uploads(hub: HubServer) -> dict[str, int]:
    """How many content uploads of each transfer the server received."""
    log = hub.state.log
    return {"lfs": sum(1 for m, p, _ in log if m == "PUT" and p.startswith("/__lfs/")),
            "xet": sum(1 for m, p, _ in log if m == "POST" and p.startswith("/cas/") and "/xorbs/" in p)}


def local_files(out: Path) -> dict[str, bytes]:
    return {f: (out / f).read_bytes() for f in plan_push(out).files}


def assert_repo_is(hub: HubServer, repo: str, out: Path, revision: str = "main") -> None:
    """The revision holds exactly this output's files, byte for byte (and the
    .gitattributes every Hub repo starts with)."""
    remote = hub.state.files(repo, revision)
    assert remote.pop(".gitattributes", None) is not None
    expected = local_files(out)
    assert sorted(remote) == sorted(expected)
    assert [p for p in expected if remote[p] != expected[p]] == []


def commits_on(hub: HubServer, repo: str, revision: str = "main") -> list[str]:
    """The branch's history, newest first (titles)."""
    state = hub.state
    c = state.resolve(state.repos[repo], revision)
    titles = []
    while c is not None:
        titles.append(c.title)
        c = state.commits.get(c.parent) if c.parent else None
    return titles


def test_push_is_one_commit_of_identical_files_that_loads(hub, outputs, tmp_path, transfer):
    few = outputs["few"]
    r = synth_push(hub, tmp_path / "home", few, "--repo", "me/web", transfer=transfer)
    assert r.returncode == 0, r.stderr
    sent = uploads(hub)
    assert sent[transfer] > 0 and sent["lfs" if transfer == "xet" else "xet"] == 0, sent
    assert "pushed: " in r.stdout and "/datasets/me/web/commit/" in r.stdout
    assert_repo_is(hub, "me/web", few)
    assert hub.state.repos["me/web"].private
    assert len(commits_on(hub, "me/web")) == 2  # the repo's first commit, then the push
    [payload] = hub.state.commit_payloads
    ops = {x["key"] for x in payload}
    assert ops == {"header", "file", "lfsFile"}, ops  # README/JSON inline, Parquet through LFS
    # a line per phase, no progress bars, with stderr not a terminal
    assert "created datasets/me/web (private)" in r.stderr
    assert "uploaded " in r.stderr and "committing " in r.stderr and "\r" not in r.stderr
    assert TOKEN not in r.stdout + r.stderr

    # `datasets` loads every config of the card from the Hub copy with the local row counts
    code = """
import json, sys, yaml
from datasets import load_dataset
out, cache = sys.argv[1], sys.argv[2]
card = open(out + "/README.md").read().split("---")[1]
counts = {}
for c in yaml.safe_load(card)["configs"]:
    name = c["config_name"]
    hub = load_dataset("me/web", name, split="train", cache_dir=cache + "/hub")
    local = load_dataset(out, name, split="train", cache_dir=cache + "/local")
    counts[name] = [hub.num_rows, local.num_rows]
print(json.dumps(counts))
"""
    r = subprocess.run([sys.executable, "-c", code, str(few), str(tmp_path / "cache")], capture_output=True,
                       text=True, timeout=300, env=env_for(hub, tmp_path / "home", transfer=transfer))
    assert r.returncode == 0, r.stderr[-3000:]
    counts = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"trajectories", "steps"} <= set(counts)
    assert all(h == l and h > 0 for h, l in counts.values()), counts


def test_a_push_failing_midway_leaves_the_hub_as_it_was_and_a_retry_completes_it(hub, outputs, tmp_path, transfer):
    few, many = outputs["few"], outputs["many"]
    home = tmp_path / "home"
    assert synth_push(hub, home, few, "--repo", "me/web", transfer=transfer).returncode == 0
    before = hub.state.repos["me/web"].branches["main"]
    n_many = len(plan_push(many).files)

    # an upload refused midway: an LFS object after 100 went up, a xorb after 2
    route, skip = ("lfs-upload", 100) if transfer == "lfs" else ("xet-xorb", 2)
    hub.state.faults = [Fault(route, "403", skip=skip)]
    r = synth_push(hub, home, many, "--repo", "me/web", transfer=transfer)
    assert r.returncode == 1
    assert "uploaded 64/" in r.stderr and "committing" not in r.stderr, r.stderr
    # the cause in full, not only its wrapper's first line (hf_xet's error has the status and URL, not
    # the body); a storage 403 is not a token problem
    said, url = (("caused by: HfHubHTTPError: 403 Forbidden: injected failure", "/__lfs/") if transfer == "lfs"
                 else ("403 Forbidden", "/cas/v1/xorbs/"))
    assert said in r.stderr and url in r.stderr, r.stderr
    assert "HF_TOKEN" not in r.stderr
    assert hub.state.repos["me/web"].branches["main"] == before
    assert_repo_is(hub, "me/web", few)

    # the commit request dropped, twice (push sends it once more after a dropped connection)
    hub.state.faults = [Fault("commit", "drop", times=2)]
    r = synth_push(hub, home, many, "--repo", "me/web", transfer=transfer)
    assert r.returncode == 1, r.stderr
    assert "sending it once more" in r.stderr and "RemoteProtocolError" in r.stderr
    assert hub.state.repos["me/web"].branches["main"] == before
    assert_repo_is(hub, "me/web", few)

    # the same command again: all of it, in one commit with the stale shards deleted
    hub.state.faults = []
    r = synth_push(hub, home, many, "--repo", "me/web", transfer=transfer)
    assert r.returncode == 0, r.stderr
    assert_repo_is(hub, "me/web", many)
    assert len(commits_on(hub, "me/web")) == 3
    last = hub.state.commit_payloads[-1]
    added = {x["value"]["path"] for x in last if x["key"] in ("file", "lfsFile")}
    deleted = {x["value"]["path"] for x in last if x["key"] == "deletedFile"}
    stale = {f for f in local_files(few) if f.startswith("data/")} - set(local_files(many))
    # every shard is sent (huggingface_hub leaves out only files the branch already has as they are)
    assert {f for f in local_files(many) if f.startswith("data/")} <= added and len(added) > 256
    assert deleted == stale and stale
    assert f"{n_many} files, {len(stale)} stale files deleted" in r.stdout

    # back to the few-shard build: the many shards go in the same commit
    r = synth_push(hub, home, few, "--repo", "me/web", transfer=transfer)
    assert r.returncode == 0, r.stderr
    assert_repo_is(hub, "me/web", few)
    deleted = {x["value"]["path"] for x in hub.state.commit_payloads[-1] if x["key"] == "deletedFile"}
    assert len(deleted) > 200


def test_a_commit_applied_whose_response_was_lost_is_a_success(hub, outputs, tmp_path):
    few = outputs["few"]
    hub.state.faults = [Fault("commit", "apply-then-drop")]
    r = synth_push(hub, tmp_path / "home", few, "--repo", "me/web")
    assert r.returncode == 0, r.stderr
    assert "response was lost" in r.stderr and "pushed: " in r.stdout
    assert_repo_is(hub, "me/web", few)
    assert len(commits_on(hub, "me/web")) == 2  # applied once, not twice


def test_a_refused_token_says_how_to_authenticate(hub, outputs, tmp_path):
    few = outputs["few"]
    r = synth_push(hub, tmp_path / "home", few, "--repo", "me/web", token="hf_wrong_token")
    assert r.returncode == 1
    assert "401" in r.stderr and "Invalid credentials" in r.stderr
    assert "HF_TOKEN" in r.stderr and "hf auth login" in r.stderr
    assert "hf_wrong_token" not in r.stdout + r.stderr
    # no token at all (no HF_TOKEN, no login in this HF_HOME): the same hint
    r = synth_push(hub, tmp_path / "home", few, "--repo", "me/web", token=None)
    assert r.returncode == 1 and "401" in r.stderr and "hf auth login" in r.stderr, r.stderr
    # someone else's namespace: 403, same hint
    r = synth_push(hub, tmp_path / "home", few, "--repo", "me/web", token=OTHER)
    assert r.returncode == 1
    assert "403" in r.stderr and "HF_TOKEN" in r.stderr and "write access to me" in r.stderr
    assert "me/web" not in hub.state.repos


def test_revision_creates_the_branch_and_public_changes_visibility(hub, outputs, tmp_path):
    few, home = outputs["few"], tmp_path / "home"
    r = synth_push(hub, home, few, "--repo", "me/web", "--revision", "dev")
    assert r.returncode == 0, r.stderr
    assert "created branch dev from main" in r.stderr
    assert_repo_is(hub, "me/web", few, revision="dev")
    assert sorted(hub.state.files("me/web", "main")) == [".gitattributes"]
    r = synth_push(hub, home, few, "--repo", "me/web", "--revision", "dev")
    assert r.returncode == 0 and "created branch" not in r.stderr, r.stderr

    assert hub.state.repos["me/web"].private
    r = synth_push(hub, home, few, "--repo", "me/web", "--public")
    assert r.returncode == 0, r.stderr
    assert "was private: made it public" in r.stderr
    assert not hub.state.repos["me/web"].private
    r = synth_push(hub, home, few, "--repo", "me/web")
    assert r.returncode == 0 and "is public: left public" in r.stderr, r.stderr
    assert not hub.state.repos["me/web"].private
