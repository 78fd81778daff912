"""QR codes for people: rendered in a terminal (Unicode half blocks) or written as a PNG."""

from __future__ import annotations

from pathlib import Path

import segno

#: Modules of light margin around the code; the QR spec asks for 4.
QUIET_ZONE = 4

_UPPER, _LOWER, _FULL, _EMPTY = "\u2580", "\u2584", "\u2588", " "


def matrix(value: str) -> list[list[bool]]:
    """The code's modules (True = dark), quiet zone included."""
    code = segno.make_qr(value, error="m")
    return [[bool(m) for m in row] for row in code.matrix_iter(scale=1, border=QUIET_ZONE)]


def render_terminal(value: str, *, invert: bool = False, large: bool = False) -> str:
    """The QR code as text.

    By default a block character draws a *light* module, so the code reads dark on light in a
    terminal with a dark background (the usual one, as `qrencode -t UTF8` does); `invert=True`
    suits a light background. Each character is one module wide and two high (half blocks),
    about 60 columns for a WhatsApp code; `large=True` doubles that (two characters per module,
    one module per line) for phones that struggle with small codes.
    """
    rows = matrix(value)
    lit = [[dark == invert for dark in row] for row in rows]  # True = draw a block
    lines: list[str] = []
    if large:
        for row in lit:
            lines.append("".join(_FULL * 2 if on else _EMPTY * 2 for on in row))
        return "\n".join(lines) + "\n"
    width = len(lit[0])
    for y in range(0, len(lit), 2):
        top = lit[y]
        bottom = lit[y + 1] if y + 1 < len(lit) else [False] * width
        chars = []
        for up, down in zip(top, bottom, strict=True):
            if up and down:
                chars.append(_FULL)
            elif up:
                chars.append(_UPPER)
            elif down:
                chars.append(_LOWER)
            else:
                chars.append(_EMPTY)
        lines.append("".join(chars))
    return "\n".join(lines) + "\n"


def write_png(value: str, path: Path | str, *, scale: int = 8) -> None:
    """Writes the code as a PNG (dark on white, quiet zone included), atomically."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    segno.make_qr(value, error="m").save(str(partial), kind="png", scale=scale, border=QUIET_ZONE)
    partial.replace(target)
