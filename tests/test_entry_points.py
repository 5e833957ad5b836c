"""Every kind of name resolves from an installed package's entry points: a
distribution on sys.path (a .dist-info folder with entry_points.txt, as pip
writes it) adds a source kind and an SFT format, checked in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''
from synth.export.formats import FORMATS, SFTFormat, register
from synth.config import SourceConfig
from synth.sources import SolverSource, register_source


class EchoConfig(SourceConfig):
    greeting: str = "hi"


@register_source
class EchoSource(SolverSource):
    kind = "echo"
    config_model = EchoConfig


register(SFTFormat(**{**FORMATS["messages"].__dict__, "name": "echo-messages"}))
'''


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    (tmp_path / "echo_plugin.py").write_text(PLUGIN)
    info = tmp_path / "echo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[synth.sources]\necho = echo_plugin\n\n[synth.formats]\necho = echo_plugin\n")
    return tmp_path


def run(code: str, site_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site_dir)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_a_packages_source_and_format_are_found(site_dir, tmp_path):
    done = run("""
        from synth.sources import SOURCES
        from synth.export.formats import FORMATS, check_names
        print(sorted(SOURCES), check_names(["echo-messages"]), FORMATS["echo-messages"].config)
    """, site_dir, tmp_path)
    assert done.returncode == 0, done.stderr
    sources, rest = done.stdout.split("] ", 1)
    assert {"'bootstrap'", "'echo'", "'solver'", "'recovery'"} <= set(sources.strip("[").split(", ")), done.stdout
    assert rest.strip() == "['echo-messages'] sft-echo-messages", done.stdout


def test_a_plugin_sources_section_is_checked_against_its_model(site_dir, tmp_path):
    pipeline = Path(__file__).resolve().parents[1] / "pipelines" / "web.yaml"
    bad = tmp_path / "p.yaml"
    text = pipeline.read_text().replace("../templates", str(pipeline.parent.parent / "templates"))
    bad.write_text(text.replace("sources:\n", "sources:\n  echo: {greeting: [1], actors: 0}\n", 1))
    unknown = tmp_path / "q.yaml"
    unknown.write_text(text.replace("sources:\n", "sources:\n  nosuch: {}\n", 1))
    done = run(f"""
        from synth.pipeline import prepare
        for path in [{str(bad)!r}, {str(unknown)!r}]:
            try:
                prepare(path)
            except Exception as e:
                print(type(e).__name__, e)
    """, site_dir, tmp_path)
    out = " ".join(done.stdout.split())
    assert out.count("ConfigError") == 2, done.stdout + done.stderr
    assert "sources.echo.actors" in out and "sources.echo.greeting" in out
    assert "sources.nosuch: unknown source 'nosuch'" in out and "synth.sources" in out
