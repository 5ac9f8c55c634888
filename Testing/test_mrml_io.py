"""Nodes to arrays and back: the lung segments line up with the CT, reading them adds nothing."""

import numpy as np

from SAMZeroShotLib import mrml_io


def test_lung_segments_are_aligned_with_the_voxels(ctchest):
    scene, volume, segmentation, ids = ctchest
    masks = mrml_io.segment_masks(segmentation, [ids["right lung"], ids["left lung"]], volume)
    voxels = mrml_io.volume_array(volume)
    ijk_to_ras = mrml_io.ijk_to_ras(volume)
    right, left = masks[ids["right lung"]], masks[ids["left lung"]]
    for mask in (right, left):
        assert mask.shape == voxels.shape
        assert mask.sum() > 10_000, "a lung mask is (nearly) empty"
        # Lungs hold air: if the mask were shifted or flipped it would cover soft tissue.
        assert np.median(voxels[mask]) < -700
    assert not (right & left).any(), "the two lungs overlap"

    def centre_ras(mask):
        k, j, i = np.nonzero(mask)
        return (ijk_to_ras @ np.array([i.mean(), j.mean(), k.mean(), 1.0]))[:3]

    # RAS: the right lung lies towards +R, the left towards -R.
    assert centre_ras(right)[0] > centre_ras(left)[0] + 50
    # Segment export added no nodes that stay behind.
    assert scene.GetFirstNodeByClass("vtkMRMLLabelMapVolumeNode") is None


def test_reading_segments_leaves_the_scene_as_it_was(ctchest):
    scene, volume, segmentation, ids = ctchest
    before = scene.GetNumberOfNodes()
    mrml_io.segment_masks(segmentation, list(ids.values()), volume)
    assert scene.GetNumberOfNodes() == before
