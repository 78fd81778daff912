"""Test helper: reads QR codes back, from a PNG or from what `wa-sessions qr` printed, with a
real decoder (zxing-cpp), not by eye."""

from __future__ import annotations

from pathlib import Path

import zxingcpp
from PIL import Image

# Half-block characters -> (top module drawn, bottom module drawn).
_HALF = {"\u2588": (True, True), "\u2580": (True, False), "\u2584": (False, True), " ": (0, 0)}


def decode_image(image: Image.Image) -> list[str]:
    found = zxingcpp.read_barcodes(
        image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode), try_invert=False
    )
    return [b.text for b in found]


def decode_png(path: Path) -> list[str]:
    with Image.open(path) as image:
        return decode_image(image.convert("L"))


def terminal_to_image(text: str, *, drawn_is_dark: bool, large: bool = False) -> Image.Image:
    """The picture a terminal shows for `text` (dark background + light blocks, unless
    `drawn_is_dark`), 6 pixels per module, with a margin of the background colour."""
    rows: list[list[bool]] = []
    for line in text.splitlines():
        if large:
            rows.append([c == "\u2588" for c in line[::2]])
        else:
            top = [bool(_HALF[c][0]) for c in line]
            bottom = [bool(_HALF[c][1]) for c in line]
            rows += [top, bottom]
    width = max(len(r) for r in rows)
    scale, margin = 6, 24
    # The terminal's background is the opposite of what the blocks draw.
    ink, paper = (0, 255) if drawn_is_dark else (255, 0)
    image = Image.new("L", (width * scale + 2 * margin, len(rows) * scale + 2 * margin), paper)
    pixels = image.load()
    assert pixels is not None
    for y, row in enumerate(rows):
        for x, drawn in enumerate(row):
            if drawn:
                for dy in range(scale):
                    for dx in range(scale):
                        pixels[margin + x * scale + dx, margin + y * scale + dy] = ink
    return image


def decode_terminal(text: str, *, drawn_is_dark: bool = False, large: bool = False) -> list[str]:
    return decode_image(terminal_to_image(text, drawn_is_dark=drawn_is_dark, large=large))
