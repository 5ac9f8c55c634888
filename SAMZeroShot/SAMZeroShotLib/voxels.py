"""Voxel values the model cannot use, found before any time is spent on it.

NaN or infinite voxels would be windowed to garbage silently (a NaN slice becomes black, one
infinite voxel squashes the rest of its slice to zero), so they are refused, or on request
replaced by their slice's minimum. A volume of one constant value is allowed, with a warning:
the model sees a blank image, so the prompt alone decides the mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import BadVoxels
from .imaging import SliceGeometry

#: The option that fills non-finite voxels, on the command line and in the Slicer module (named in
#: the error message).
FILL_OPTION = "--fill-nonfinite (in Slicer: Replace NaN voxels)"


def slice_list(slices: Sequence[int], most: int = 10) -> str:
    """Slice numbers as ``3-5, 9`` (runs joined), the first ``most`` runs only."""
    runs: list[list[int]] = []
    for s in slices:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:most]]
    return ", ".join(text) + (f" and {len(runs) - most} more runs" if len(runs) > most else "")


def checked(
    volume: np.ndarray, geometry: SliceGeometry, fill: bool = False
) -> tuple[np.ndarray, list[str]]:
    """``(voxels to use, notes)`` for ``volume``, whose slices ``geometry`` says how to take.

    Without ``fill``, NaN/infinite voxels raise :class:`BadVoxels` with their count and slice
    numbers. With ``fill`` they are replaced, in a copy, by the minimum of their slice's finite
    voxels (of the whole volume for a slice with none), and a note says so. ``volume`` itself is
    never modified. A constant volume gives a note too.
    """
    if volume.dtype.kind != "f":  # integers cannot hold NaN
        return volume, constant_note(volume)
    per_slice = (~np.isfinite(geometry.view(volume))).sum(axis=(1, 2))
    count = int(per_slice.sum())
    if count == 0:
        return volume, constant_note(volume)
    bad = np.flatnonzero(per_slice).tolist()
    where = f"slice{'s' if len(bad) > 1 else ''} {slice_list(bad)}"
    finite = np.isfinite(volume)
    if not finite.any():
        raise BadVoxels("every voxel is NaN or infinite: there is no image to segment.")
    if not fill:
        counted = f"{count} voxel is" if count == 1 else f"{count} voxels are"
        raise BadVoxels(
            f"{counted} NaN or infinite ({where}): repair the image, or replace them "
            f"by their slice's minimum with {FILL_OPTION}."
        )
    filled = volume.copy()
    volume_minimum = float(volume[finite].min())
    for plane in (geometry.view(filled)[s] for s in bad):
        good = np.isfinite(plane)
        plane[~good] = plane[good].min() if good.any() else volume_minimum
    note = f"{count} NaN or infinite voxels ({where}) were replaced by their slice's minimum."
    return filled, [note] + constant_note(filled)


def constant_note(volume: np.ndarray) -> list[str]:
    """A warning when every voxel has the same value (the model then sees a blank image)."""
    if volume.size and float(volume.min()) == float(volume.max()):
        return [
            f"every voxel has the value {float(volume.min()):g}: the image carries no information, "
            "so the prompt alone decides the mask."
        ]
    return []
