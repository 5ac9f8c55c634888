"""Is an image a CT or a radiograph? What the file says first, the image content second.

The answer picks the modality-only settings of a strategy (the radiograph cut-off of
``flip4-xray``); it is separate from the intensity window, which follows the values: an 8-bit
CT slice is a CT shown with its stored grey levels, an HU CT gets the lung window.

``auto`` decides, in this order:

1. the modality the file or scene records (:attr:`.volumes.Volume.modality`: DICOM Modality
   ``CT``, or ``CR``/``DX`` for a radiograph);
2. a volume with several slices is a CT;
3. the content of the one slice: an axial CT slice shows a body outline surrounded by air, a
   radiograph fills its frame (:func:`looks_like_axial_slice`).

The value range alone never decides (8-bit CT exports are common).
"""

from __future__ import annotations

import numpy as np

from .errors import SettingError
from .imaging import SliceGeometry
from .volumes import Volume

MODALITY_NAMES = ("auto", "ct", "xray")

#: DICOM Modality (0008,0060) values and what they mean here; others (MR, PT, ...) decide nothing.
DICOM_MODALITIES = {"CT": "ct", "CR": "xray", "DX": "xray", "RG": "xray"}

#: A slice is an axial cross-section when its body touches at most this fraction of the image
#: border (chosen from data with ``Utilities/modality_thresholds.py``: the middle of the gap on
#: the selection halves of cxr_dev and ct_dev; see ``Utilities/modality_thresholds.json``) ...
MAX_BORDER_TOUCH = 0.114
#: ... and its content fills at most this fraction of its bounding box: not chosen from data, half
#: way between an ellipse in its box (pi/4, a body cross-section) and a full frame (1: a radiograph
#: fills its frame, padded or not).
MAX_BODY_EXTENT = 0.89


def from_dicom(value: str | None) -> str | None:
    """``ct``/``xray`` for a DICOM Modality value, None when it says neither."""
    return DICOM_MODALITIES.get((value or "").strip().upper())


def _ring(shape, fraction: float = 0.02) -> np.ndarray:
    """The outer band of an image, ``fraction`` of its shorter side wide (at least one pixel)."""
    width = max(1, int(round(fraction * min(shape))))
    ring = np.zeros(shape, bool)
    ring[:width] = ring[-width:] = True
    ring[:, :width] = ring[:, -width:] = True
    return ring


def body_measures(plane: np.ndarray) -> tuple[float, float]:
    """``(border touch, body extent)`` of one 2D slice.

    The body is the largest bright region (Otsu's threshold, computed without the image's
    lowest value, which is padding outside a CT's field of view or around a scanned film), with
    its holes (the lungs) filled. Border touch: the fraction of the image border it covers.
    Body extent: its area over the area of its bounding box.
    """
    import SimpleITK as sitk

    values = np.asarray(plane, dtype=np.float32)
    lowest = float(values.min())
    if float(values.max()) == lowest:
        return 1.0, 1.0  # a blank image: nothing surrounded by air
    image = sitk.GetImageFromArray(values)
    not_padding = sitk.GetImageFromArray((values > lowest).astype(np.uint8))
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.SetInsideValue(0)
    otsu.SetOutsideValue(1)
    otsu.SetMaskValue(1)
    bright = otsu.Execute(image, not_padding)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(bright), sortByObjectSize=True)
    body = sitk.GetArrayFromImage(sitk.BinaryFillhole(components == 1)) > 0
    if not body.any():
        return 1.0, 1.0
    touch = float(body[_ring(body.shape)].mean())
    # The content: everything clearly above the darkest level (padding, or air), largest piece.
    top = float(np.percentile(values, 99.5))
    content = sitk.GetImageFromArray((values > lowest + 0.05 * (top - lowest)).astype(np.uint8))
    pieces = sitk.RelabelComponent(sitk.ConnectedComponent(content), sortByObjectSize=True)
    frame = sitk.GetArrayFromImage(sitk.BinaryFillhole(pieces == 1)) > 0
    rows, cols = np.flatnonzero(frame.any(axis=1)), np.flatnonzero(frame.any(axis=0))
    extent = frame.sum() / float((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1))
    return touch, float(extent)


def looks_like_axial_slice(plane: np.ndarray) -> bool:
    """True when a 2D slice shows a body outline surrounded by air (an axial CT slice)."""
    touch, extent = body_measures(plane)
    return touch <= MAX_BORDER_TOUCH and extent <= MAX_BODY_EXTENT


def decide(setting: str, volume: Volume, geometry: SliceGeometry) -> tuple[str, str]:
    """``(modality, why)``: ``ct`` or ``xray``, and the reason in a few words.

    Arguments:
      setting: the user's choice: ``ct`` or ``xray`` are taken as given; ``auto`` goes by
        ``volume.modality`` (the DICOM Modality recorded), then the number of slices, then the
        content of the one slice.
      volume: the image (:class:`~.volumes.Volume`, voxels ``[K, J, I]``).
      geometry: how its slices are taken (the slice axis gives the number of slices).
    """
    if setting not in MODALITY_NAMES:
        raise SettingError(
            f"Unknown modality {setting!r}: choose one of {', '.join(MODALITY_NAMES)}."
        )
    if setting != "auto":
        return setting, "set by the user"
    recorded = from_dicom(volume.modality)
    if recorded is not None:
        return recorded, f"DICOM Modality {volume.modality.strip().upper()}"
    slices = geometry.view(volume.voxels)
    if len(slices) > 1:
        return "ct", f"a volume of {len(slices)} slices"
    if looks_like_axial_slice(slices[0]):
        return "ct", "a body outline surrounded by air"
    return "xray", "the image fills its frame"
