"""Task templates: load, check, instantiate.

A template file declares a site and its task prototypes:

    site: miniwob
    defaults: {judge: {type: miniwob_reward}, max_steps: 12}
    templates:
      - {id: click-button, params: {task: click-button}, solver: miniwob.click-button,
         seeds: {start: 0, count: 100}}

Each (template, seed) becomes a Task whose id is a hash of the template id,
its parameters, its slot values and the seed, so the same run always asks for
the same ids and a resumed run knows what is done. An `intent` (jinja2,
undefined names are an error) writes the instruction; sites such as MiniWoB++
write their own.

Prototype + instantiation. On sites with content (the bundled shop and
forum), a template declares `slots`: each a DuckDB SQL query over the site's
content tables for the content seed (`params.content_seed`, default 0). Each
seed picks one row per slot, deterministically, so every instruction names
things that exist, and the judge's expected values are templated from the
same slots:

    site: shop
    templates:
      - id: product-price
        slots:
          product: "SELECT id, name, price FROM products WHERE stock > 0"
        intent: "What is the price of the {{ product.name }}?"
        judge: {type: string_match, expected: "{{ product.price | money }}"}
        start_url: /

A slot is the picked row as a mapping, or its value when the query returns one
column. A later slot's SQL may use earlier slots (`WHERE id = {{ product.id }}`;
`{{ text | sql }}` quotes a string). A judge field that is exactly one
`{{ expression }}` keeps its type (numbers, lists, mappings); any other string
is rendered as text. Judge fields are checked against the judge's type hints
(`synth.judges`): the literal ones when the file loads, the rendered ones for
every task, so `expected: "{{ product.price }}"` for `string_match` (a float
where text is expected) is a ConfigError naming the file, template, field and
seed, not a judge that fails every episode.

Seeds 0..n-1 of the first slot pick n distinct rows (in an order hashed from
the template id, so neighbouring rows do not cluster); later slots vary with
the seed too, so combinations stay distinct.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import jinja2
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from synth.config import ConfigError, format_validation_error, load_yaml
from synth.judges import JudgeParamError, check_spec
from synth.quality.consistency import TemplateConsistency
from synth.schema import JudgeSpec, Task, stable_id


def _sql_literal(value: Any) -> str:
    """A value as a SQL literal: `{{ post.title | sql }}` -> 'It''s here'."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_sql_literal(v) for v in value) + "]"
    return "'" + str(value).replace("'", "''") + "'"


def _money(value: Any) -> str:
    return f"${float(value):,.2f}"


def _number(value: Any) -> str:
    return f"{value:,}"


_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
_JINJA.filters.update(sql=_sql_literal, money=_money, number=_number)


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
    slots: dict[str, str] = Field(
        default_factory=dict, description="slot name -> DuckDB SQL over the site's content tables (jinja2)"
    )
    start_url: str | None = Field(None, description="the page the episode starts on (a path on the site; jinja2)")
    consistency: TemplateConsistency = Field(
        default_factory=TemplateConsistency,
        description="consistency checks for this template's trajectories: `typed_text: computed` (the task asks "
        "to compute what is typed) and `ignore` (flags recorded but not rejecting); see synth.quality.consistency",
    )
    _where: str = PrivateAttr("")
    """Where the template was declared (file and index), for error messages."""


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
    from synth.sites import SITES
    from synth.solver import SOLVERS

    out = []
    for file in template_files(path):
        spec = load_yaml(file, TemplateFile)
        if spec.site not in SITES:
            raise ConfigError(f"{file}: site: {SITES.unknown(spec.site)}")
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
            # the fields written literally are checked (and converted) now,
            # those rendered from slots for every task (`instantiate_seed`)
            tpl.judge = _checked_judge(tpl.judge, where, pending=_templated)
            if tpl.solver is not None and tpl.solver not in SOLVERS:
                raise ConfigError(f"{where}: solver: {SOLVERS.unknown(tpl.solver)}")
            texts = {"intent": tpl.intent, "start_url": tpl.start_url}
            texts.update({f"slots.{k}": v for k, v in tpl.slots.items()})
            texts.update({f"judge.{k}": v for k, v in _strings(tpl.judge.params)})
            for field, text in texts.items():
                if text is None:
                    continue
                try:
                    _JINJA.from_string(text)
                except jinja2.TemplateSyntaxError as e:
                    raise ConfigError(f"{where}: {field}: jinja2 syntax error: {e.message} (line {e.lineno})") from None
            if tpl.slots and not hasattr(SITES[spec.site], "content"):
                raise ConfigError(f"{where}: slots: site {spec.site!r} has no content tables to draw slots from")
            tpl._where = where
            out.append((spec.site, tpl))
    return out


