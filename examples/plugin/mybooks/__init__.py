"""mybooks: an example synth plugin (see examples/plugin/README.md)."""
