"""The bundled programmatic solvers, one module per site (MiniWoB++, the
shop, the forum). They register through `synth.solver.register_solver`, and
synth's `pyproject.toml` declares each module as a `synth.solvers` entry point,
as a user's own package declares theirs (see `synth.solver`, `synth.plugins`).
"""