def instantiate(site: str, tpl: Template, seeds: int | None = None) -> list[Task]:
    """Tasks for each seed of the template (the first `seeds` if given)."""
    return [instantiate_seed(site, tpl, seed) for seed in seed_range(tpl, seeds)]


def seed_range(tpl: Template, seeds: int | None = None) -> range:
    """The seeds a template is instantiated with (the first `seeds` if given)."""
    return range(tpl.seeds.start, tpl.seeds.start + (seeds if seeds is not None else tpl.seeds.count))


def instantiate_seed(site: str, tpl: Template, seed: int) -> Task:
    """The template's task for one seed: slots picked, intent, start URL and
    judge rendered. A pure function of (template, seed)."""
    template_id = f"{site}/{tpl.id}"
    where = tpl._where or f"template {template_id}"
    slots = pick_slots(site, tpl, seed) if tpl.slots else {}
    context = {**tpl.params, **slots, "seed": seed}
    instruction = _render(tpl.intent, context, where, "intent") if tpl.intent is not None else None
    start_url = _render(tpl.start_url, context, where, "start_url") if tpl.start_url is not None else None
    judge = tpl.judge
    if slots or any("{" in v for _, v in _strings(judge.params)):
        params = _render_value(judge.params, context, where, "judge")
        rendered = JudgeSpec.model_validate({"type": judge.type, **params})
        judge = _checked_judge(rendered, where, sources=judge.params, seed=seed)
    # Without slots the id is what it always was (MiniWoB++ task ids stay put).
    key = (tpl.params, slots, seed) if slots else (tpl.params, seed)
    return Task(
        task_id=stable_id("task", template_id, *key),
        template_id=template_id,
        site=site,
        instruction=instruction,
        start_url=start_url,
        params={**tpl.params, "slots": slots} if slots else tpl.params,
        judge=judge,
        solver=tpl.solver,
        seed=seed,
        max_steps=tpl.max_steps,
        difficulty=tpl.difficulty,
    )


def _templated(value: Any) -> bool:
    """Whether a judge field is still a template (rendered per task)."""
    return any("{{" in text or "{%" in text for _, text in _strings(value))


def _checked_judge(
    spec: JudgeSpec,
    where: str,
    sources: dict[str, Any] | None = None,
    pending: Callable[[Any], bool] | None = None,
    seed: int | None = None,
) -> JudgeSpec:
    """The judge spec checked against its judge's signature and type hints
    (`synth.judges.check_spec`), or a ConfigError naming the place and the
    field: `x.yaml: templates[2] (product-price): judge.expected: ...`, and
    the seed whose slot values gave the wrong type."""
    at = f" (seed {seed})" if seed is not None else ""
    try:
        return check_spec(spec, sources=sources, pending=pending)
    except JudgeParamError as e:
        raise ConfigError(f"{where}: judge.{e.field}: {e.message}{at}") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: judge: {e}{at}") from None


# ---------------------------------------------------------------- slots


def _strings(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, string) for every string inside a nested value."""
    if isinstance(value, str):
        return [(prefix, value)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _strings(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _strings(v, f"{prefix}[{i}]")]
    return []


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> jinja2.Template:
    return _JINJA.from_string(text)


@functools.lru_cache(maxsize=4096)
def _compiled_expression(text: str) -> Any:
    return _JINJA.compile_expression(text, undefined_to_none=False)


def _render(text: str, context: dict[str, Any], where: str, field: str) -> str:
    try:
        return _compiled(text).render(**context)
    except jinja2.UndefinedError as e:
        raise ConfigError(f"{where}: {field}: {e.message}") from None
    except jinja2.TemplateError as e:
        raise ConfigError(f"{where}: {field}: {e}") from None


def _render_value(value: Any, context: dict[str, Any], where: str, field: str) -> Any:
    """Render every string of a judge spec; `"{{ expr }}"` alone keeps its type."""
    if isinstance(value, dict):
        return {k: _render_value(v, context, where, f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, context, where, f"{field}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "{" not in value:
        return value
    stripped = value.strip()
    if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
        try:
            result = _compiled_expression(stripped[2:-2])(**context)
        except jinja2.UndefinedError as e:
            raise ConfigError(f"{where}: {field}: {e.message}") from None
        except jinja2.TemplateError as e:
            raise ConfigError(f"{where}: {field}: {e}") from None
        if isinstance(result, jinja2.Undefined):
            raise ConfigError(f"{where}: {field}: {stripped} is undefined")
        return _plain(result)
    return _render(value, context, where, field)


def _plain(value: Any) -> Any:
    """DuckDB/Python values as JSON-safe ones (lists, dicts, str, int, float)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


