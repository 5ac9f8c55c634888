"""A headless MRML scene and the files it reads and writes.

Outside Slicer, :func:`new_scene` gives a scene with the module logics that Slicer's readers
need; inside Slicer the application's own scene and logics are used instead. Loading and writing
go through Slicer's own readers and storage nodes, so files open in Slicer as they are.
"""

from __future__ import annotations

import contextlib
import errno

import numpy as np
import slicer
import vtk

from .errors import InputError


def new_scene():
    """A scene with the application, Colors, Volumes, Segmentations, Tables and Data logics.

    Returns ``(scene, application_logic)``; the module logics are kept alive as an attribute
    of the application logic. (Inside Slicer, use ``slicer.mrmlScene`` instead.)
    """
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app.SetModuleLogic("Colors", colors)
    logics = {}
    for name, cls in (
        ("Volumes", slicer.vtkSlicerVolumesLogic),
        ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
        ("Tables", slicer.vtkSlicerTablesLogic),
        ("Data", slicer.vtkSlicerDataModuleLogic),
    ):
        logic = cls()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        logics[name] = logic
    app.samzeroshot_logics = logics  # VTK keeps no Python reference to them
    return scene, app


@contextlib.contextmanager
def vtk_errors_silenced():
    """VTK's own error text off: a reader that fails prints pages of it, and we report the
    failure."""
    previous = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()
    try:
        yield
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(previous)


def load_volume(app, path, name: str | None = None):
    """Load an image file as a volume node (raises :class:`InputError` naming the file)."""
    import os

    logic = app.samzeroshot_logics["Volumes"]
    name = name or os.path.basename(str(path)).split(".")[0]
    with vtk_errors_silenced():
        node = logic.AddArchetypeVolume(str(path), name, 0)
    if node is None or node.GetImageData() is None:
        raise InputError(f"{path}: not a readable volume.")
    return node


# A labelmap file with more labels than this is an image given by mistake (a CT read as labels
# has thousands); the largest anatomical label sets (e.g. TotalSegmentator's 117) stay well below.
MAX_SEGMENTS_IN_FILE = 255
# Image formats whose damage is checked before Slicer reads them (see load_segmentation).
_IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def _label_file_problem(path) -> str | None:
    """Why the image file ``path`` cannot be read as labels, or None when it can."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        return f"not a readable segmentation ({str(error).strip().splitlines()[-1].strip()[:120]})."
    if not str(path).lower().endswith(".seg.nrrd"):  # a plain labelmap: one segment per value
        count = len(np.unique(sitk.GetArrayViewFromImage(image))) - 1
        if count > MAX_SEGMENTS_IN_FILE:
            return (
                f"holds {count} different labels, more than a segmentation has (at most "
                f"{MAX_SEGMENTS_IN_FILE}): is it an image rather than a segmentation?"
            )
    return None


def load_segmentation(app, path):
    """Load a ``.seg.nrrd`` (or labelmap) file as a segmentation node."""
    logic = app.samzeroshot_logics["Segmentations"]
    # Slicer's segmentation reader aborts the whole process on a truncated .seg.nrrd (an
    # uncaught ITK exception), so image files are read once with SimpleITK first.
    if str(path).lower().endswith(_IMAGE_SUFFIXES):
        problem = _label_file_problem(path)
        if problem:
            raise InputError(f"{path}: {problem}")
    with vtk_errors_silenced():
        node = logic.LoadSegmentationFromFile(str(path), False)
    if node is None:
        raise InputError(f"{path}: not a readable segmentation.")
    return node


def write_segmentation(segmentation_node, path) -> None:
    """Write a segmentation node as ``.seg.nrrd`` with Slicer's own storage node."""
    # Made here rather than by CreateDefaultStorageNode(), whose new reference Python would leak.
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    if not storage.WriteData(segmentation_node):
        raise OSError(
            errno.EIO, "Slicer's segmentation writer failed: is the disk full?", str(path)
        )


def write_table_tsv(table_node, path) -> None:
    """Write a table node as tab-separated text (header row, then one line per row)."""
    import csv

    table = table_node.GetTable()
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(columns)
        for row in range(table.GetNumberOfRows()):
            writer.writerow([table.GetValue(row, c).ToString() for c in range(len(columns))])
