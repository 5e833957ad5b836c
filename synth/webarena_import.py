"""`synth tasks import webarena CONFIG.json`: WebArena task configs as synth templates.

    synth tasks import webarena config_files/test.raw.json \\
        --site-map SHOPPING=http://localhost:7770 --site-map REDDIT=forum --out templates/webarena/

A config file holds one WebArena task config or a list of them (the format of
WebArena's `config_files/test.raw.json`). Each `--site-map` names where a
placeholder (`__SHOPPING__`, or just `SHOPPING`) points:

* a URL (a WebArena deployment): the placeholder is replaced by it in the
  whole config now, and a task starting there runs on the `webarena` site
  (the browser opens the absolute start URL, logged in with the config's
  `storage_state` file);
* a synth site name (`shop`, `forum`, `trac` ...): the task runs on that site;
  the start URL becomes a path on it, and the placeholder stays in the judge
  config (`on_site`) to be replaced at episode end by the base URL of the
  instance the episode ran on (its port is only known then).

One template per `intent_template_id`, id `webarena-<id>`, on the site of its
instances, one seed per instance in file order: the instances are the
template's `params.webarena` list and `{{ webarena[seed] }}` picks one. The
judge is `webarena` (synth.webarena) with the instance's config. A WebArena
task starting on several tabs (` |AND| ` in `start_url`) starts on the first.
`require_login: false` on a synth site logs in as nobody (`params.role: null`).

Every config is checked first (synth.webarena.check_config) and any problem is
an error naming the task id and the field; `--skip-unsupported` leaves those
tasks out instead and lists them. Written files are loaded and instantiated
before they replace anything, so what is written loads.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer
import yaml

from synth.config import ConfigError

import_app = typer.Typer(no_args_is_help=True, help="Turn other benchmarks' task configs into synth templates.")

EXTERNAL_SITE = "webarena"
"""The site a task runs on when its start URL maps to a URL (synth.webarena.WebArenaSite)."""

REQUIRED = ("task_id", "intent_template_id", "intent", "start_url", "eval")


def _error(tid: Any, where: str, message: str) -> Exception:
    from synth.webarena import WebArenaConfigError

    return WebArenaConfigError(tid, where, message)


# ---------------------------------------------------------------- inputs


def load_configs(path: Path) -> list[dict[str, Any]]:
    """The task configs of a file: one config or a list of them."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not JSON: {e}") from None
    configs = [data] if isinstance(data, dict) else data
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise ConfigError(f"{path}: expected a WebArena task config (a mapping) or a list of them")
    return configs


def parse_site_map(items: list[str]) -> dict[str, str]:
    """`SHOPPING=http://host:7770`, `__REDDIT__=forum` -> {placeholder: target}.
    A target is a URL or a registered synth site."""
    from synth.sites import SITES
    from synth.webarena import PLACEHOLDER

    out: dict[str, str] = {}
    for item in items:
        key, sep, target = item.partition("=")
        name = key.strip() if key.strip().startswith("__") else f"__{key.strip().upper()}__"
        if not sep or not target.strip() or not PLACEHOLDER.fullmatch(name):
            raise ConfigError(f"--site-map {item!r}: expected NAME=URL or NAME=SYNTH_SITE, e.g. SHOPPING=shop")
        target = target.strip()
        if not _is_url(target) and target not in SITES:
            raise ConfigError(f"--site-map {item!r}: {target!r} is neither a URL nor a synth site: {SITES.unknown(target)}")
        out[name] = target
    return out


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


# ---------------------------------------------------------------- one task


@dataclass
class Instance:
    """One WebArena task, ready to be a seed of a synth template."""

    task_id: Any
    template_key: str
    site: str
    on_site: list[str]
    data: dict[str, Any]


