"""Programmatic solvers: Playwright RPA scripts that act only through BrowserEnv.

A solver is an async function `solve(env, obs)` that drives the episode with
`env.click(...)`, `env.type(...)`, ... until the task is done; every action it
takes is recorded. Register it by the name templates use:

    @register_solver("miniwob.click-button")
    async def click_button(env: BrowserEnv, obs: Observation) -> None: ...

One module per site; `load_all()` imports them so their registrations run.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Awaitable, Callable

if TYPE_CHECKING:
    from synth.env import BrowserEnv
    from synth.schema import Observation

Solver = Callable[["BrowserEnv", "Observation"], Awaitable[None]]
SOLVERS: dict[str, Solver] = {}


def register_solver(name: str) -> Callable[[Solver], Solver]:
    def wrap(fn: Solver) -> Solver:
        if name in SOLVERS and SOLVERS[name] is not fn:
            raise ValueError(f"solver {name!r} is registered twice")
        SOLVERS[name] = fn
        return fn

    return wrap


def load_all() -> None:
    """Import every solver module in this package."""
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def get_solver(name: str) -> Solver:
    load_all()
    if name not in SOLVERS:
        raise KeyError(f"unknown solver {name!r}; known solvers: {', '.join(sorted(SOLVERS))}")
    return SOLVERS[name]
