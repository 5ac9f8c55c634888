"""A volume as the pipeline takes it, from a MRML node or from a file.

:class:`Volume` holds the voxels in Slicer's ``[K, J, I]`` order, the IJK-to-RAS matrix, the
modality the node or file records (a DICOM Modality value such as ``CT`` or ``CR``, or None) and a
name. :func:`volume_from_node` reads one from a scalar volume node, :func:`read_volume` from an
image file with SimpleITK (LPS turned into RAS once, here). Whether it is a CT or a radiograph is
decided from it by :func:`~.modality.decide`. Neither constructor modifies its node or file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CaseError
from .imaging import luminance

#: The image files a cohort reads (a case's image is found by one of these endings).
IMAGE_EXTENSIONS = (".nii.gz", ".png", ".jpg", ".jpeg", ".dcm", ".nrrd", ".nii")

# LPS (ITK, DICOM) to RAS (Slicer): flip the first two axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
#: The DICOM Modality tag (0008,0060), as SimpleITK names it.
_DICOM_MODALITY = "0008|0060"
#: The NRRD header field some writers record the modality in (``modality:=CT``).
_NRRD_MODALITY = "modality"


@dataclass(frozen=True, eq=False)
class Volume:
    """One image volume.

    Attributes:
      voxels: ``[K, J, I]`` array (a 2D image is one slice, ``[1, J, I]``); a node's stored type,
        float32 from a file; colour is already luminance.
      ijk_to_ras: ``4 x 4`` array from voxel indices ``(i, j, k, 1)`` to RAS millimetres.
      modality: the modality as recorded (DICOM Modality value, e.g. ``CT``, ``CR``, ``DX``), None
        when nothing records one. :func:`~.modality.decide` says what it means.
      name: the node's name, or the file's name without its extension.
    """

    voxels: np.ndarray
    ijk_to_ras: np.ndarray
    modality: str | None = None
    name: str = ""


def file_stem(path: Path, extensions: Sequence[str]) -> str | None:
    """The name without its (possibly double) extension, or None if it has none of
    ``extensions``."""
    lower = path.name.lower()
    for extension in extensions:
        if lower.endswith(extension):
            return path.name[: -len(extension)]
    return None


def volume_from_node(node) -> Volume:
    """The volume of a scalar (or RGB) volume node, with the modality Slicer recorded for it.

    Arguments:
      node: a ``vtkMRMLScalarVolumeNode`` (or vector volume with 3 or 4 components), in a scene.
    Returns:
      a :class:`Volume` holding a copy of its voxels ``[K, J, I]``, its ``4 x 4`` IJK-to-RAS, the
      DICOM Modality of its subject hierarchy item (:func:`~.mrml_io.declared_modality`) and its
      name.
    Raises:
      InputError: ``node`` is not one 3D (or 2D) image.
    """
    from . import mrml_io

    voxels = mrml_io.volume_array(node)
    return Volume(voxels, mrml_io.ijk_to_ras(node), mrml_io.declared_modality(node), node.GetName())


def as_3d(image):
    """A 2D SimpleITK image as a one-slice 3D image (keeping spacing and origin); ValueError for
    any other dimension."""
    import SimpleITK as sitk

    if image.GetDimension() == 3:
        return image
    if image.GetDimension() != 2:
        raise ValueError(f"{image.GetDimension()}D images are not supported")
    return sitk.JoinSeries([image])


def _ijk_to_ras(image) -> np.ndarray:
    """IJK-to-RAS of a 3D SimpleITK image (whose geometry is in LPS)."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = _LPS_TO_RAS @ np.array(image.GetOrigin(), dtype=float)
    return matrix


def _metadata(reader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def _recorded(reader) -> str | None:
    """The modality a file's header records: DICOM Modality, else the NRRD ``modality`` field."""
    return _metadata(reader, _DICOM_MODALITY) or _metadata(reader, _NRRD_MODALITY) or None


def recorded_modality(path) -> str | None:
    """The modality an image file records (see :class:`Volume`), read from its header only; None
    when it records none or cannot be read."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return _recorded(reader)


def _last_line(error: Exception) -> str:
    return str(error).strip().splitlines()[-1][:120]


def read_volume(path) -> Volume:
    """An image file (NRRD, NIfTI, DICOM, PNG, JPEG, ...) as a :class:`Volume`.

    Arguments:
      path: the file; it is only read.
    Returns:
      voxels ``[K, J, I]`` float32 (``[1, J, I]`` for a 2D image; colour becomes luminance; DICOM
      MONOCHROME1 images, white = low values, are inverted so that air is dark as on a CT), the
      ``4 x 4`` IJK-to-RAS (the file's LPS geometry turned into RAS), the recorded modality
      (:func:`recorded_modality`) and the file's name without its extension.
    Raises:
      CaseError: the file is not one readable image.
    """
    import SimpleITK as sitk

    path = Path(path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        photometric, modality = _metadata(reader, "0028|0004"), _recorded(reader)
        image = reader.Execute()
    except RuntimeError as error:
        raise CaseError(path, f"not a readable image ({_last_line(error)})") from None
    components = image.GetNumberOfComponentsPerPixel()
    try:
        image = as_3d(image)
    except ValueError as error:
        raise CaseError(path, str(error)) from None
    array = sitk.GetArrayFromImage(image)
    if components == 1:
        array = array.astype(np.float32)
    elif components in (3, 4):
        array = luminance(array[..., :3])
    else:
        raise CaseError(
            path, f"{components} values per pixel (a 4D or multi-channel image); expected one image"
        )
    if photometric == "MONOCHROME1":
        array = array.max() - array
    name = file_stem(path, IMAGE_EXTENSIONS) or path.name.split(".")[0]
    return Volume(array, _ijk_to_ras(image), modality, name)
