"""The mybooks site: its configuration lives in site.yaml (how to start the
app, reset its data, read its state); this module only registers it."""

from pathlib import Path

from synth.sites import register_site
from synth.sites.app import configured_site

MyBooks = register_site(configured_site(Path(__file__).with_name("site.yaml")))
