"""The trac site: its configuration lives in site.yaml (how to start tracd on
the seeded environment, reset it, log in, read its state); this module only
registers it."""

from pathlib import Path

from synth.sites import register_site
from synth.sites.app import configured_site

Trac = register_site(configured_site(Path(__file__).with_name("site.yaml")))
