"""Bad input gets a clear error naming file, line and field; exit 2; nothing written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.cli import app

GOOD_TEMPLATE = """\
site: miniwob
defaults: {judge: {type: miniwob_reward}}
templates:
  - {id: click-button, params: {task: click-button}, solver: miniwob.click-button}
"""


def pipeline(tmp_path: Path, body: str, template: str = GOOD_TEMPLATE) -> Path:
    (tmp_path / "t.yaml").write_text(template)
    p = tmp_path / "p.yaml"
    p.write_text(textwrap.dedent(body).replace("OUT", str(tmp_path / "out")))
    return p


def run(*args: str):
    return CliRunner().invoke(app, list(args))


BASE = """\
name: test
output_dir: OUT
tasks:
  - templates: t.yaml
"""


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("sources:\n  solver:\n    actors: 0\n", ["p.yaml:7", "sources.solver.actors", "greater than 0", "(got 0)"]),
        ("sources:\n  solver:\n    actorz: 2\n", ["p.yaml:7", "sources.solver.actorz", "unknown field"]),
        ("browser:\n  headless: maybe\n", ["p.yaml:6", "browser.headless", "valid boolean"]),
    ],
)
def test_bad_pipeline_field(tmp_path, extra, expected):
    result = run("run", str(pipeline(tmp_path, BASE + extra)))
    assert result.exit_code == 2, result.output
    for part in expected:
        assert part in result.output, (part, result.output)
    assert not (tmp_path / "out").exists()


def test_broken_yaml_names_the_line(tmp_path):
    result = run("run", str(pipeline(tmp_path, BASE + "ray: {batch_size: [1, 2\n")))
    assert result.exit_code == 2
    assert "p.yaml:" in result.output and "invalid YAML" in result.output


def test_unknown_solver_names_the_allowed_values(tmp_path):
    bad = GOOD_TEMPLATE.replace("miniwob.click-button}", "miniwob.click-buton}")
    result = run("run", str(pipeline(tmp_path, BASE, bad)))
    assert result.exit_code == 2
    assert "t.yaml" in result.output and "templates[0]" in result.output and "solver" in result.output
    assert "'miniwob.click-buton'" in result.output and "miniwob.click-button" in result.output
    assert not (tmp_path / "out").exists()


def test_unknown_judge_and_bad_judge_params(tmp_path):
    result = run("run", str(pipeline(tmp_path, BASE, GOOD_TEMPLATE.replace("miniwob_reward", "miniwob_rewrd"))))
    assert result.exit_code == 2
    assert "unknown judge 'miniwob_rewrd'" in result.output and "string_match" in result.output
    result = run("run", str(pipeline(tmp_path, BASE, GOOD_TEMPLATE.replace("miniwob_reward}", "miniwob_reward, min_rewrd: 1}"))))
    assert result.exit_code == 2
    assert "no parameter 'min_rewrd'" in result.output and "min_reward" in result.output


def test_unknown_site_and_missing_templates(tmp_path):
    result = run("run", str(pipeline(tmp_path, BASE, GOOD_TEMPLATE.replace("site: miniwob", "site: minywob"))))
    assert result.exit_code == 2 and "unknown site 'minywob'" in result.output
    result = run("run", str(pipeline(tmp_path, BASE.replace("t.yaml", "nope.yaml"))))
    assert result.exit_code == 2 and "nope.yaml: template file not found" in result.output


def test_default_pipeline_is_valid():
    from synth.config import load_pipeline
    from synth.pipeline import plan

    config = load_pipeline("pipelines/web.yaml")
    tasks = plan(config, Path("pipelines").resolve())
    assert len({t.task_id for t in tasks}) == len(tasks) > 0


def test_task_ids_are_deterministic():
    from synth.tasks import tasks_from

    a = [t.task_id for t in tasks_from("templates/tasks/miniwob.yaml", seeds=3)]
    b = [t.task_id for t in tasks_from("templates/tasks/miniwob.yaml", seeds=3)]
    assert a == b and len(set(a)) == len(a)