_DB_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _content_db(site: str, content_seed: int) -> Any:
    """An in-memory DuckDB with the site's content tables for one seed."""
    import duckdb
    import pyarrow as pa

    from synth.sites import SITES

    tables = SITES[site].content(content_seed)
    con = duckdb.connect(":memory:")
    for name, rows in tables.items():
        if not rows:
            continue
        arrow = pa.Table.from_pylist(rows)
        con.register(f"_{name}_arrow", arrow)
        con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM "_{name}_arrow"')
        con.unregister(f"_{name}_arrow")
    return con


def content_tables(site: str, content_seed: int = 0) -> list[str]:
    """The names of the tables slot queries may select from."""
    with _DB_LOCK:
        con = _content_db(site, content_seed)
        return [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]


@functools.lru_cache(maxsize=4096)
def _query(site: str, content_seed: int, sql: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(column names, rows as canonical JSON) of a slot query, in a stable order."""
    with _DB_LOCK:
        cur = _content_db(site, content_seed).cursor()
        try:
            cur.execute(sql)
            cols = tuple(d[0] for d in cur.description)
            rows = cur.fetchall()
        finally:
            cur.close()
    encoded = sorted({json.dumps(_plain(list(r)), sort_keys=True, separators=(",", ":")) for r in rows})
    return cols, tuple(encoded)


def pick_slots(site: str, tpl: Template, seed: int) -> dict[str, Any]:
    """The slot values of one instance: each slot's query, then one row of it.

    The first slot takes row `seed % n` of its rows in an order hashed from the
    template id, so seeds 0..n-1 pick n different rows; each later slot takes
    a row hashed from the earlier picks, moved on by one each time the slots
    before it have all gone round, so combinations stay distinct."""
    import duckdb

    template_id = f"{site}/{tpl.id}"
    where = tpl._where or f"template {template_id}"
    content_seed = int(tpl.params.get("content_seed", 0))
    picked: dict[str, Any] = {}
    stride = 1
    for name, sql_template in tpl.slots.items():
        sql = _render(sql_template, {**tpl.params, **picked, "seed": seed}, where, f"slots.{name}")
        try:
            cols, rows = _query(site, content_seed, sql)
        except duckdb.Error as e:
            first = str(e).strip().splitlines()[0]
            tables = ", ".join(content_tables(site, content_seed))
            raise ConfigError(f"{where}: slots.{name}: query failed: {first} (tables: {tables})") from None
        if not rows:
            shown = f" (with {json.dumps(picked, default=str)[:200]})" if picked else ""
            raise ConfigError(f"{where}: slots.{name}: the query returned no rows{shown}: {sql.strip()[:300]}")
        order = sorted(rows, key=lambda r: stable_id(template_id, name, r))
        offset = 0 if not picked else int(stable_id(template_id, name, picked), 16)
        row = json.loads(order[(offset + seed // stride) % len(order)])
        stride *= len(order)
        picked[name] = row[0] if len(cols) == 1 else dict(zip(cols, row, strict=True))
    return picked


def select_templates(path: Path | str, include: list[str] | None = None) -> list[tuple[str, Template]]:
    """(site, template) for the templates at `path` (optionally only `include` ids)."""
    pairs = load_templates(path)
    if include is not None:
        known = {t.id for _, t in pairs} | {f"{s}/{t.id}" for s, t in pairs}
        unknown = [i for i in include if i not in known]
        if unknown:
            raise ConfigError(f"include: unknown template ids {unknown}; known: {sorted(t.id for _, t in pairs)}")
        pairs = [(s, t) for s, t in pairs if t.id in include or f"{s}/{t.id}" in include]
    return pairs


def tasks_from(path: Path | str, include: list[str] | None = None, seeds: int | None = None) -> list[Task]:
    """Every task of the templates at `path` (optionally only `include` ids)."""
    return [task for site, tpl in select_templates(path, include) for task in instantiate(site, tpl, seeds)]


class TaskSet:
    """The tasks a pipeline asks for, instantiated on demand rather than held,
    so a run of 100k tasks keeps only the batches in flight in memory.

    A set is a list of (site, template, seeds) selections. Iterating yields the
    tasks in a stable order (selection by selection, seed by seed); `len` and
    `contains` need no instantiation; `find` re-creates one task from what a
    staged trajectory records (template id, seed, task id)."""

    def __init__(self, selections: Sequence[tuple[str, Template, range]], limit: int | None = None) -> None:
        self.selections: list[tuple[str, Template, range]] = []
        left = limit
        for site, tpl, seeds in selections:
            if left is not None:
                seeds, left = seeds[:left], left - len(seeds[:left])
            if len(seeds):
                self.selections.append((site, tpl, seeds))
        self._by_id: dict[str, tuple[str, Template, range]] = {}
        for site, tpl, seeds in self.selections:
            template_id = f"{site}/{tpl.id}"
            if template_id in self._by_id:
                raise ConfigError(f"tasks: template {template_id} is selected twice")
            self._by_id[template_id] = (site, tpl, seeds)

    def __len__(self) -> int:
        return sum(len(seeds) for _, _, seeds in self.selections)

    def __iter__(self) -> Iterator[Task]:
        return (instantiate_seed(site, tpl, seed) for site, tpl, seeds in self.selections for seed in seeds)

    def contains(self, template_id: str, seed: int) -> bool:
        """Whether the set has this template's task for `seed` (no instantiation;
        a template edited since a task was recorded gives it another id)."""
        where = self._by_id.get(template_id)
        return where is not None and seed in where[2]

    def find(self, template_id: str, seed: int, task_id: str) -> Task | None:
        """The task with this id, if this set has it (None when its template or
        seed is not selected, or the template changed since it was recorded)."""
        if not self.contains(template_id, seed):
            return None
        site, tpl, _ = self._by_id[template_id]
        task = instantiate_seed(site, tpl, seed)
        return task if task.task_id == task_id else None

    def max_steps(self, template_id: str) -> int | None:
        where = self._by_id.get(template_id)
        return where[1].max_steps if where else None

    def consistency(self, template_id: str) -> TemplateConsistency | None:
        """The template's `consistency:` declaration (None if not selected)."""
        where = self._by_id.get(template_id)
        return where[1].consistency if where else None

    @functools.cached_property
    def first_tasks(self) -> list[Task]:
        """Each selection's first task. Building them is the check that every
        template renders before anything runs (a later seed fails when it
        comes up); `where` decides on them."""
        return [instantiate_seed(site, tpl, seeds[0]) for site, tpl, seeds in self.selections]

    def check(self) -> None:
        """Raise ConfigError now if a template cannot render its first task."""
        self.first_tasks

    def first_seeds(self, n: int) -> "TaskSet":
        """The same templates with only their first `n` seeds each."""
        return TaskSet([(site, tpl, seeds[:n]) for site, tpl, seeds in self.selections])

    def where(self, keep: Callable[[Task], bool]) -> "TaskSet":
        """The selections whose first task `keep` accepts, with all their seeds:
        sources choose tasks per template."""
        return TaskSet([sel for sel, first in zip(self.selections, self.first_tasks, strict=True) if keep(first)])


