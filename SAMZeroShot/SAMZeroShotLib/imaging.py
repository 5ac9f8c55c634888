"""From a volume's voxels to the 8-bit RGB slices that SAM expects.

A volume is a NumPy array in Slicer's order ``[K, J, I]`` with its 4x4 IJK-to-RAS matrix.
:class:`SliceGeometry` picks the slice axis and lays every slice out in the same radiological
orientation whatever the acquisition (rows run anterior-to-posterior or superior-to-inferior,
columns run from the patient's right to left), so that a re-oriented copy of a volume gives
SAM the very same 2D images. The volume's own voxels are never modified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SettingError

# RAS unit vectors, used to name the anatomical axes.
_R, _A, _S = np.eye(3)

# For each slice orientation: (normal, direction of increasing row, direction of increasing column),
# as in Slicer's default slice views (radiological convention: patient's right on image left).
_ORIENTATIONS = {
    "axial": (_S, -_A, -_R),
    "coronal": (_A, -_S, -_R),
    "sagittal": (_R, -_S, -_A),
}
SLICE_AXIS_NAMES = ("auto",) + tuple(_ORIENTATIONS)


@dataclass(frozen=True)
class Window:
    """Intensity window: ``level``/``width`` clip the values first; ``None`` keeps the full range.

    After clipping, each slice is stretched min-max to 0-255 and truncated to uint8, as the
    paper's code does it.
    """

    name: str
    level: float | None = None
    width: float | None = None


WINDOW_PRESETS = {
    # The paper's lung window for CT in Hounsfield units.
    "ct-lung": Window("ct-lung", level=-650.0, width=1500.0),
    # The stored grey levels, stretched min-max: radiographs (no calibrated units) and images
    # already windowed when they were saved (8-bit CT exports).
    "min-max": Window("min-max"),
    # The same window under its older name.
    "xray": Window("xray"),
}
WINDOW_NAMES = ("auto",) + tuple(WINDOW_PRESETS)

# Air is about -1000 HU; no radiograph or MR stores values this low, so a volume whose minimum
# is below it is taken for a CT in Hounsfield units.
_HU_AIR_THRESHOLD = -500.0


def looks_like_hounsfield(volume: np.ndarray) -> bool:
    """True when the values look like CT Hounsfield units (air present well below zero)."""
    return volume.size > 0 and float(volume.min()) < _HU_AIR_THRESHOLD


def resolve_window(name: str | Window, volume: np.ndarray) -> Window:
    """The window for ``name``; ``auto`` picks ``ct-lung`` for HU-like values, else ``min-max``.

    The window follows the values only; whether the image is a CT or a radiograph is decided
    apart from it (:mod:`modality`).
    """
    if isinstance(name, Window):
        return name
    if name == "auto":
        return WINDOW_PRESETS["ct-lung" if looks_like_hounsfield(volume) else "min-max"]
    if name not in WINDOW_PRESETS:
        raise SettingError(
            f"Unknown window preset {name!r}: choose one of {', '.join(WINDOW_NAMES)}."
        )
    return WINDOW_PRESETS[name]


def to_rgb8(plane: np.ndarray, window: Window) -> np.ndarray:
    """One 2D slice as an ``H x W x 3`` uint8 image; ``plane`` is not modified."""
    values = np.asarray(plane, dtype=np.float32).copy()
    if window.level is not None:
        half = window.width / 2.0
        np.clip(values, window.level - half, window.level + half, out=values)
    lowest, highest = float(values.min()), float(values.max())
    if highest > lowest:
        values -= lowest
        values *= 255.0 / (highest - lowest)
    else:
        values[:] = 0.0
    gray = values.astype(np.uint8)  # truncation, as in the paper
    return np.repeat(gray[:, :, None], 3, axis=2)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an ``... x 3`` (or ``... x 4``) colour array, as float32."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


@dataclass(frozen=True)
class SliceGeometry:
    """How the 2D slices of a ``[K, J, I]`` array are taken.

    ``axis`` is the array axis that indexes slices; ``row_axis`` and ``col_axis`` are the array
    axes that become image rows and columns, flipped where ``flip_rows``/``flip_cols`` say so.
    Slice numbers are the array's own indices along ``axis`` (no flip), so they match Slicer's
    IJK coordinates.
    """

    axis: int
    row_axis: int
    col_axis: int
    flip_rows: bool
    flip_cols: bool
    orientation: str
    pixel_spacing: tuple[float, float] = (1.0, 1.0)  # mm, (row, column)
    slice_spacing: float = 1.0  # mm

    def view(self, volume: np.ndarray) -> np.ndarray:
        """A view of ``volume`` indexed ``[slice, row, column]``; writing to it writes the
        volume."""
        if volume.ndim != 3:
            raise ValueError(f"Expected a 3D array, got shape {volume.shape}.")
        ordered = np.moveaxis(volume, (self.axis, self.row_axis, self.col_axis), (0, 1, 2))
        return ordered[:, :: -1 if self.flip_rows else 1, :: -1 if self.flip_cols else 1]


def _array_axis(ijk: int) -> int:
    """NumPy axis of IJK axis ``ijk`` (Slicer arrays are ``[K, J, I]``)."""
    return 2 - ijk


def slice_geometry(ijk_to_ras, shape, axis: str | int = "auto") -> SliceGeometry:
    """Pick the slice axis and in-plane layout of an array of ``shape`` with ``ijk_to_ras``.

    ``axis``: ``auto`` takes the single slice of a one-slice volume (an X-ray) and otherwise the
    axial direction; ``axial``/``coronal``/``sagittal`` take the IJK axis closest to that normal
    (oblique volumes included); an int is an array axis of ``shape``.
    """
    matrix = np.asarray(ijk_to_ras, dtype=float).reshape(4, 4)[:3, :3]
    if len(shape) != 3:
        raise ValueError(f"Expected a 3D volume, got shape {tuple(shape)}.")
    spacing_ijk = np.linalg.norm(matrix, axis=0)
    if np.any(spacing_ijk == 0):
        raise ValueError("The IJK-to-RAS matrix is singular: the volume has no valid geometry.")
    directions = matrix / spacing_ijk  # columns: RAS direction of I, J, K

    if isinstance(axis, (int, np.integer)):
        slice_ijk = 2 - int(axis)
        normal = directions[:, slice_ijk]
        orientation = max(_ORIENTATIONS, key=lambda name: abs(normal @ _ORIENTATIONS[name][0]))
    elif axis == "auto":
        single = [a for a in range(3) if shape[a] == 1]
        if single and not all(shape[a] == 1 for a in range(3)):
            slice_ijk = 2 - single[0]
            normal = directions[:, slice_ijk]
            orientation = max(_ORIENTATIONS, key=lambda name: abs(normal @ _ORIENTATIONS[name][0]))
        else:
            orientation = "axial"
            slice_ijk = int(np.argmax(np.abs(_ORIENTATIONS["axial"][0] @ directions)))
    elif axis in _ORIENTATIONS:
        orientation = axis
        slice_ijk = int(np.argmax(np.abs(_ORIENTATIONS[axis][0] @ directions)))
    else:
        raise SettingError(
            f"Unknown slice axis {axis!r}: choose one of {', '.join(SLICE_AXIS_NAMES)} or an array"
            " axis."
        )

    _, row_direction, col_direction = _ORIENTATIONS[orientation]
    in_plane = [ijk for ijk in range(3) if ijk != slice_ijk]
    # The in-plane IJK axis closest to the row direction gives rows; the other gives columns.
    alignment = [abs(row_direction @ directions[:, ijk]) for ijk in in_plane]
    row_ijk = in_plane[int(np.argmax(alignment))]
    col_ijk = in_plane[1 - int(np.argmax(alignment))]
    flip_rows = bool(row_direction @ directions[:, row_ijk] < 0)
    flip_cols = bool(col_direction @ directions[:, col_ijk] < 0)
    return SliceGeometry(
        axis=_array_axis(slice_ijk),
        row_axis=_array_axis(row_ijk),
        col_axis=_array_axis(col_ijk),
        flip_rows=flip_rows,
        flip_cols=flip_cols,
        orientation=orientation,
        pixel_spacing=(float(spacing_ijk[row_ijk]), float(spacing_ijk[col_ijk])),
        slice_spacing=float(spacing_ijk[slice_ijk]),
    )
