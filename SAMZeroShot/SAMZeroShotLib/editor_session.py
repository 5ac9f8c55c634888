"""The data side of the Segment Editor effect "SAM", without Qt or Slicer.

The effect hands over arrays in the segmentation's geometry (``[K, J, I]``, its IJK-to-RAS
matrix) and voxel positions; :class:`EditorSession` answers with masks in the same layout:

* :meth:`~EditorSession.box`: a box dragged on one slice gives that slice's mask;
* :meth:`~EditorSession.click`: an include or exclude click corrects it (see :mod:`interactive`);
* :meth:`~EditorSession.fill`: every slice from the slices the segment has content on (the
  module's propagation, :func:`pipeline.segment_volume` with ``propagate``);
* :meth:`~EditorSession.refine`: each slice's content becomes its prompt (the module's run).

Slices are taken as the module takes them (:func:`imaging.slice_geometry` with the view's axis),
so an embedding made by the module or the effect serves both through the engine's cache. Only a
slice view aligned with the volume's axes can be used (:func:`view_axis`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import imaging, pipeline
from .errors import InputError
from .interactive import Click, SliceEditor
from .volumes import Volume

#: Largest angle (as 1 - |cos|) between the view's normal and a volume axis still taken as aligned.
ALIGNED_TOLERANCE = 1e-3
OBLIQUE = "SAM works in slice views aligned with the volume's axes: rotate this view back to them."


def view_axis(ijk_to_ras, view_normal_ras) -> int:
    """The array axis (of ``[K, J, I]``) normal to the view; :class:`InputError` if oblique."""
    matrix = np.asarray(ijk_to_ras, dtype=float).reshape(4, 4)[:3, :3]
    directions = matrix / np.linalg.norm(matrix, axis=0)
    normal = np.asarray(view_normal_ras, dtype=float)
    cosines = np.abs(directions.T @ (normal / np.linalg.norm(normal)))
    ijk = int(np.argmax(cosines))
    if cosines[ijk] < 1.0 - ALIGNED_TOLERANCE:
        raise InputError(OBLIQUE)
    return 2 - ijk


def _plane_position(geometry: imaging.SliceGeometry, shape, ijk) -> tuple[int, int, int]:
    """``(slice, row, col)`` of voxel ``ijk`` (I, J, K) in ``geometry``'s view of ``shape``."""
    index = [int(ijk[2]), int(ijk[1]), int(ijk[0])]  # array order [K, J, I]
    row, col = index[geometry.row_axis], index[geometry.col_axis]
    if geometry.flip_rows:
        row = shape[geometry.row_axis] - 1 - row
    if geometry.flip_cols:
        col = shape[geometry.col_axis] - 1 - col
    return index[geometry.axis], row, col


def voxel_at(geometry: imaging.SliceGeometry, shape, s: int, row: int, col: int) -> tuple:
    """The voxel ``(i, j, k)`` at ``(slice, row, col)`` of ``geometry``'s view of ``shape``."""
    index = [0, 0, 0]
    index[geometry.axis] = s
    index[geometry.row_axis] = shape[geometry.row_axis] - 1 - row if geometry.flip_rows else row
    index[geometry.col_axis] = shape[geometry.col_axis] - 1 - col if geometry.flip_cols else col
    return index[2], index[1], index[0]


@dataclass
class EditorSession:
    """One source volume in the segment editor, with the engine and the slice editors in use.

    ``volume``: voxels ``[K, J, I]`` in the segmentation's geometry; ``ijk_to_ras`` its matrix.
    ``strategy`` is what "Fill the volume" and "Refine all slices" use (the module's default).
    """

    engine: object
    volume: np.ndarray
    ijk_to_ras: np.ndarray
    strategy: str = "auto"
    window: imaging.Window = None
    editors: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.window is None:
            self.window = imaging.resolve_window("auto", self.volume)

    def geometry(self, axis: int) -> imaging.SliceGeometry:
        return imaging.slice_geometry(self.ijk_to_ras, self.volume.shape, axis)

    def _image(self, geometry, s: int) -> np.ndarray:
        return imaging.to_rgb8(geometry.view(self.volume)[s], self.window)

    def box(self, segment, axis: int, corners: Sequence) -> tuple[int, np.ndarray]:
        """The mask of a box dragged between voxels ``corners`` (two IJK positions on one
        slice): ``(slice, the slice's mask as a [K, J, I] array)``."""
        geometry = self.geometry(axis)
        (s, row0, col0), (_, row1, col1) = (
            _plane_position(geometry, self.volume.shape, c) for c in corners
        )
        box = [min(col0, col1), min(row0, row1), max(col0, col1) + 1, max(row0, row1) + 1]
        editor = SliceEditor(self.engine, self._image(geometry, s))
        editor.set_box(box)
        self.editors[(segment, axis, s)] = editor
        return s, self._placed(geometry, s, editor.mask)

    def click(
        self, segment, axis: int, ijk, include: bool, content: np.ndarray
    ) -> tuple[int, np.ndarray]:
        """Correct the segment's slice under voxel ``ijk``; ``content`` is the segment as it is
        now (``[K, J, I]``, the start when this slice has no editor yet, or a changed one).
        ``(slice, the slice's new mask as a [K, J, I] array)``."""
        geometry = self.geometry(axis)
        s, row, col = _plane_position(geometry, self.volume.shape, ijk)
        now = np.asarray(geometry.view(content)[s], bool)
        editor = self.editors.get((segment, axis, s))
        if editor is None or not np.array_equal(editor.mask, now):
            if not now.any():
                raise InputError("Drag a box around the structure on this slice first.")
            editor = SliceEditor(self.engine, self._image(geometry, s))
            editor.start_from(now)
            self.editors[(segment, axis, s)] = editor
        editor.click(Click(row, col, include))
        return s, self._placed(geometry, s, editor.mask)

    def _placed(self, geometry, s: int, mask: np.ndarray) -> np.ndarray:
        placed = np.zeros(self.volume.shape, bool)
        geometry.view(placed)[s] = mask
        return placed

    def fill(self, content: np.ndarray, axis: int, progress=None, cancel=None) -> np.ndarray:
        """Every slice from the slices ``content`` has labels on (those keep their content)."""
        return self._run(content, axis, True, progress, cancel)

    def refine(self, content: np.ndarray, axis: int, progress=None, cancel=None) -> np.ndarray:
        """Each slice's content as its prompt, segmented anew; slices without content stay
        empty."""
        return self._run(content, axis, False, progress, cancel)

    def _run(self, content, axis, propagate: bool, progress, cancel) -> np.ndarray:
        content = np.asarray(content, bool)
        if not content.any():
            raise InputError("The selected segment is empty: draw it on one slice first.")
        geometry = self.geometry(axis)
        result = pipeline.segment_volume(
            Volume(self.volume, self.ijk_to_ras),
            geometry,
            {"segment": content},
            self.engine,
            strategy=self.strategy,
            window=self.window,
            progress=progress,
            cancel=cancel,
            propagate=propagate,
        )
        mask = result.masks["segment"]
        if propagate:
            annotated = geometry.view(content).any(axis=(1, 2))
            geometry.view(mask)[annotated] = geometry.view(content)[annotated]
        return mask
