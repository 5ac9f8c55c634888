"""The cases of a cohort: one image, its masks and settings of its own; reading and checking them.

Mask label 0 is background, 255 is "ignore" (left out of scoring and never a prompt), every other
label is one prompt segment. An X-ray is one slice. A data set's layout (:mod:`.layouts`) finds
the cases; :func:`prepare` reads each once to find bad input before the model is loaded, and
:func:`read_case` reads one for segmenting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import imaging, voxels
from .errors import BadVoxels, CaseError
from .volumes import Volume, as_3d, read_volume

MASK_EXTENSIONS = (".seg.nrrd", ".nii.gz", ".png", ".nrrd", ".nii")
IGNORE_LABEL = 255


@dataclass(frozen=True)
class MaskFile:
    """One mask file of a case and how its values become labels.

    ``label`` None: the file is a label map read as it is (0 background, 255 ignore, others
    segments), its values swapped by ``relabel`` (``((file value, label), ...)``) where a data set
    numbers its segments otherwise. ``label`` set: the file is one segment's binary mask (any
    value but 0 is in it, as with 0/255 masks), which becomes label ``label``.
    """

    path: Path
    label: int | None = None
    relabel: tuple[tuple[int, int], ...] = ()


@dataclass
class Case:
    """One image, its masks, and settings of its own (e.g. ``{"window": "ct-lung"}``; see
    :func:`case_settings`)."""

    name: str
    image_path: Path
    masks: tuple[MaskFile, ...]
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def mask_paths(self) -> list[Path]:
        return [mask.path for mask in self.masks]


#: Settings a case may carry (a data set's layout knows them per case); each applies where the
#: user left the setting on ``auto``.
CASE_SETTINGS = ("window",)


def case_settings(case: Case, parameters) -> dict[str, str]:
    """The settings ``case`` is segmented with: the user's, and the case's own where the user's is
    ``auto``."""
    chosen = {name: getattr(parameters, name) for name in CASE_SETTINGS}
    for name, value in case.settings.items():
        if name not in CASE_SETTINGS:
            raise ValueError(f"case {case.name}: unknown setting {name!r}")
        if chosen[name] == "auto":
            chosen[name] = value
    return chosen


def _mask_values(path: Path, shape) -> np.ndarray:
    """A mask file's values ``[K, J, I]`` (int) of ``shape``; a layered ``.seg.nrrd`` becomes one
    label map."""
    import SimpleITK as sitk

    try:
        image = as_3d(sitk.ReadImage(str(path)))
    except (RuntimeError, ValueError) as error:
        raise CaseError(
            path, f"not a readable mask ({str(error).strip().splitlines()[-1][:120]})"
        ) from None
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        if not path.name.lower().endswith(".seg.nrrd"):
            raise CaseError(
                path, "a colour image, not a label mask: save the labels as one channel"
            )
        layers = np.moveaxis(array, -1, 0).astype(np.int64)
        combined = np.zeros(layers.shape[1:], dtype=np.int64)
        offset = 0
        for layer in layers:
            combined[layer > 0] = layer[layer > 0] + offset
            offset += int(layer.max())
        array = combined
    if tuple(array.shape) != tuple(shape):
        raise CaseError(
            path, f"mask size {_size(array.shape)} differs from its image's {_size(shape)}"
        )
    if array.dtype.kind == "f" and not np.all(array == np.round(array)):
        raise CaseError(path, "not a label mask: it holds non-integer values")
    return array.astype(np.int64)


def _relabelled(values: np.ndarray, relabel: Sequence[tuple[int, int]]) -> np.ndarray:
    labels = values.copy()
    for value, label in relabel:
        labels[values == value] = label
    return labels


def _has_labels(labels: np.ndarray) -> bool:
    return bool(np.any((labels != 0) & (labels != IGNORE_LABEL)))


def read_labels(path, shape, relabel: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """A label array ``[K, J, I]`` (int) of ``shape``: 0 background, 255 ignore, others segments.

    A ``.seg.nrrd`` with several layers (overlapping segments) gets one label per layer and value.
    ``relabel`` swaps values (``((file value, label), ...)``).
    """
    path = Path(path)
    labels = _relabelled(_mask_values(path, shape), relabel)
    if not _has_labels(labels):
        raise CaseError(path, "no labels: every pixel is background (0) or ignore (255)")
    return labels


def read_case_labels(case: Case, shape) -> np.ndarray:
    """The case's masks as one label array of ``shape`` (binary masks become their labels)."""
    if len(case.masks) == 1 and case.masks[0].label is None:
        return read_labels(case.masks[0].path, shape, case.masks[0].relabel)
    labels = np.zeros(shape, dtype=np.int64)
    for mask in case.masks:
        values = _mask_values(mask.path, shape)
        inside = values != 0
        labels[inside] = (
            mask.label if mask.label is not None else _relabelled(values, mask.relabel)[inside]
        )
    if not _has_labels(labels):
        names = ", ".join(mask.path.name for mask in case.masks)
        raise CaseError(
            case.image_path, f"its masks ({names}) hold no labels: every pixel is background"
        )
    return labels