def convert(config: dict[str, Any], site_map: dict[str, str]) -> Instance:
    """One WebArena task config as an instance on a synth site (or the
    `webarena` site), checked; WebArenaConfigError names the task and field."""
    from synth.webarena import PLACEHOLDER, check_config, substitute

    tid = config.get("task_id", "?")
    for key in REQUIRED:
        if key not in config:
            raise _error(tid, key, "missing")
    check_config(config, placeholders=site_map)
    urls = {name: target for name, target in site_map.items() if _is_url(target)}
    config = substitute(config, urls)
    start = str(config["start_url"]).split(" |AND| ")[0].strip()
    site, start = _start(tid, start, site_map)
    used = sorted(set(PLACEHOLDER.findall(json.dumps(config))))
    for name in used:
        if site_map[name] != site:
            raise _error(tid, "sites", f"{name} is synth site {site_map[name]!r} but the task starts on {site!r}: "
                         "an episode runs on one synth site (map the others to URLs)")
    data = {k: config[k] for k in ("task_id", "intent", "instantiation_dict", "sites", "require_login",
                                     "storage_state") if k in config}
    data.update(start_url=start, eval=config["eval"])
    return Instance(tid, str(config["intent_template_id"]), site, used, data)


def _start(tid: Any, start: str, site_map: dict[str, str]) -> tuple[str, str]:
    """(site, start URL on it) for a task's (substituted) start URL."""
    from synth.webarena import PLACEHOLDER

    m = PLACEHOLDER.match(start)
    if m:
        rest = start[m.end():]
        return site_map[m.group(0)], rest if rest.startswith("/") else "/" + rest
    if _is_url(start):
        return EXTERNAL_SITE, start
    raise _error(tid, "start_url", f"{start[:80]!r} is neither a site placeholder nor a URL")


# ---------------------------------------------------------------- templates


@dataclass
class Group:
    """The instances of one intent_template_id."""

    key: str
    site: str
    intent_template: str
    instances: list[Instance] = field(default_factory=list)


def template(group: Group, llm: dict[str, str] | None = None) -> dict[str, Any]:
    """A synth template (the mapping synth.tasks loads) for one group."""
    params: dict[str, Any] = {"intent_template": group.intent_template}
    logins = {bool(i.data.get("require_login", True)) for i in group.instances}
    if group.site == EXTERNAL_SITE:
        states = {i.data.get("storage_state") for i in group.instances}
        if len(states) > 1 or len(logins) > 1:
            first = group.instances[0].task_id
            raise _error(first, "storage_state", f"intent_template_id {group.key}: its tasks log in differently")
        params.update(storage_state=states.pop(), require_login=logins.pop())
    elif logins == {False}:
        params["role"] = None  # an app site logs in as its default role unless told not to
    params["webarena"] = [i.data for i in group.instances]
    judge: dict[str, Any] = {"type": "webarena", "config": "{{ webarena[seed] }}"}
    on_site = sorted({name for i in group.instances for name in i.on_site})
    if on_site:
        judge["on_site"] = on_site
    if llm:
        judge["llm"] = llm
    return {
        "id": f"webarena-{group.key}",
        "intent": "{{ webarena[seed].intent }}",
        "start_url": "{{ webarena[seed].start_url }}",
        "seeds": {"start": 0, "count": len(group.instances)},
        "params": params,
        "judge": judge,
    }


def group_instances(instances: list[Instance], intents: dict[Any, str]) -> list[Group]:
    """Instances grouped by intent_template_id, in order of first appearance."""
    groups: dict[str, Group] = {}
    for inst in instances:
        g = groups.setdefault(inst.template_key, Group(inst.template_key, inst.site, intents.get(inst.task_id, "")))
        if inst.site != g.site:
            raise _error(inst.task_id, "start_url", f"starts on {inst.site!r}, but task "
                         f"{g.instances[0].task_id} of the same intent_template_id {g.key} on {g.site!r}")
        g.instances.append(inst)
    return list(groups.values())


@dataclass
class Imported:
    """What an import made: template files by site, and the tasks left out."""

    files: dict[str, dict[str, Any]]
    skipped: list[str]
    tasks: int


