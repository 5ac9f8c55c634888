"""The shared logic on real MRML nodes: CTChest4 and its lung segments made in Slicer."""

import hashlib
import re

import builders
import numpy as np
import pytest

from SAMZeroShotLib import mrml_io, segment_nodes
from SAMZeroShotLib.errors import Cancelled, InputError
from SAMZeroShotLib.parameters import Parameters

LUNGS = ("right lung", "left lung")
# Volume Dice per lung on CTChest4 (3 mm x 10 mm voxels; the model misses the anterior tip of the
# coarse right-lung reference), measured: box prompts 0.785 / 0.857 (right / left), flip4+crop
# 0.810 / 0.839, the default (adaptive) 0.792 / 0.861.
MIN_VOLUME_DICE = {"right lung": 0.78, "left lung": 0.80}


def fingerprint(scene, volume, segmentation):
    """Hashes of the volume's voxels and of every segment's mask, names and colours."""
    ids = mrml_io.segment_ids(segmentation)
    masks = mrml_io.segment_masks(segmentation, ids, volume)
    digest = hashlib.sha256(mrml_io.volume_array(volume).tobytes())
    for segment_id in ids:
        segment = segmentation.GetSegmentation().GetSegment(segment_id)
        digest.update(f"{segment_id}|{segment.GetName()}|{segment.GetColor()}".encode())
        digest.update(np.packbits(masks[segment_id]).tobytes())
    return digest.hexdigest(), mrml_io.ijk_to_ras(volume).tobytes()


def table_rows(table_node):
    table = table_node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    return [
        {name: table.GetValue(r, c).ToString() for c, name in enumerate(names)}
        for r in range(table.GetNumberOfRows())
    ]


def volume_dice(table_node, segment):
    [row] = [
        r for r in table_rows(table_node) if r["scope"] == "volume" and r["segment"] == segment
    ]
    return float(row["dice"])


@pytest.fixture
def lungs(ctchest):
    scene, volume, segmentation, ids = ctchest
    return scene, volume, segmentation, [ids[name] for name in LUNGS]


def test_the_default_whole_volume_run_segments_both_lungs(default_whole_volume_run):
    """Runs first: its setup line in ``--durations`` is the default run's cost, once per session."""
    volume_dice = dict(
        re.findall(
            r"(right lung|left lung) (\d\.\d+)", default_whole_volume_run.split("volume Dice:")[1]
        )
    )
    # Measured: right lung 0.792, left lung 0.861 (built-in model, adaptive, CTChest4; flip4+crop
    # gave 0.810 / 0.839).
    assert float(volume_dice["right lung"]) > 0.75 and float(volume_dice["left lung"]) > 0.75


def test_ctchest4_lungs_with_inputs_unchanged(default_whole_volume_run, lungs, engines):
    scene, volume, segmentation, lung_ids = lungs
    before = fingerprint(scene, volume, segmentation)
    output, table = segment_nodes.process(volume, segmentation, lung_ids, engines=engines)
    assert fingerprint(scene, volume, segmentation) == before, "an input node was modified"

    assert output is not segmentation and output.GetName() == "CTChest4 SAM segmentation"
    source = segmentation.GetSegmentation()
    result = output.GetSegmentation()
    assert mrml_io.segment_ids(output) == lung_ids
    for segment_id in lung_ids:
        assert result.GetSegment(segment_id).GetName() == source.GetSegment(segment_id).GetName()
        assert result.GetSegment(segment_id).GetColor() == source.GetSegment(segment_id).GetColor()
        assert (
            result.GetSegment(segment_id).GetTerminology()
            == source.GetSegment(segment_id).GetTerminology()
        )
    assert output.GetDisplayNode() is not None and output.GetDisplayNode().GetVisibility()
    for name in LUNGS:
        assert volume_dice(table, name) > MIN_VOLUME_DICE[name], name

    rows = table_rows(table)
    assert {
        "dice",
        "jaccard",
        "hd95_mm",
        "mean_surface_distance_mm",
        "reference_ml",
        "predicted_ml",
    } <= set(rows[0])
    assert any(r["scope"] == "slice" and r["segment"] == "all segments" for r in rows)
    union = next(r for r in rows if r["scope"] == "volume" and r["segment"] == "all segments")
    assert 0 < float(union["hd95_mm"]) < 50 and float(union["reference_ml"]) > 1000
    assert {r["model"] for r in rows} == {"litemedsam"} and {r["strategy"] for r in rows} == {
        "adaptive"
    }
    chart = table.GetNodeReference(mrml_io.DICE_PLOT_REFERENCE)
    assert chart is not None and chart.GetNumberOfPlotSeriesNodes() == 3
    assert table.GetAttribute(mrml_io.SUMMARY_ATTRIBUTE).startswith("Mean Dice")


