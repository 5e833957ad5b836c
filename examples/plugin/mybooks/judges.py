"""A judge of the plugin's own: registered like synth's, named in templates."""

from __future__ import annotations

from synth.judges import JudgeContext, register_judge
from synth.schema import Verdict


@register_judge("mybooks.on_reading_list")
async def on_reading_list(ctx: JudgeContext, title: str, only: bool = True) -> Verdict:
    """The book `title` is on the reading list (and, with `only`, nothing else is)."""
    titles = [row["title"] for row in (await ctx.state())["reading_list"]]
    ok = title in titles and (not only or len(titles) == 1)
    return Verdict(passed=ok, score=float(ok), reason=f"reading list {titles}; want {title!r}{' only' if only else ''}")
