"""Real third-party web applications brought in as synth sites (one folder each)."""
