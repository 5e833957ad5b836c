"""The solver contract: programmatic Playwright scripts that act only
through BrowserEnv.

A solver is an async function `solve(env, obs)` that drives the episode with
`env.click(...)`, `env.type(...)`, ... until the task is done; every action it
takes is recorded. It registers by the name templates use:

    from synth.solver import register_solver

    @register_solver("mybooks.add-to-cart")
    async def add_to_cart(env: BrowserEnv, obs: Observation) -> None: ...

A package makes its solver modules known through a `synth.solvers` entry point
(see `synth.plugins`); the bundled ones (`solvers/`) are declared the same way
in synth's own `pyproject.toml`. `synth.toolkit` has the helpers most solvers
need (reading the instruction, finding elements, filling forms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable

from synth.plugins import Registry

if TYPE_CHECKING:
    from synth.env import BrowserEnv
    from synth.schema import Observation

Solver = Callable[["BrowserEnv", "Observation"], Awaitable[None]]
SOLVERS: Registry[Solver] = Registry("solver", "synth.solvers")


def register_solver(name: str) -> Callable[[Solver], Solver]:
    """Register the decorated function as solver `name`."""
    return SOLVERS.decorator(name)


def get_solver(name: str) -> Solver:
    """The solver registered as `name`; an unknown name raises `UnknownName`
    saying where solvers come from."""
    return SOLVERS[name]