class TaskList:
    """Tasks a source plans itself (an exploration's walks), with TaskSet's
    interface: a short fixed list, no templates behind it."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.tasks = list(tasks)
        self._keys = {(t.template_id, t.seed) for t in self.tasks}

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def contains(self, template_id: str, seed: int) -> bool:
        return (template_id, seed) in self._keys


class RunTasks:
    """The tasks of a run: the planned ones (templates, found again by
    template and seed) and those its sources proposed while running (an
    exploration's hindsight tasks), known by the task config recorded with
    their trajectory. The quality stage asks this what it asks a TaskSet."""

    def __init__(self, planned: TaskSet, proposed: Iterable[Task] = ()) -> None:
        self.planned = planned
        self.proposed: dict[str, Task] = {t.task_id: t for t in proposed}
        self._proposed_keys = {(t.template_id, t.seed) for t in self.proposed.values()}

    def contains(self, template_id: str, seed: int) -> bool:
        return self.planned.contains(template_id, seed) or (template_id, seed) in self._proposed_keys

    def find(self, template_id: str, seed: int, task_id: str) -> Task | None:
        return self.proposed.get(task_id) or self.planned.find(template_id, seed, task_id)

    def max_steps(self, template_id: str) -> int | None:
        return self.planned.max_steps(template_id)

    def consistency(self, template_id: str) -> TemplateConsistency | None:
        return self.planned.consistency(template_id)
