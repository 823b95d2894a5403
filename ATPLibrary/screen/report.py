"""Pictures for the log: the screenshot and the needle side by side, with the areas drawn on both."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from ATPLibrary.screen.image import Box
from ATPLibrary.screen.needle import NeedleMatch

MATCHED = (0, 200, 0)
MISSED = (255, 40, 40)
EXPECTED = (60, 140, 255)
EXCLUDED = (255, 200, 0)
GAP = 12
CAPTION = 16


def _frame(draw: ImageDraw.ImageDraw, box: Box, colour: tuple[int, int, int], dx: int = 0, dy: int = 0) -> None:
    draw.rectangle((box.x + dx, box.y + dy, box.right + dx - 1, box.bottom + dy - 1), outline=colour)


def side_by_side(result: NeedleMatch) -> Image.Image:
    """Left: the screenshot with each match area where it was found (green: matched, red: not) and its
    exclude areas; right: the needle image with its areas where they were drawn (blue: match, yellow:
    exclude). A caption names both."""
    screen, needle = result.screen.convert("RGB"), result.needle.image.convert("RGB")
    width = screen.width + GAP + needle.width
    height = CAPTION + max(screen.height, needle.height)
    canvas = Image.new("RGB", (width, height), (64, 64, 64))
    canvas.paste(screen, (0, CAPTION))
    canvas.paste(needle, (screen.width + GAP, CAPTION))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((2, 2), "screen", fill=(255, 255, 255), font=font)
    draw.text((screen.width + GAP + 2, 2), f"needle {result.needle.name}", fill=(255, 255, 255), font=font)
    for r in result.areas:
        if r.shift is None:
            continue
        dx, dy = r.shift
        _frame(draw, r.area.box, MATCHED if r.matched else MISSED, dx, dy + CAPTION)
        for e in result.needle.exclude_areas:
            cut = r.area.box.intersection(e.box)
            if cut is not None:
                _frame(draw, cut, EXCLUDED, dx, dy + CAPTION)
    for a in result.needle.areas:
        if a.type == "ocr":
            continue
        _frame(draw, a.box, EXPECTED if a.type == "match" else EXCLUDED, screen.width + GAP, CAPTION)
    return canvas
