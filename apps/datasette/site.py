"""The datasette site: its configuration lives in site.yaml (how to start
Datasette on the seeded database); this module only registers it."""

from pathlib import Path

from synth.sites import register_site
from synth.sites.app import configured_site

Datasette = register_site(configured_site(Path(__file__).with_name("site.yaml")))