def import_configs(
    configs: list[dict[str, Any]],
    site_map: dict[str, str],
    source: str = "",
    skip_unsupported: bool = False,
    llm: dict[str, str] | None = None,
) -> Imported:
    """Template files (site -> the file's mapping) for WebArena task configs.
    Raises ConfigError listing every bad task unless `skip_unsupported`."""
    from synth.webarena import WebArenaConfigError

    instances, problems = [], []
    for config in configs:
        try:
            instances.append(convert(config, site_map))
        except WebArenaConfigError as e:
            problems.append(str(e))
    if problems and not skip_unsupported:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ConfigError(f"{source or 'configs'}: {len(problems)} task(s) cannot be imported:\n  {shown}")
    intents = {c.get("task_id"): c.get("intent_template", "") for c in configs}
    files: dict[str, dict[str, Any]] = {}
    for g in group_instances(instances, intents):
        f = files.setdefault(g.site, {"site": g.site, "defaults": {"max_steps": 30}, "templates": []})
        f["templates"].append(template(g, llm))
    return Imported(files, problems, len(instances))


def dump(doc: dict[str, Any], source: str) -> str:
    head = (f"# WebArena-format tasks imported from {source} by `synth tasks import webarena`\n"
            "# (synth/webarena_import.py); judged with WebArena's evaluators (synth/webarena.py).\n")
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


def write_checked(text: str, path: Path) -> int:
    """Write a template file only once it loads and every seed instantiates;
    returns the number of tasks."""
    from synth.tasks import instantiate, load_templates

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    try:
        tasks = sum(len(instantiate(site, tpl)) for site, tpl in load_templates(tmp))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return tasks


# ---------------------------------------------------------------- the command


@import_app.command("webarena")
def import_webarena(
    config: Path = typer.Argument(..., help="a WebArena task config JSON file (one config or a list)"),
    site_map: Optional[list[str]] = typer.Option(
        None, "--site-map", "-m", help="PLACEHOLDER=URL or PLACEHOLDER=SYNTH_SITE, e.g. SHOPPING=shop (repeatable)"
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="a .yaml file (tasks on one site) or a folder (one webarena-<site>.yaml per site); "
        "default: print the YAML"
    ),
    skip_unsupported: bool = typer.Option(False, "--skip-unsupported", help="leave out tasks that cannot be imported"),
    llm_base_url: Optional[str] = typer.Option(None, "--llm-base-url", help="endpoint for fuzzy_match / ua_match"),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="model for fuzzy_match / ua_match"),
) -> None:
    """WebArena-format task configs as synth templates, one per intent_template_id."""
    import synth.webarena  # noqa: F401 - registers the judge and the webarena site

    llm = {k: v for k, v in (("base_url", llm_base_url), ("model", llm_model)) if v}
    try:
        done = import_configs(load_configs(config), parse_site_map(site_map or []), str(config), skip_unsupported, llm)
        for line in done.skipped:
            print(f"skipped {line}", file=sys.stderr)
        if not done.files:
            raise ConfigError(f"{config}: no task could be imported")
        if out is None:
            for doc in done.files.values():
                sys.stdout.write(dump(doc, config.name))
            return
        paths = _out_paths(out, list(done.files))
        for site, path in paths.items():
            n = write_checked(dump(done.files[site], config.name), path)
            print(f"{path}: {len(done.files[site]['templates'])} templates, {n} tasks on {site}", file=sys.stderr)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None


def _out_paths(out: Path, sites: list[str]) -> dict[str, Path]:
    if out.suffix in (".yaml", ".yml"):
        if len(sites) > 1:
            raise ConfigError(f"--out {out}: the tasks run on {len(sites)} sites ({', '.join(sites)}); "
                              "give a folder to write one file per site")
        return {sites[0]: out}
    return {site: out / f"webarena-{site}.yaml" for site in sites}
