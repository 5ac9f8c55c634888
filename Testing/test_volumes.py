"""A volume from a MRML node and from a file: the same voxels and IJK-to-RAS for the same image,
the modality each records, and neither input changed."""

import builders
import numpy as np
import pytest
import SimpleITK as sitk

from SAMZeroShotLib import headless, mrml_io, volumes
from SAMZeroShotLib.errors import CaseError


def rotation(axis: int, degrees: float) -> np.ndarray:
    """The 3 x 3 rotation by ``degrees`` about coordinate axis ``axis``."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    first, second = [a for a in range(3) if a != axis]
    matrix = np.eye(3)
    matrix[first, first], matrix[first, second] = c, -s
    matrix[second, first], matrix[second, second] = s, c
    return matrix


#: An oblique, coronal-like acquisition: no axis of the image lies along an axis of the patient.
DIRECTION = rotation(2, 30.0) @ rotation(0, 90.0)
SPACING, ORIGIN = (0.7, 0.8, 2.5), (10.0, -20.0, 30.0)


@pytest.fixture
def oblique_file(tmp_path):
    """A 5 x 6 x 7 (I x J x K) NRRD with a non-identity direction, recording modality CT; its
    voxels ``[K, J, I]``."""
    voxels = np.arange(7 * 6 * 5, dtype=np.int16).reshape(7, 6, 5) - 100
    image = sitk.GetImageFromArray(voxels)
    image.SetDirection(DIRECTION.ravel().tolist())
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetMetaData("modality", "CT")
    path = tmp_path / "oblique.nrrd"
    sitk.WriteImage(image, str(path))
    return path, voxels


def node_state(scene, node):
    """What a volume node and its scene hold: voxels, matrix, recorded modality, node count."""
    return (
        mrml_io.volume_array(node).tobytes(),
        mrml_io.ijk_to_ras(node).tobytes(),
        mrml_io.declared_modality(node),
        scene.GetNumberOfNodes(),
    )


def test_a_file_is_read_in_ras_with_its_voxels_and_recorded_modality(oblique_file, digests):
    path, voxels = oblique_file
    before = digests(path)
    volume = volumes.read_volume(path)
    np.testing.assert_array_equal(volume.voxels, voxels)
    assert volume.voxels.dtype == np.float32 and volume.voxels.shape == (7, 6, 5)
    assert volume.modality == "CT" and volume.name == "oblique"
    # Each voxel lands where ITK puts it (in LPS), with the first two axes negated (RAS).
    image = sitk.ReadImage(str(path))
    for ijk in [(0, 0, 0), (4, 0, 0), (0, 5, 0), (0, 0, 6), (3, 2, 5)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        ras = volume.ijk_to_ras @ np.array([*ijk, 1.0])
        np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2], 1.0], atol=1e-9)
    assert volumes.recorded_modality(path) == "CT"
    assert digests(path) == before


def test_a_node_and_its_file_give_the_same_voxels_and_geometry(scene_app, oblique_file, digests):
    scene, app = scene_app
    path, _ = oblique_file
    before = digests(path)
    node = headless.load_volume(app, path)
    state = node_state(scene, node)
    from_node, from_file = volumes.volume_from_node(node), volumes.read_volume(path)
    np.testing.assert_array_equal(from_node.voxels, from_file.voxels)
    np.testing.assert_allclose(from_node.ijk_to_ras, from_file.ijk_to_ras, atol=1e-6)
    assert from_node.name == from_file.name == "oblique"
    # Slicer's file reader records no modality; the file's header does.
    assert from_node.modality is None and from_file.modality == "CT"
    assert node_state(scene, node) == state and digests(path) == before


def test_a_node_gives_a_copy_of_its_voxels_and_the_modality_slicer_recorded(ctchest):
    scene, node, _, _ = ctchest
    builders.record_modality(node, "CT")  # where Slicer's DICOM loader keeps it
    state = node_state(scene, node)
    volume = volumes.volume_from_node(node)
    assert volume.modality == "CT" and volume.name == "CTChest4"
    assert volume.voxels.shape == (34, 128, 128)
    np.testing.assert_array_equal(volume.ijk_to_ras, mrml_io.ijk_to_ras(node))
    volume.voxels[:] = 0  # a copy: the node keeps its voxels
    assert node_state(scene, node) == state


def test_a_2d_image_is_one_slice_and_colour_becomes_luminance(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 50, 200
    path = tmp_path / "colour.png"
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(path))
    volume = volumes.read_volume(path)
    assert volume.voxels.shape == (1, 4, 6) and volume.modality is None
    np.testing.assert_allclose(volume.voxels, 100 * 0.299 + 50 * 0.587 + 200 * 0.114, rtol=1e-6)
    np.testing.assert_allclose(volume.ijk_to_ras[:3, :3], np.diag([-1.0, -1.0, 1.0]))


def test_a_dicom_file_records_its_modality_and_monochrome1_is_inverted():
    from pydicom.data import get_testdata_file

    radiograph = volumes.read_volume(get_testdata_file("RG1_UNCI.dcm"))
    assert radiograph.modality == "CR" and radiograph.voxels.shape[0] == 1
    raw = sitk.GetArrayFromImage(sitk.ReadImage(get_testdata_file("RG1_UNCI.dcm")))
    np.testing.assert_array_equal(radiograph.voxels, raw.max() - raw.astype(np.float32))
    assert volumes.read_volume(get_testdata_file("CT_small.dcm")).modality == "CT"


def test_an_unreadable_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "broken.nrrd"
    path.write_bytes(b"not an image")
    with pytest.raises(CaseError, match="broken.nrrd: not a readable image"):
        volumes.read_volume(path)
    assert volumes.recorded_modality(path) is None
