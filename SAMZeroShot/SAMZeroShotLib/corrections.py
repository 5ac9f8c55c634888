"""A simulated user correcting a mask with clicks, for measuring corrections.

After a first result, the user looks at the slice, finds the largest wrong region (a connected
part of the reference the mask misses, or of the mask outside the reference) and clicks at the
point deepest inside it: an *include* click in a miss, an *exclude* click in a leak. Only the
click's position and kind reach the model, never the reference itself.

"Deepest" is the largest Euclidean distance (in pixels) to the nearest pixel outside the region;
the image border counts as outside, so a region cut by the border is not deeper there. Regions
are 4-connected. Ties go to the larger region first, then the miss, then the first pixel in row
order, so the simulation is deterministic.
"""

from __future__ import annotations

import numpy as np

from .interactive import DEFAULT_CORRECTION, Click, SliceEditor, depth
from .prompts import box_prompt


def largest_region(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest 4-connected region of ``mask`` (the first in row order on a tie) and its
    size; an empty mask gives an empty region of size 0."""
    import SimpleITK as sitk

    if not mask.any():
        return np.zeros(mask.shape, bool), 0
    labels = sitk.GetArrayFromImage(
        sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), False)
    )
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    # Labels are numbered in row order, so argmax picks the first of equal sizes.
    best = int(np.argmax(sizes))
    return labels == best, int(sizes[best])


def next_click(
    reference: np.ndarray,
    predicted: np.ndarray,
    ignore: np.ndarray | None = None,
    min_pixels: int = 1,
) -> Click | None:
    """The click a user makes next on ``predicted`` to get ``reference`` (2D bool masks).

    None when the mask is right, or when its largest error region has fewer than ``min_pixels``
    pixels. Pixels marked ``ignore`` are never wrong.
    """
    reference = np.asarray(reference, bool)
    predicted = np.asarray(predicted, bool)
    if reference.shape != predicted.shape or reference.ndim != 2:
        raise ValueError(
            f"Expected two 2D masks of one shape, got {reference.shape} and {predicted.shape}."
        )
    keep = np.ones(reference.shape, bool) if ignore is None else ~np.asarray(ignore, bool)
    missed, missed_size = largest_region(reference & ~predicted & keep)
    leaked, leaked_size = largest_region(predicted & ~reference & keep)
    region, include = (missed, True) if missed_size >= leaked_size else (leaked, False)
    if max(missed_size, leaked_size) < max(1, min_pixels):
        return None
    distances = depth(region)
    row, col = np.unravel_index(int(np.argmax(distances)), distances.shape)
    return Click(int(row), int(col), include)


def dice_by_clicks(
    image: np.ndarray,
    references: dict,
    predicted: dict,
    prompts: dict,
    engine,
    clicks: int,
    ignore: np.ndarray | None = None,
    correction: str | None = None,
) -> list[float]:
    """Dice of the union of a slice's segments after 0, 1, ..., ``clicks`` simulated clicks.

    Each segment (``{key: 2D mask}``: reference, first result, prompt) gets up to ``clicks``
    clicks from :func:`next_click`, each applied by an :class:`~.interactive.SliceEditor` with
    ``correction`` that starts from the first result and the prompt's box.
    """
    from . import metrics

    editors = {}
    for key, reference in references.items():
        if not (reference.any() or predicted[key].any()):
            continue
        editor = SliceEditor(engine, image, correction or DEFAULT_CORRECTION)
        prompt = prompts.get(key)
        box = None if prompt is None or not prompt.any() else box_prompt(prompt)
        editor.start_from(predicted[key], box)
        editors[key] = editor

    def union_dice() -> float:
        union = np.zeros(image.shape[:2], bool)
        for key in references:
            union |= editors[key].mask if key in editors else predicted[key]
        reference_union = np.logical_or.reduce(list(references.values()))
        return metrics.overlap(union, reference_union, ignore)["dice"]

    scores = [union_dice()]
    for _ in range(clicks):
        for key, editor in editors.items():
            click = next_click(references[key], editor.mask, ignore)
            if click is not None:
                editor.click(click)
        scores.append(union_dice())
    return scores