def _size(shape) -> str:
    """``[K, J, I]`` as "I x J x K" pixels, without K for a single slice."""
    dims = list(shape)[::-1]
    return " x ".join(str(d) for d in (dims[:2] if len(dims) == 3 and dims[2] == 1 else dims))


def _checked_volume(case: Case, fill_nonfinite: bool):
    """``(the case's volume with usable voxels, slice geometry, notes)``; bad voxels raise
    :class:`CaseError`."""
    volume = read_volume(case.image_path)
    geometry = imaging.slice_geometry(volume.ijk_to_ras, volume.voxels.shape)
    try:
        checked, notes = voxels.checked(volume.voxels, geometry, fill=fill_nonfinite)
    except BadVoxels as error:
        raise CaseError(case.image_path, str(error)) from None
    return replace(volume, voxels=checked), geometry, notes


def check_case(case: Case, fill_nonfinite: bool = False) -> None:
    """Read a case once to find bad input before any time is spent on the model.

    The arrays are dropped and read again when the case is segmented: holding every case of a
    cohort in memory (some 140 MB per CT) would cost more than reading twice.
    """
    volume, _, _ = _checked_volume(case, fill_nonfinite)
    read_case_labels(case, volume.voxels.shape)


def read_case(
    case: Case, fill_nonfinite: bool = False
) -> tuple[Volume, imaging.SliceGeometry, list[str], dict[int, np.ndarray], np.ndarray]:
    """A case read for segmenting.

    Returns:
      ``(volume, geometry, notes, reference, ignore)``: the :class:`~.volumes.Volume` (voxels
      ``[K, J, I]``, NaN/inf filled where ``fill_nonfinite``, else refused), its slice geometry,
      notes on its voxels, ``{label: bool mask}`` of each segment and the bool mask of the ignore
      label, all of the voxels' shape.
    Raises:
      CaseError: an unreadable or mismatched image or mask, or unusable voxels.
    """
    volume, geometry, notes = _checked_volume(case, fill_nonfinite)
    labels = read_case_labels(case, volume.voxels.shape)
    segment_labels = [int(v) for v in np.unique(labels) if v not in (0, IGNORE_LABEL)]
    reference = {value: labels == value for value in segment_labels}
    return volume, geometry, notes, reference, labels == IGNORE_LABEL


def prepare(
    found: tuple[list[Case], list[CaseError]],
    where,
    keep_going: bool = False,
    fill_nonfinite: bool = False,
) -> tuple[list[Case], list[CaseError]]:
    """Read every case a layout found once: ``(usable cases, problems)``, before any time goes to
    the model.

    ``found`` is a layout's ``(cases, problems)``; ``where`` names the data in the error raised
    when nothing is usable. Raises the first :class:`CaseError` unless ``keep_going``.
    """
    cases, problems = found
    problems = list(problems)
    good = []
    for case in cases:
        try:
            check_case(case, fill_nonfinite)
            good.append(case)
        except CaseError as error:
            problems.append(error)
    if problems and not keep_going:
        raise problems[0]
    if not good:
        raise CaseError(where, "no usable image/mask pairs")
    return good, problems