def masks_of(segmentation_node, volume_node):
    masks = mrml_io.segment_masks(
        segmentation_node, mrml_io.segment_ids(segmentation_node), volume_node
    )
    return [masks[i] for i in mrml_io.segment_ids(segmentation_node)]


# Tests of geometry and bookkeeping, not accuracy: one box per lung is four times cheaper than the
# default's four flipped views and exercises the same paths.
PLUMBING = Parameters(strategy="box")


def test_a_resliced_copy_of_the_ct_gives_the_same_masks_once_mapped_back(lungs, engines):
    scene, volume, segmentation, lung_ids = lungs
    output, _ = segment_nodes.process(
        volume, segmentation, lung_ids, parameters=PLUMBING, engines=engines
    )
    expected = masks_of(output, volume)

    # The same voxels stored as a sagittal acquisition: array axes permuted, one reversed, and the
    # IJK-to-RAS matrix rewritten so that every voxel keeps its place in the patient.
    voxels, matrix = mrml_io.volume_array(volume), mrml_io.ijk_to_ras(volume)
    n_k = voxels.shape[0]
    permuted = np.ascontiguousarray(np.flip(np.transpose(voxels, (2, 0, 1)), axis=1))
    resliced = np.eye(4)
    resliced[:3, 0], resliced[:3, 1], resliced[:3, 2] = matrix[:3, 1], -matrix[:3, 2], matrix[:3, 0]
    resliced[:3, 3] = matrix[:3, 3] + matrix[:3, 2] * (n_k - 1)
    sagittal = builders.add_volume(scene, permuted, resliced, "sagittal copy")
    output2, _ = segment_nodes.process(
        sagittal, segmentation, lung_ids, parameters=PLUMBING, engines=engines
    )  # prompts resampled by Slicer
    for mask, reference in zip(masks_of(output2, sagittal), expected, strict=True):
        back = np.transpose(np.flip(mask, axis=1), (1, 2, 0))
        np.testing.assert_array_equal(back, reference)

    # An oblique acquisition: the same voxels and prompts, tilted 12 degrees in the patient.
    angle = np.radians(12)
    tilt = np.eye(4)
    tilt[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    oblique_matrix = tilt @ matrix
    oblique = builders.add_volume(scene, voxels, oblique_matrix, "oblique copy")
    prompts = mrml_io.segment_masks(segmentation, lung_ids, volume)
    tilted = builders.add_segmentation(
        scene,
        {name: prompts[i] for name, i in zip(LUNGS, lung_ids, strict=True)},
        oblique_matrix,
        "oblique prompts",
    )
    output3, _ = segment_nodes.process(oblique, tilted, parameters=PLUMBING, engines=engines)
    for mask, reference in zip(masks_of(output3, oblique), expected, strict=True):
        np.testing.assert_array_equal(mask, reference)


def test_reference_on_another_grid_is_resampled_and_matched_by_name(lungs, engines):
    scene, volume, segmentation, lung_ids = lungs
    _, oracle = segment_nodes.process(
        volume, segmentation, lung_ids, parameters=PLUMBING, engines=engines
    )
    # The reference lungs on a grid twice as fine in-plane and shifted by half a voxel.
    prompts = mrml_io.segment_masks(segmentation, lung_ids, volume)
    matrix = mrml_io.ijk_to_ras(volume)
    fine = matrix.copy()
    fine[:3, 0:2] /= 2.0
    fine[:3, 3] -= (matrix[:3, 0] + matrix[:3, 1]) / 4.0
    reference = builders.add_segmentation(
        scene,
        {
            name: prompts[i].repeat(2, axis=1).repeat(2, axis=2)
            for name, i in zip(reversed(LUNGS), reversed(lung_ids), strict=True)
        },
        fine,
        "fine reference",
    )
    _, table = segment_nodes.process(
        volume,
        segmentation,
        lung_ids,
        reference_node=reference,
        parameters=PLUMBING,
        engines=engines,
    )
    for name in LUNGS:
        assert volume_dice(table, name) == pytest.approx(volume_dice(oracle, name), abs=0.02)


def test_a_single_slice_chest_radiograph(scene_app, lungs, radiograph_from_ct, engines):
    scene, volume, segmentation, lung_ids = lungs
    masks = mrml_io.segment_masks(segmentation, lung_ids, volume)
    image, labels, spacing = radiograph_from_ct(
        mrml_io.volume_array(volume),
        masks[lung_ids[0]],
        masks[lung_ids[1]],
        mrml_io.ijk_to_ras(volume),
    )
    # A coronal single-slice volume: rows superior to inferior, columns patient right to left.
    matrix = np.array([[-spacing, 0, 0, 0], [0, 0, 1.0, 0], [0, -spacing, 0, 0], [0, 0, 0, 1.0]])
    xray = builders.add_volume(scene, image[None], matrix, "radiograph")
    prompts = builders.add_segmentation(
        scene,
        {"right lung": labels[None] == 1, "left lung": labels[None] == 2},
        matrix,
        "radiograph lungs",
    )
    output, table = segment_nodes.process(xray, prompts, engines=engines)
    rows = table_rows(table)
    assert {r["slice"] for r in rows if r["scope"] == "slice"} == {"0"}
    assert all(m.shape == (1,) + image.shape for m in masks_of(output, xray))
    # Measured with the defaults (adaptive): left 0.772; box prompts 0.837 / 0.771 (right / left),
    # flip4+crop 0.843 / 0.828.
    for name in LUNGS:
        assert volume_dice(table, name) > 0.74, name


def test_rgb_volume_is_read_as_luminance(scene_app):
    scene, app = scene_app
    rgb = np.zeros((1, 4, 5, 3), np.uint8)
    rgb[..., 0] = 100
    node = builders.add_volume(scene, rgb, np.eye(4), "colour")
    np.testing.assert_allclose(mrml_io.volume_array(node), 29.9, rtol=1e-5)


def test_cancel_halfway_leaves_the_scene_as_it_was(lungs, engines):
    scene, volume, segmentation, lung_ids = lungs
    engines.get(Parameters())  # loading the model is not what is being cancelled
    count = scene.GetNumberOfNodes()
    progress = []
    with pytest.raises(Cancelled):
        segment_nodes.process(
            volume,
            segmentation,
            lung_ids,
            parameters=Parameters(embedding_cache=False),
            progress=lambda fraction, message: progress.append(fraction),
            cancel=lambda: any(0 < f < 1 for f in progress),
            engines=engines,
        )
    assert any(0 < f < 1 for f in progress), "cancelled before any work was done"
    assert scene.GetNumberOfNodes() == count


def test_a_failure_while_writing_results_removes_what_was_made(lungs, monkeypatch, engines):
    scene, volume, segmentation, lung_ids = lungs
    count = scene.GetNumberOfNodes()

    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(mrml_io, "create_dice_plot", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        segment_nodes.process(volume, segmentation, lung_ids, parameters=PLUMBING, engines=engines)
    assert scene.GetNumberOfNodes() == count


def test_bad_inputs_give_clear_errors(lungs, engines):
    scene, volume, segmentation, lung_ids = lungs
    with pytest.raises(InputError, match="No input volume"):
        segment_nodes.process(None, segmentation, engines=engines)
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    with pytest.raises(InputError, match="has no segments"):
        segment_nodes.process(volume, empty, engines=engines)
    with pytest.raises(InputError, match="has no segment 'spleen'.*right lung"):
        segment_nodes.process(volume, segmentation, ["spleen"], engines=engines)
    four_d = builders.add_volume(scene, np.zeros((3, 4, 5, 6), np.float32), np.eye(4), "4D")
    with pytest.raises(InputError, match="6 values per voxel"):
        segment_nodes.process(four_d, segmentation, lung_ids, engines=engines)
    far = builders.add_segmentation(
        scene,
        {"elsewhere": np.ones((2, 2, 2), bool)},
        np.diag([1, 1, 1, 1.0]) + np.array([[0, 0, 0, 5000]] * 3 + [[0, 0, 0, 0]]),
        "far",
    )
    with pytest.raises(InputError, match="do not overlap"):
        segment_nodes.process(volume, far, engines=engines)
    with pytest.raises(ValueError, match="Unknown strategy"):
        segment_nodes.process(
            volume, segmentation, lung_ids, parameters=Parameters(strategy="magic"), engines=engines
        )


def test_an_input_removed_while_the_model_runs_leaves_nothing_behind(lungs, engines):
    # The Slicer module keeps its event loop going while `compute` runs the model: a user may
    # delete an input meanwhile. Nothing may be created from it, and nothing read from it later.
    scene, volume, segmentation, lung_ids = lungs
    count = scene.GetNumberOfNodes()

    def compute(work):
        scene.RemoveNode(segmentation)
        return work()

    with pytest.raises(InputError, match="left the scene during the run"):
        segment_nodes.process(
            volume, segmentation, lung_ids, parameters=PLUMBING, compute=compute, engines=engines
        )
    assert (
        scene.GetNumberOfNodes() < count
    )  # the segmentation and its display/storage nodes are gone
    assert scene.GetFirstNodeByName("CTChest4 SAM segmentation") is None
    assert scene.GetFirstNodeByName("CTChest4 SAM metrics") is None


def test_a_constant_volume_is_accepted_with_a_warning(scene_app, ctchest):
    scene, volume, segmentation, ids = ctchest
    flat = builders.add_volume(
        scene,
        np.full(mrml_io.volume_array(volume).shape, -1000, np.int16),
        mrml_io.ijk_to_ras(volume),
        "flat",
    )
    lines = []
    segment_nodes.read_inputs(flat, segmentation, [ids["right lung"]], log=lines.append)
    assert any(
        "every voxel has the value -1000" in line and "the prompt alone decides the mask" in line
        for line in lines
    ), lines


def test_nonfinite_voxels_are_refused_or_filled_and_the_scene_is_left_as_it_was(lungs, engines):
    scene, volume, segmentation, lung_ids = lungs
    array = mrml_io.volume_array(volume).astype(np.float32)
    array[4, 0, 0] = np.inf
    array[9, 1:3, 0] = np.nan
    broken = builders.add_volume(scene, array, mrml_io.ijk_to_ras(volume), "broken")
    before = fingerprint(scene, broken, segmentation)
    count = scene.GetNumberOfNodes()
    with pytest.raises(
        InputError, match=r"Volume broken: 3 voxels are NaN or infinite \(slices 4, 9\)"
    ):
        segment_nodes.process(broken, segmentation, lung_ids, engines=engines)
    assert scene.GetNumberOfNodes() == count
    lines = []
    inputs = segment_nodes.read_inputs(
        broken, segmentation, lung_ids, parameters=Parameters(fill_nonfinite=True), log=lines.append
    )
    assert np.isfinite(inputs.volume.voxels).all() and scene.GetNumberOfNodes() == count
    assert any("3 NaN or infinite voxels (slices 4, 9) were replaced" in line for line in lines), (
        lines
    )
    assert fingerprint(scene, broken, segmentation) == before, (
        "the volume node's voxels were modified"
    )
