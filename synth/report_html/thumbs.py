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


class Thumbnails:
    """Data URIs of screenshots, each distinct screenshot encoded once."""

    def __init__(self, max_width: int = MAX_WIDTH) -> None:
        self.max_width = max_width
        self._seen: dict[bytes, tuple[str, int, int]] = {}
        self.bytes_out = 0

    def uri(self, png: bytes) -> tuple[str, int, int]:
        key = hashlib.sha1(png).digest()
        if key not in self._seen:
            try:
                small, w, h = thumbnail(png, self.max_width)
            except (OSError, ValueError):  # not an image Pillow reads: say so, do not fail the report
                return "", 0, 0
            self.bytes_out += len(small)
            self._seen[key] = ("data:image/png;base64," + base64.b64encode(small).decode("ascii"), w, h)
        return self._seen[key]
