"""Task templates: load, check, instantiate.

A template file declares a site and its task prototypes:

    site: miniwob
    defaults: {judge: {type: miniwob_reward}, max_steps: 12}
    templates:
      - {id: click-button, params: {task: click-button}, solver: miniwob.click-button,
         seeds: {start: 0, count: 100}}

Each (template, seed) becomes a Task whose id is a hash of the template id,
its parameters and the seed, so the same run always asks for the same ids and
a resumed run knows what is done. An `intent` (jinja2, undefined names are an
error) writes the instruction; sites such as MiniWoB++ write their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synth.config import ConfigError, format_validation_error, load_yaml
from synth.judges import check_spec
from synth.schema import JudgeSpec, Task, stable_id

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


class SeedRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: int = Field(0, ge=0)
    count: int = Field(100, gt=0)


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    params: dict[str, Any] = Field(default_factory=dict)
    intent: str | None = None
    seeds: SeedRange = Field(default_factory=SeedRange)
    judge: JudgeSpec
    solver: str | None = None
    max_steps: int = Field(30, gt=0)
    difficulty: str | None = None


class TemplateFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str
    defaults: dict[str, Any] = Field(default_factory=dict)
    templates: list[dict[str, Any]] = Field(min_length=1)


def template_files(path: Path | str) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.yaml") if p.is_file())
        if not files:
            raise ConfigError(f"{path}: no *.yaml template files in this folder")
        return files
    if not path.exists():
        raise ConfigError(f"{path}: template file not found")
    return [path]


def load_templates(path: Path | str) -> list[tuple[str, Template]]:
    """(site, template) pairs from a file or folder, every name checked."""
    from solvers import SOLVERS, load_all
    from synth.sites import SITES

    load_all()
    out = []
    for file in template_files(path):
        spec = load_yaml(file, TemplateFile)
        if spec.site not in SITES:
            raise ConfigError(f"{file}: site: unknown site {spec.site!r}; known sites: {', '.join(sorted(SITES))}")
        seen: set[str] = set()
        for i, raw in enumerate(spec.templates):
            merged = {**spec.defaults, **raw}
            where = f"{file}: templates[{i}]" + (f" ({raw.get('id')})" if raw.get("id") else "")
            try:
                tpl = Template.model_validate(merged)
            except ValidationError as e:
                raise ConfigError(
                    format_validation_error(f"{file}", e, None).replace(f"{file}: ", f"{where}: ")
                ) from None
            if tpl.id in seen:
                raise ConfigError(f"{where}: id: duplicate template id {tpl.id!r}")
            seen.add(tpl.id)
            try:
                check_spec(tpl.judge)
            except ValueError as e:
                raise ConfigError(f"{where}: judge: {e}") from None
            if tpl.solver is not None and tpl.solver not in SOLVERS:
                raise ConfigError(
                    f"{where}: solver: unknown solver {tpl.solver!r}; known solvers: {', '.join(sorted(SOLVERS))}"
                )
            if tpl.intent is not None:
                try:
                    _JINJA.from_string(tpl.intent)
                except jinja2.TemplateSyntaxError as e:
                    raise ConfigError(f"{where}: intent: jinja2 syntax error: {e.message} (line {e.lineno})") from None
            out.append((spec.site, tpl))
    return out


def instantiate(site: str, tpl: Template, seeds: int | None = None) -> list[Task]:
    """Tasks for each seed of the template (the first `seeds` if given)."""
    template_id = f"{site}/{tpl.id}"
    count = seeds if seeds is not None else tpl.seeds.count
    tasks = []
    for seed in range(tpl.seeds.start, tpl.seeds.start + count):
        instruction = None
        if tpl.intent is not None:
            try:
                instruction = _JINJA.from_string(tpl.intent).render(seed=seed, **tpl.params)
            except jinja2.UndefinedError as e:
                raise ConfigError(f"template {template_id}: intent: {e.message}") from None
        tasks.append(
            Task(
                task_id=stable_id("task", template_id, tpl.params, seed),
                template_id=template_id,
                site=site,
                instruction=instruction,
                params=tpl.params,
                judge=tpl.judge,
                solver=tpl.solver,
                seed=seed,
                max_steps=tpl.max_steps,
                difficulty=tpl.difficulty,
            )
        )
    return tasks


def tasks_from(path: Path | str, include: list[str] | None = None, seeds: int | None = None) -> list[Task]:
    """Every task of the templates at `path` (optionally only `include` ids)."""
    pairs = load_templates(path)
    if include is not None:
        known = {t.id for _, t in pairs} | {f"{s}/{t.id}" for s, t in pairs}
        unknown = [i for i in include if i not in known]
        if unknown:
            raise ConfigError(f"include: unknown template ids {unknown}; known: {sorted(t.id for _, t in pairs)}")
        pairs = [(s, t) for s, t in pairs if t.id in include or f"{s}/{t.id}" in include]
    return [task for site, tpl in pairs for task in instantiate(site, tpl, seeds)]
