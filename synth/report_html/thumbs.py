"""Screenshots made small enough that every step of a run fits in one page.

A step's screenshot is a PNG of a web page: flat colours and text. Quantised
to 64 colours (fast octree) and PNG-encoded it stays sharp and is about a
third of the original, where JPEG smears the text and is no smaller; wide
pages are scaled down first. Identical screenshots are encoded once."""

from __future__ import annotations

import base64
import hashlib
import io

from PIL import Image

MAX_WIDTH = 480
COLOURS = 64


def thumbnail(png: bytes, max_width: int = MAX_WIDTH) -> tuple[bytes, int, int]:
    """The small PNG of a screenshot, with its width and height."""
    im = Image.open(io.BytesIO(png)).convert("RGB")
    if im.width > max_width:
        im = im.resize((max_width, max(1, round(im.height * max_width / im.width))), Image.Resampling.BILINEAR)
    small = im.quantize(COLOURS, method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    small.save(buf, "PNG", optimize=False)
    return buf.getvalue(), im.width, im.height


BUDGET_MB = 64.0


class Thumbnails:
    """Data URIs of screenshots, each distinct screenshot encoded once, up to
    a budget of encoded bytes: past it a screenshot is left out (`uri` gives
    ""), so a run of any size makes a page a browser still opens. A run the
    size of `make run`'s (4,219 steps) takes about 21 MB."""

    def __init__(self, max_width: int = MAX_WIDTH, budget_mb: float = BUDGET_MB) -> None:
        self.max_width = max_width
        self.budget = int(budget_mb * 1e6)
        self._seen: dict[bytes, tuple[str, int, int]] = {}
        self.bytes_out = 0
        self.left_out = 0

    def uri(self, png: bytes) -> tuple[str, int, int]:
        key = hashlib.sha1(png).digest()
        if key in self._seen:
            return self._seen[key]
        if self.bytes_out >= self.budget:
            self.left_out += 1
            return "", 0, 0
        try:
            small, w, h = thumbnail(png, self.max_width)
        except (OSError, ValueError):  # not an image Pillow reads: show the step without it
            return "", 0, 0
        uri = "data:image/png;base64," + base64.b64encode(small).decode("ascii")
        self.bytes_out += len(uri)
        self._seen[key] = (uri, w, h)
        return self._seen[key]
