"""Plugins: where the names a pipeline uses come from.

Everything a template or a pipeline names (a site, a solver, a judge, a
source, an SFT format) is looked up in a `Registry`. A registry is filled

- by `@register` decorators in modules that get imported, and
- from installed packages, through Python entry points: a package declares in
  its `pyproject.toml`

      [project.entry-points."synth.sites"]
      mybooks = "my_pkg.sites"              # a module: importing it registers
      [project.entry-points."synth.solvers"]
      mybooks = "my_pkg.solvers"

  and the first lookup in a registry loads every entry point of its group.
  An entry point may also name an object (`"my_pkg.sites:MyBooks"`); it is
  then registered under the entry point's name unless it registered itself.
- from modules a pipeline lists under `plugins:`, imported with the
  pipeline's folder and the working directory on `sys.path` (`load_modules`),
  from the `--plugin` option of the `synth tasks` and `synth replay` commands,
  and from `$SYNTH_PLUGINS` (comma-separated modules).

synth registers its own sites, solvers, judges, sources and formats the same
way (its `pyproject.toml`), so the core imports none of them by name. Ray
workers call `load_modules` with the driver's plugin list before they look a
name up (`workers.SourceActor`), so a name that resolves in `synth tasks
sample` resolves in a worker.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import types
from dataclasses import dataclass
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

T = TypeVar("T")
ENV = "SYNTH_PLUGINS"
"""Comma-separated plugin modules every process imports (Ray workers on the
same machine inherit it)."""

HOW_TO_ADD = (
    "Names come from installed packages that declare a `{group}` entry point "
    "(loaded: {packages}) and from modules a pipeline lists under `plugins:`; "
    "see \"Add your own site\" in the README."
)


class PluginError(RuntimeError):
    """A plugin module or entry point could not be loaded."""


class UnknownName(KeyError):
    """A name no registry entry has. Its message says where names come from."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(MutableMapping[str, T], Generic[T]):
    """Named objects of one kind (sites, solvers, ...), in registration order.

    Reading it (`in`, `[]`, iteration) first loads the entry points of its
    group, once per process."""

    def __init__(self, kind: str, group: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.group = group
        self._items: dict[str, T] = {}
        self._loaded = False
        self._loading = threading.RLock()
        self._packages: list[str] = []

    # ------------------------------------------------------------ registering

    def register(self, name: str, obj: T) -> T:
        """Register `obj` as `name`. The same object (or the same definition
        imported again) may register twice; a different one may not."""
        old = self._items.get(name)
        if old is not None and old is not obj and _origin(old) != _origin(obj):
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by {_origin(old)} and by {_origin(obj)}"
            )
        self._items[name] = obj
        return obj

    def decorator(self, name: str) -> Callable[[T], T]:
        """`@SOLVERS.decorator("shop.add-to-cart")` registers what it wraps."""
        return lambda obj: self.register(name, obj)

    def __setitem__(self, name: str, obj: T) -> None:
        self.register(name, obj)

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    # ------------------------------------------------------------ loading

    def load(self) -> None:
        """Load every entry point of this registry's group (once)."""
        if self._loaded:
            return
        with self._loading:
            if self._loaded:
                return
            self._loaded = True  # set first: an entry point module may read the registry
            load_modules([m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()], (os.getcwd(),))
            for ep in sorted(entry_points(group=self.group), key=lambda e: (e.value, e.name)):
                self._load_entry_point(ep)

    def _load_entry_point(self, ep: EntryPoint) -> None:
        package = ep.dist.name if ep.dist is not None else "?"
        if package not in self._packages:
            self._packages.append(package)
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - any import failure is the plugin's, say whose
            raise PluginError(
                f"{self.group} entry point {ep.name!r} = {ep.value!r} of package {package!r} failed to load: "
                f"{type(e).__name__}: {e}"
            ) from e
        if not isinstance(obj, types.ModuleType) and ep.name not in self._items:
            self.register(ep.name, obj)

    # ------------------------------------------------------------ reading

    def get(self, name: str, default: T | None = None) -> T | None:  # type: ignore[override]
        self.load()
        return self._items.get(name, default)

    def __getitem__(self, name: str) -> T:
        self.load()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownName(self.unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(list(self._items))

    def __len__(self) -> int:
        self.load()
        return len(self._items)

    def unknown(self, name: str) -> str:
        """The message for a name this registry does not have."""
        self.load()
        known = ", ".join(sorted(self._items)) or "none"
        how = HOW_TO_ADD.format(group=self.group, packages=", ".join(self._packages) or "none")
        return f"unknown {self.kind} {name!r}; known {self.plural}: {known}. {how}"


def _origin(obj: object) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "name", None) or type(obj).__qualname__
    return f"{module}.{qualname}"


# ---------------------------------------------------------------- pipeline plugins

_imported: list[str] = []
_paths: list[str] = []


def load_modules(modules: Sequence[str], paths: Sequence[str] = ()) -> None:
    """Import each plugin module (its decorators register what it defines),
    with `paths` (a pipeline's folder, the working directory) on `sys.path`
    first, as `python -m` puts the working directory there."""
    for path in paths:
        if path and path not in _paths:
            _paths.append(path)
        if path and path not in sys.path:
            sys.path.insert(0, path)
    for module in modules:
        if module in _imported:
            continue
        if module.endswith((".yaml", ".yml")):
            _register_site_file(module, paths)
            _imported.append(module)
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            where = ", ".join(p for p in paths if p) or "sys.path"
            raise PluginError(
                f"plugins: cannot import {module!r} ({e}); a plugin module must be importable: installed "
                f"(pip install -e your package) or a module under {where}"
            ) from e
        _imported.append(module)




def _register_site_file(name: str, paths: Sequence[str]) -> None:
    """A site configuration file (`synth.sites.app`), relative to the first
    of `paths` where it exists."""
    from pathlib import Path

    from synth.sites.app import configured_site
    from synth.sites.base import register_site

    candidates = [Path(name)] if Path(name).is_absolute() else [Path(p) / name for p in paths if p]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise PluginError(f"plugins: site file {name!r} not found (looked in {', '.join(map(str, candidates))})")
    register_site(configured_site(found))


@dataclass(frozen=True)
class Plugins:
    """A pipeline's `plugins:`, as the driver resolved them: what every Ray
    worker imports before it looks a name up. `paths` are the pipeline's
    folder and the driver's working directory (on a cluster a worker also
    adds its own working directory, where `ray job submit --working-dir`
    unpacks the same files)."""

    modules: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def load(self) -> None:
        load_modules(self.modules, (*self.paths, os.getcwd()))

    @classmethod
    def current(cls) -> "Plugins":
        """What this process imported through `load_modules`, for its workers."""
        return cls(tuple(_imported), tuple(_paths))
