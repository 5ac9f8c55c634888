"""Test-only builders: volume and segmentation nodes made from arrays (Slicer's way of adding
nodes, as a user's script would), for tests that need inputs other than the shipped files."""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from SAMZeroShotLib.mrml_io import MODALITY_ATTRIBUTE, set_segment_mask, vtk_matrix


def add_volume(scene, array: np.ndarray, ijk_to_ras_array, name: str):
    """A scalar volume node holding a copy of ``array`` (``[K, J, I]``, or ``[K, J, I, C]``)."""
    node = scene.AddNewNodeByClass(
        "vtkMRMLScalarVolumeNode" if array.ndim == 3 else "vtkMRMLVectorVolumeNode", name
    )
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[:3][::-1])
    components = 1 if array.ndim == 3 else array.shape[3]
    vtk_array = numpy_support.numpy_to_vtk(
        np.ascontiguousarray(array).reshape(-1, components), deep=True
    )
    image.GetPointData().SetScalars(vtk_array)
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras_array))
    node.CreateDefaultDisplayNodes()
    return node


def add_segmentation(
    scene,
    masks: dict[str, np.ndarray],
    ijk_to_ras_array,
    name: str,
    colors: dict[str, tuple[float, float, float]] | None = None,
):
    """A segmentation node with one segment per named mask (``[K, J, I]`` placed by the matrix)."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    for segment_name, mask in masks.items():
        color = (colors or {}).get(segment_name, (0.5, 0.5, 0.5))
        segment_id = node.GetSegmentation().AddEmptySegment("", segment_name, color)
        set_segment_mask(node, segment_id, mask, ijk_to_ras_array)
    return node


def record_modality(volume_node, value: str) -> None:
    """Record a DICOM Modality for a volume where Slicer's DICOM loader does: the attribute
    ``DICOM.Modality`` of the volume's subject hierarchy item."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(volume_node.GetScene())
    item = hierarchy.GetItemByDataNode(volume_node) or hierarchy.CreateItem(
        hierarchy.GetSceneItemID(), volume_node
    )
    hierarchy.SetItemAttribute(item, MODALITY_ATTRIBUTE, value)
