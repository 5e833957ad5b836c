"""Sites: the site contract (`base`) and the bundled sites (MiniWoB++, the
shop, the forum), which synth's `pyproject.toml` declares as `synth.sites`
entry points, as a user's package declares its own (see `synth.plugins`)."""

from synth.sites.base import SITES, Setup, Site, get_site, register_site

__all__ = ["SITES", "Setup", "Site", "get_site", "register_site"]
