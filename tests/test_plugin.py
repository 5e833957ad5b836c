"""A user's own package (examples/plugin) adds a site, solvers, a judge and
templates through entry points, with no file of synth changed: installed with
pip, its pipeline runs through Ray workers and every gate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"
SYNTH = Path(sys.executable).with_name("synth")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The plugin pip-installed into a folder of its own, put on PYTHONPATH
    (entry points are found there as in site-packages; Ray workers inherit
    it): the test venv stays as it was for the other tests."""
    target = tmp_path_factory.mktemp("plugin-site")
    src = tmp_path_factory.mktemp("plugin-src") / "plugin"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "out"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--target", str(target), str(src)], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return {"env": env, "src": str(src)}


def synth(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SYNTH), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_plugins_pipeline_runs_through_ray_workers(installed, tmp_path):
    pipeline = tmp_path / "pipeline.yaml"
    text = (Path(installed["src"]) / "pipeline.yaml").read_text()
    pipeline.write_text(text.replace("mybooks/templates", str(Path(installed["src"]) / "mybooks" / "templates"))
                        .replace("seeds_per_template: 8", "seeds_per_template: 2"))
    done = synth("run", str(pipeline), env=installed["env"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "mybooks" / "manifest.json").read_text())
    gates = manifest["gates"]
    assert gates["judge"] == {"in": 6, "passed": 6}
    assert gates["replay"]["passed"] == gates["replay"]["in"] == manifest["gates"]["accepted"] == 6
    assert set(manifest["accepted_by_template"]) == {"mybooks/book-price", "mybooks/book-author", "mybooks/add-to-list"}
    assert sum(manifest["nodes_this_run"].values()) == 6  # every episode ran in a Ray actor on a node


def test_without_the_plugin_the_error_says_where_sites_come_from(tmp_path):
    done = synth("tasks", "list", str(PLUGIN / "mybooks" / "templates"), env=dict(os.environ), cwd=tmp_path)
    assert done.returncode == 2
    message = " ".join(done.stderr.split() + done.stdout.split())
    assert "unknown site 'mybooks'" in message and "synth.sites" in message and "plugins:" in message


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_pipeline_can_name_plugin_modules_instead_of_installing(tmp_path):
    """`plugins:` imports modules from the pipeline's folder in the driver
    and in every Ray worker: the same package, not installed, runs."""
    shutil.copytree(PLUGIN / "mybooks", tmp_path / "mybooks", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pipeline.yaml").write_text(
        "name: mybooks\noutput_dir: out/m\nplugins: [mybooks.site, mybooks.solvers, mybooks.judges]\n"
        "tasks: [{templates: mybooks/templates, seeds_per_template: 1}]\n"
        "sources: {solver: {actors: 1, contexts_per_actor: 3}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = synth("run", "pipeline.yaml", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "m" / "manifest.json").read_text())
    assert manifest["gates"]["accepted"] == 3 and sum(manifest["nodes_this_run"].values()) == 3
    done = synth("tasks", "sample", "mybooks/templates", "-n", "1", "-p", "mybooks.site", "-p", "mybooks.solvers",
                 "-p", "mybooks.judges", env=env, cwd=tmp_path)
    assert done.returncode == 0 and '"site": "mybooks"' in done.stdout, done.stderr[-2000:]
