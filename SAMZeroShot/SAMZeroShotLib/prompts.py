"""From one slice's segment masks to SAM prompts.

Coordinates follow SAM: points are ``(x, y)`` = ``(column, row)`` in pixels of the slice, boxes are
``(x0, y0, x1, y1)``. Masks are 2D boolean arrays ``[row, column]``.

Prompt makers (the strategies in :mod:`strategies` use them):

``paper``
    Exactly the prompt of Gutiérrez et al. (IEEE Access 2024) as their public code makes it: one
    positive point per segment at its centroid (re-centred inside the mask along its longer
    row/column run), one negative point at the centre of the box around all segments, that box,
    one SAM call with ``multimask_output=False`` for all segments together, no post-processing.
``box``
    One SAM call per segment with that segment's own box, the prompt that box-trained models such
    as LiteMedSAM expect; optionally the segment's positive point as well.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

Masks = dict[Hashable, np.ndarray]


@dataclass
class Prompt:
    """The prompt of one SAM call and the segments its mask belongs to.

    A prompt for several segments (``paper``) yields one mask for all of them;
    :func:`split_among_segments` hands each predicted pixel to the nearest of those segments.
    """

    segments: tuple[Hashable, ...]
    points: np.ndarray | None = None  # (N, 2) float, (x, y)
    labels: np.ndarray | None = None  # (N,) int, 1 = foreground, 0 = background
    box: np.ndarray | None = None  # (4,) float, (x0, y0, x1, y1)
    multimask: bool = False

    def __post_init__(self):
        if self.points is not None:
            self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
            self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
            if len(self.labels) != len(self.points):
                raise ValueError("Each prompt point needs exactly one label.")
        if self.box is not None:
            self.box = np.asarray(self.box, dtype=np.float32).reshape(4)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(min_row, min_col, max_row + 1, max_col + 1)`` of a non-empty mask (scikit-image's
    bbox)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("The mask is empty: it has no bounding box.")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def box_prompt(mask: np.ndarray) -> np.ndarray:
    """The SAM box ``(x0, y0, x1, y1)`` of a mask, with the exclusive maximum the paper uses."""
    min_row, min_col, max_row, max_col = bounding_box(mask)
    return np.array([min_col, min_row, max_col, max_row], dtype=np.float32)


def _run_lengths(line: np.ndarray, index: int) -> tuple[int, int]:
    """Lengths of the runs of True just before and just after ``index`` (excluding it)."""
    before = line[:index][::-1]
    after = line[index + 1 :]
    n_before = int(np.argmin(before)) if not before.all() else before.size
    n_after = int(np.argmin(after)) if not after.all() else after.size
    return n_before, n_after


def center_in_mask(mask: np.ndarray, row: int, col: int) -> tuple[int, int]:
    """Move ``(row, col)`` to the middle of its longer run, horizontal or vertical.

    The run lengths exclude the point itself; a tie goes vertical; the middle is rounded up. A run
    that reaches the image border ends there (the paper's code fails in that case).
    """
    left, right = _run_lengths(mask[row, :], col)
    above, below = _run_lengths(mask[:, col], row)
    if left + right > above + below:
        return row, col + (right - left + 1) // 2
    return row + (below - above + 1) // 2, col


def move_inside(mask: np.ndarray, row: int, col: int) -> tuple[int, int]:
    """Move a point that lies outside ``mask`` onto it, as the paper's code does.

    Look along the four rays from the point (left, right, up, down); take the ray that crosses the
    most mask pixels (the first in that order on a tie) and the upper median of those pixels. When
    no ray meets the mask, take the mask pixel nearest to the point (the paper's code takes a random
    one; this is the deterministic choice).
    """
    rays = [
        (np.flatnonzero(mask[row, :col]), "col"),
        (col + 1 + np.flatnonzero(mask[row, col + 1 :]), "col"),
        (np.flatnonzero(mask[:row, col]), "row"),
        (row + 1 + np.flatnonzero(mask[row + 1 :, col]), "row"),
    ]
    counts = [indices.size for indices, _ in rays]
    best = int(np.argmax(counts))
    if counts[best] > 0:
        indices, kind = rays[best]
        middle = int(indices[indices.size // 2])
        return (row, middle) if kind == "col" else (middle, col)
    mask_rows, mask_cols = np.nonzero(mask)
    nearest = int(np.argmin((mask_rows - row) ** 2 + (mask_cols - col) ** 2))
    return int(mask_rows[nearest]), int(mask_cols[nearest])


def positive_point(mask: np.ndarray) -> tuple[int, int]:
    """The paper's positive point of a segment, as ``(row, col)``.

    The centroid, truncated to integers; moved onto the mask when it falls outside (a C-shaped
    lung, say); then re-centred along its longer run.
    """
    mask_rows, mask_cols = np.nonzero(mask)
    if mask_rows.size == 0:
        raise ValueError("The mask is empty: it has no centroid.")
    row, col = int(mask_rows.mean()), int(mask_cols.mean())
    if not mask[row, col]:
        row, col = move_inside(mask, row, col)
    return center_in_mask(mask, row, col)


def negative_point(union: np.ndarray) -> tuple[int, int]:
    """Centre ``(row, col)`` of the box around all segments, as the paper computes it."""
    min_row, min_col, max_row, max_col = bounding_box(union)
    return min_row + (max_row - min_row) // 2, min_col + (max_col - min_col) // 2


def paper_prompts(masks: Masks) -> list[Prompt]:
    """The paper's single prompt for all segments of a slice (see the module docstring)."""
    keys = [key for key, mask in masks.items() if mask.any()]
    if not keys:
        return []
    union = np.logical_or.reduce([masks[key] for key in keys])
    rows_cols = [positive_point(masks[key]) for key in keys] + [negative_point(union)]
    points = [(col, row) for row, col in rows_cols]
    labels = [1] * len(keys) + [0]
    return [Prompt(segments=tuple(keys), points=points, labels=labels, box=box_prompt(union))]


def split_among_segments(predicted: np.ndarray, masks: Masks, keys: Sequence[Hashable]) -> Masks:
    """Hand each pixel of one predicted mask to the nearest of the prompt segments ``keys``.

    Inside a prompt segment a pixel goes to that segment; elsewhere to the segment at the smallest
    Euclidean distance (a Voronoi partition, from SimpleITK's Maurer distance maps: linear time,
    faster than its Danielsson filter). The union of the parts is ``predicted``
    itself, so the union scores of the paper are unchanged.

    The maps are computed only on the box around the predicted mask and the segments, grown by
    one pixel: every segment pixel lies inside it, and its background rim is nearer to any
    inside pixel than anything beyond, so the partition is the same as on the whole slice, at a
    fraction of the cost.
    """
    if len(keys) == 1:
        return {keys[0]: predicted.copy()}
    import SimpleITK as sitk

    parts = {key: np.zeros_like(predicted, dtype=bool) for key in keys}
    if not predicted.any():
        return parts
    min_row, min_col, max_row, max_col = bounding_box(
        np.logical_or.reduce([predicted] + [masks[k] for k in keys])
    )
    rows = slice(max(0, min_row - 1), min(predicted.shape[0], max_row + 1))
    cols = slice(max(0, min_col - 1), min(predicted.shape[1], max_col + 1))
    distances = []
    for key in keys:
        image = sitk.GetImageFromArray(masks[key][rows, cols].astype(np.uint8))
        distance = sitk.SignedMaurerDistanceMap(
            image, insideIsPositive=False, squaredDistance=True, useImageSpacing=False
        )
        distances.append(sitk.GetArrayViewFromImage(distance).copy())
    nearest = np.argmin(np.stack(distances), axis=0)
    for number, key in enumerate(keys):
        parts[key][rows, cols] = predicted[rows, cols] & (nearest == number)
    return parts
