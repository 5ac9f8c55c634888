#!/usr/bin/env python3
"""Draw the extension and module icons: two lungs and a mouse cursor clicking a point prompt.

Usage: python Utilities/make_icons.py   (from anywhere; writes into the repository)

The drawing is pure geometry with Pillow, so the output is identical on every run
(no fonts, no randomness).
"""

import argparse
import math
import pathlib

import numpy as np
from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUTPUTS = (
    ROOT / "SAMZeroShot.png",  # extension icon (Extensions Manager)
    ROOT / "SAMZeroShot" / "Resources" / "Icons" / "SAMZeroShot.png",  # module icon
)

SIZE = 128
# Drawn large and reduced with a Lanczos filter: Pillow's primitives are not anti-aliased.
SCALE = 8

BACKGROUND_TOP = (38, 56, 92, 255)
BACKGROUND_BOTTOM = (18, 27, 48, 255)
LUNG_FILL = (236, 134, 146, 255)
LUNG_SHADE = (204, 92, 112, 255)
LUNG_EDGE = (120, 36, 56, 255)
AIRWAY = (240, 228, 222, 255)
PROMPT = (64, 214, 120, 255)
PROMPT_RING = (255, 255, 255, 255)
CURSOR_FILL = (255, 255, 255, 255)
CURSOR_EDGE = (0, 0, 0, 255)


def s(value):
    """Icon coordinates (0..128) to canvas pixels."""
    return value * SCALE


def lung_outline(midline_x, top, width, height, side, samples=40):
    """Closed outline of one lung in icon coordinates.

    side is -1 for the lung drawn on the left of the icon and +1 for the other one;
    midline_x is the medial (mediastinal) border. The apex is narrow, the lateral border
    bulges, the base is a diaphragm dome whose lowest point is the lateral costophrenic angle.
    """
    points = []
    # Lateral border, apex to costophrenic angle.
    for i in range(samples + 1):
        t = i / samples
        reach = 0.28 + 0.72 * math.sin(0.5 * math.pi * t) ** 0.45
        points.append((midline_x + side * width * reach, top + height * t))
    # Diaphragm, lateral to medial, domed upwards.
    for i in range(1, samples + 1):
        u = i / samples
        x = midline_x + side * width * (1.0 - u)
        y = top + height - 0.16 * height * u - 0.12 * height * math.sin(math.pi * u)
        points.append((x, y))
    # Medial border, base to apex; the lung on the right of the icon gets a cardiac notch.
    for i in range(1, samples):
        v = i / samples
        inset = 0.06 + 0.10 * v
        if side > 0:
            inset += 0.22 * math.exp(-((((1.0 - v) - 0.80) / 0.18) ** 2))
        x = midline_x + side * width * inset
        y = top + height * 0.78 * (1.0 - v)
        points.append((x, y))
    return points


def background(draw):
    # Vertical gradient in a rounded square, drawn as horizontal bands clipped by a mask later.
    for row in range(s(SIZE)):
        f = row / (s(SIZE) - 1)
        color = tuple(
            int(round(a + (b - a) * f))
            for a, b in zip(BACKGROUND_TOP, BACKGROUND_BOTTOM, strict=True)
        )
        draw.line([(0, row), (s(SIZE), row)], fill=color)


def rounded_mask(radius):
    mask = Image.new("L", (s(SIZE), s(SIZE)), 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        [s(4), s(4), s(SIZE - 4) - 1, s(SIZE - 4) - 1], radius=s(radius), fill=255
    )
    return mask


def draw_lungs(canvas):
    draw = ImageDraw.Draw(canvas)
    centre = 61
    for side in (-1, +1):
        outline = lung_outline(centre + side * 5, top=20, width=37, height=72, side=side)
        pixels = [(s(x), s(y)) for x, y in outline]
        draw.polygon(pixels, fill=LUNG_FILL)
        # A darker lower-lateral band gives the lobes some volume.
        shade = [(s(x), s(y)) for x, y in lung_outline(centre + side * 5, 52, 37, 40, side)]
        shade_mask = Image.new("L", canvas.size, 0)
        ImageDraw.Draw(shade_mask).polygon(shade, fill=110)
        lung_mask = Image.new("L", canvas.size, 0)
        ImageDraw.Draw(lung_mask).polygon(pixels, fill=255)
        shade_mask = Image.fromarray(np.minimum(np.asarray(shade_mask), np.asarray(lung_mask)))
        canvas.paste(Image.new("RGBA", canvas.size, LUNG_SHADE), (0, 0), shade_mask)
        draw = ImageDraw.Draw(canvas)
        draw.line(pixels + [pixels[0]], fill=LUNG_EDGE, width=s(2), joint="curve")
    # Trachea and the two main bronchi.
    width = s(6)
    carina = (s(centre), s(50))
    draw.line([(s(centre), s(13)), carina], fill=AIRWAY, width=width)
    for side in (-1, +1):
        draw.line([carina, (s(centre + side * 15), s(62))], fill=AIRWAY, width=s(4), joint="curve")
    r = width // 2
    draw.ellipse([carina[0] - r, carina[1] - r, carina[0] + r, carina[1] + r], fill=AIRWAY)
    draw.ellipse([s(centre) - r, s(13) - r, s(centre) + r, s(13) + r], fill=AIRWAY)


def draw_click(canvas, tip):
    """A positive point prompt with a click ripple, and an arrow cursor whose tip is on it."""
    draw = ImageDraw.Draw(canvas)
    x, y = tip
    for radius, width in ((13, 2.0), (9, 2.0)):
        draw.ellipse(
            [s(x - radius), s(y - radius), s(x + radius), s(y + radius)],
            outline=PROMPT_RING,
            width=int(s(width)),
        )
    draw.ellipse(
        [s(x - 5), s(y - 5), s(x + 5), s(y + 5)], fill=PROMPT, outline=CURSOR_EDGE, width=s(1)
    )
    # Classic arrow pointer, tip at (0, 0), in icon units.
    arrow = [(0, 0), (0, 30), (7, 23.5), (12, 34), (17, 31.5), (12, 21.5), (21, 21.5)]
    pixels = [(s(x + ax), s(y + ay)) for ax, ay in arrow]
    draw.polygon(pixels, fill=CURSOR_FILL)
    draw.line(pixels + [pixels[0]], fill=CURSOR_EDGE, width=s(2), joint="curve")


def render():
    big = (s(SIZE), s(SIZE))
    tile = Image.new("RGBA", big, (0, 0, 0, 0))
    background(ImageDraw.Draw(tile))
    draw_lungs(tile)
    draw_click(tile, tip=(86, 62))
    icon = Image.new("RGBA", big, (0, 0, 0, 0))
    icon.paste(tile, (0, 0), rounded_mask(radius=20))
    return icon.resize((SIZE, SIZE), Image.LANCZOS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    icon = render()
    for path in OUTPUTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        # No metadata chunks, so the bytes only depend on the pixels.
        icon.save(path, format="PNG", optimize=True)
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
