"""MRML nodes to arrays and back: volumes, segments, and the result's table and plot.

Works in the Slicer application and headless with slicer-core alike: the scene always comes from
``node.GetScene()`` and segment conversion uses the static ``vtkSlicerSegmentationsModuleLogic``
methods. Every function that creates helper nodes removes them before it returns. (Setting up a
headless scene and reading or writing files: :mod:`headless`.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .errors import InputError
from .imaging import luminance

#: Node reference role from the metrics table to its Dice-per-slice plot chart.
DICE_PLOT_REFERENCE = "SAMZeroShotDicePlot"
#: Table node attribute holding a one-line summary of the run.
SUMMARY_ATTRIBUTE = "SAMZeroShot.Summary"
#: Subject hierarchy attribute in which Slicer's DICOM loader keeps a series' Modality (0008,0060).
MODALITY_ATTRIBUTE = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMSeriesModalityAttributeName()


# -- node attributes ----------------------------------------------------------------------
def declared_modality(volume_node) -> str | None:
    """The DICOM Modality recorded for a volume, or None.

    Slicer's DICOM loader stores it as the attribute ``DICOM.Modality`` of the volume's own
    subject hierarchy item (the series item); volumes from other formats have none.
    """
    scene = volume_node.GetScene() if volume_node is not None else None
    hierarchy = (
        slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        if scene is not None
        else None
    )
    item = hierarchy.GetItemByDataNode(volume_node) if hierarchy is not None else 0
    if not item:
        return None
    return hierarchy.GetItemAttribute(item, MODALITY_ATTRIBUTE) or None


# -- volumes --------------------------------------------------------------------------------
def ijk_to_ras(volume_node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def volume_array(volume_node) -> np.ndarray:
    """A copy of the voxels as ``[K, J, I]``; RGB(A) volumes become luminance.

    Raises :class:`InputError` for anything that is not one 3D (or 2D) image.
    """
    if volume_node is None:
        raise InputError("No input volume: select a volume.")
    if not volume_node.IsA("vtkMRMLVolumeNode"):
        raise InputError(
            f"{volume_node.GetName()} is a {volume_node.GetClassName()}, not a volume."
        )
    if volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"{volume_node.GetName()} is a labelmap: select the image volume instead.")
    image = volume_node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"Volume {volume_node.GetName()} has no voxels.")
    dims = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    components = image.GetNumberOfScalarComponents()
    if components == 1:
        return scalars.reshape(dims[::-1]).copy()
    if components in (3, 4):
        return luminance(scalars.reshape(dims[::-1] + (components,))[..., :3])
    raise InputError(
        f"Volume {volume_node.GetName()} has {components} values per voxel (a 4D or multi-volume): "
        "extract one 3D frame first."
    )


# -- segmentations --------------------------------------------------------------------------
def segment_ids(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def resolve_segment_ids(segmentation_node, requested: Iterable[str] | None = None) -> list[str]:
    """Segment IDs for ``requested`` IDs or names (default: all); :class:`InputError` if any is
    unknown."""
    if segmentation_node is None:
        raise InputError(
            "No prompt segmentation: select a segmentation with the structures to segment."
        )
    if not segmentation_node.IsA("vtkMRMLSegmentationNode"):
        raise InputError(
            f"{segmentation_node.GetName()} is a {segmentation_node.GetClassName()}, not a"
            " segmentation."
        )
    existing = segment_ids(segmentation_node)
    if not existing:
        raise InputError(
            f"Segmentation {segmentation_node.GetName()} has no segments: draw the structures"
            " first."
        )
    if requested is None:
        return existing
    segmentation = segmentation_node.GetSegmentation()
    resolved = []
    for item in requested:
        if item in existing:
            resolved.append(item)
            continue
        by_name = segmentation.GetSegmentIdBySegmentName(item)
        if not by_name:
            names = ", ".join(segmentation.GetSegment(i).GetName() for i in existing)
            raise InputError(
                f"Segmentation {segmentation_node.GetName()} has no segment {item!r} "
                f"(it has: {names})."
            )
        resolved.append(by_name)
    if not resolved:
        raise InputError("No segments were selected.")
    return resolved


def _color_table_ids(scene) -> set:
    return {node.GetID() for node in scene.GetNodesByClass("vtkMRMLColorTableNode")}


def segment_masks(segmentation_node, ids: Sequence[str], volume_node) -> dict[str, np.ndarray]:
    """Each segment as a bool ``[K, J, I]`` array in the geometry of ``volume_node``.

    Segments are exported one at a time so that overlapping segments keep their overlap; Slicer
    resamples them when the segmentation's geometry differs from the volume's (transforms too).
    """
    scene = volume_node.GetScene()
    shape = volume_node.GetImageData().GetDimensions()[::-1]
    masks = {}
    for segment_id in ids:
        # Export also makes a colour table for the labelmap: note the existing ones to remove it.
        color_tables = _color_table_ids(scene)
        labelmap = scene.AddNewNodeByClass(
            "vtkMRMLLabelMapVolumeNode", f"SAMZeroShotTemp_{segment_id}"
        )
        try:
            id_array = vtk.vtkStringArray()
            id_array.InsertNextValue(segment_id)
            ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation_node, id_array, labelmap, volume_node
            )
            image = labelmap.GetImageData()
            if not ok or image is None:
                raise InputError(
                    f"Segment {segment_id!r} of {segmentation_node.GetName()} could not be "
                    f"resampled onto {volume_node.GetName()}."
                )
            array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(
                image.GetDimensions()[::-1]
            )
            if array.shape != tuple(shape):
                raise InputError(
                    f"Segment {segment_id!r} came out {array.shape}, the volume is {tuple(shape)}."
                )
            masks[segment_id] = array > 0
        finally:
            remove_nodes([labelmap])
            for node_id in _color_table_ids(scene) - color_tables:
                scene.RemoveNode(scene.GetNodeByID(node_id))
    return masks


def vtk_matrix(ijk_to_ras_array) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ijk_to_ras_array[r][c]))
    return matrix


def set_segment_mask(
    segmentation_node, segment_id: str, mask: np.ndarray, ijk_to_ras_array
) -> None:
    """Replace a segment's binary labelmap with ``mask`` (``[K, J, I]``) placed by
    ``ijk_to_ras``."""
    labelmap = slicer.vtkOrientedImageData()
    labelmap.SetDimensions(mask.shape[::-1])
    labelmap.SetImageToWorldMatrix(vtk_matrix(ijk_to_ras_array))
    labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())[:] = np.asarray(
        mask, np.uint8
    ).ravel()
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        labelmap,
        segmentation_node,
        segment_id,
        slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE,
    )


@dataclass(frozen=True)
class SegmentDescription:
    """What a new segment copies from a prompt segment: its name, colour and terminology."""

    name: str
    color: tuple[float, float, float]
    terminology: str


def segment_descriptions(segmentation_node, ids: Sequence[str]) -> dict[str, SegmentDescription]:
    """Name, colour and terminology of each segment, read once so that later steps need not touch
    the node."""
    segmentation = segmentation_node.GetSegmentation()
    descriptions = {}
    for segment_id in ids:
        segment = segmentation.GetSegment(segment_id)
        descriptions[segment_id] = SegmentDescription(
            segment.GetName(), tuple(segment.GetColor()), segment.GetTerminology()
        )
    return descriptions


def create_segmentation(
    volume_node,
    masks: dict[str, np.ndarray],
    descriptions: dict[str, SegmentDescription],
    name: str,
):
    """A new segmentation node on ``volume_node`` with one segment per mask.

    Segment IDs key ``masks``; names, colours and terminology come from ``descriptions``.
    """
    scene = volume_node.GetScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    try:
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        segmentation = node.GetSegmentation()
        matrix = ijk_to_ras(volume_node)
        for segment_id, mask in masks.items():
            description = descriptions[segment_id]
            segmentation.AddEmptySegment(segment_id, description.name, description.color)
            segmentation.GetSegment(segment_id).SetTerminology(description.terminology)
            set_segment_mask(node, segment_id, mask, matrix)
        parent = volume_node.GetParentTransformNode()
        if parent is not None:
            node.SetAndObserveTransformNodeID(parent.GetID())
    except Exception:
        remove_nodes([node])
        raise
    return node


# -- tables and plots -----------------------------------------------------------------------
def create_table(scene, records: Sequence[dict], name: str, columns: Sequence[str]):
    """A ``vtkMRMLTableNode`` with one row per record; numbers become double columns."""
    arrays = []
    for column in columns:
        values = [record.get(column) for record in records]
        numeric = all(
            value is None or isinstance(value, (int, float, np.integer, np.floating))
            for value in values
        )
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(column)
        array.SetNumberOfValues(len(records))
        for row, value in enumerate(values):
            if numeric:
                array.SetValue(row, float("nan") if value is None else float(value))
            else:
                array.SetValue(row, "" if value is None else str(value))
        arrays.append(array)
    # The node is added only once its columns are ready: a bad value leaves nothing in the scene.
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    for array in arrays:
        node.GetTable().AddColumn(array)
    node.Modified()
    return node


def create_dice_plot(
    scene,
    series_columns: dict[str, np.ndarray],
    slices: np.ndarray,
    name: str,
    colors: dict[str, tuple[float, float, float]],
    created: list,
):
    """A plot chart of Dice per slice (one line per column) over its own small table.

    Every node made is appended to ``created`` as soon as it exists, so the caller can remove
    them all if anything fails.
    """
    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} data")
    created.append(table_node)
    for column, values in {"slice": slices, **series_columns}.items():
        array = vtk.vtkDoubleArray()
        array.SetName(column)
        for value in values:
            array.InsertNextValue(float(value))
        table_node.GetTable().AddColumn(array)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    created.append(chart)
    chart.SetTitle(name)
    chart.SetXAxisTitle("slice")
    chart.SetYAxisTitle("Dice")
    for column in series_columns:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name}: {column}")
        created.append(series)
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName("slice")
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        if column in colors:
            series.SetColor(*colors[column])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def remove_nodes(nodes: Iterable) -> None:
    """Remove nodes (and their display/storage nodes) from their scene, ignoring ones already
    gone."""
    for node in nodes:
        scene = node.GetScene() if node is not None else None
        if scene is None:
            continue
        if node.IsA("vtkMRMLDisplayableNode"):
            for index in range(node.GetNumberOfDisplayNodes()):
                display = node.GetNthDisplayNode(index)
                if display is not None and display.GetScene() is scene:
                    scene.RemoveNode(display)
        if node.IsA("vtkMRMLStorableNode"):
            for index in range(node.GetNumberOfStorageNodes()):
                storage = node.GetNthStorageNode(index)
                if storage is not None and storage.GetScene() is scene:
                    scene.RemoveNode(storage)
        scene.RemoveNode(node)


@contextlib.contextmanager
def removed_on_failure(created: list):
    """Collect nodes in ``created``; if the block raises (or is cancelled), remove them all."""
    try:
        yield created
    except BaseException:
        remove_nodes(reversed(created))
        raise
