"""Where a run's output nodes go in the scene's subject hierarchy.

The output segmentation and metrics table sit beside the input volume, under its parent item (for
DICOM data the volume's study), where the user looks for them; the nodes that only feed the Dice
plot (its data table, chart and series) share one folder there instead of filling the tree.
"""

from __future__ import annotations

from collections.abc import Sequence

import slicer


def unique_name(scene, name: str) -> str:
    """``name``, or ``name_1``, ``name_2``, ... when a node of the scene has it already."""
    return scene.GenerateUniqueName(name)


def place_outputs(volume_node, outputs: Sequence, helpers: Sequence, folder_name: str):
    """Put ``outputs`` under ``volume_node``'s parent item and ``helpers`` in a new folder there.

    Returns the folder's item ID (0 when the scene has no subject hierarchy). Nodes already
    placed elsewhere by the caller are moved.
    """
    scene = volume_node.GetScene()
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None:
        return 0
    volume_item = hierarchy.GetItemByDataNode(volume_node)
    parent = hierarchy.GetItemParent(volume_item) if volume_item else hierarchy.GetSceneItemID()
    for node in outputs:
        _move(hierarchy, node, parent)
    if not helpers:
        return 0
    folder = hierarchy.CreateFolderItem(parent, unique_name(scene, folder_name))
    try:
        for node in helpers:
            _move(hierarchy, node, folder)
    except BaseException:
        # The caller removes the nodes; the folder goes with them, not left empty.
        hierarchy.RemoveItem(folder, False, False)
        raise
    return folder


def _move(hierarchy, node, parent: int) -> None:
    item = hierarchy.GetItemByDataNode(node)
    if not item:
        item = hierarchy.CreateItem(parent, node)
    hierarchy.SetItemParent(item, parent)
