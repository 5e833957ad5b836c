"""synth: a trajectory synthesis data factory for web agents."""

__version__ = "0.1.0"
