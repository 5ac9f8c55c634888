"""Slice axis and windowing, including re-oriented and oblique volumes."""

import numpy as np
import pytest

from SAMZeroShotLib import imaging

# A typical CT stored from a DICOM series in LPS: IJK-to-RAS flips I and J.
CT_IJK_TO_RAS = np.array(
    [[-0.7, 0, 0, 180.0], [0, -0.7, 0, 180.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]]
)


def test_axial_slices_of_a_ct_come_out_in_radiological_orientation():
    geometry = imaging.slice_geometry(CT_IJK_TO_RAS, (40, 64, 64))
    assert geometry.axis == 0 and geometry.orientation == "axial"
    # I points to patient left (-R) and J to posterior (-A): already the display orientation.
    assert (geometry.flip_rows, geometry.flip_cols) == (False, False)
    assert geometry.pixel_spacing == pytest.approx((0.7, 0.7))
    assert geometry.slice_spacing == pytest.approx(2.5)


def test_a_permuted_sagittal_acquisition_gives_the_same_axial_slices():
    rng = np.random.default_rng(0)
    volume = rng.integers(-1000, 1000, size=(20, 30, 40)).astype(np.int16)
    axial = imaging.slice_geometry(CT_IJK_TO_RAS, volume.shape).view(volume)
    # Store the same voxels with the array axes permuted (slices now run left-right) and one axis
    # reversed; the IJK-to-RAS matrix describes the same physical voxels.
    permuted = np.flip(
        np.transpose(volume, (2, 0, 1)), axis=1
    )  # new [K, J, I] = old [I, K(reversed), J]
    n_k = volume.shape[0]
    matrix = np.eye(4)
    # new I = old J, new J = (n_k - 1) - old K, new K = old I
    old_columns = CT_IJK_TO_RAS[:3, :3]
    matrix[:3, 0] = old_columns[:, 1]
    matrix[:3, 1] = -old_columns[:, 2]
    matrix[:3, 2] = old_columns[:, 0]
    matrix[:3, 3] = CT_IJK_TO_RAS[:3, 3] + old_columns[:, 2] * (n_k - 1)
    geometry = imaging.slice_geometry(matrix, permuted.shape)
    assert geometry.orientation == "axial"
    # Same images; slice numbers follow the array's own index, which runs the other way here.
    np.testing.assert_array_equal(geometry.view(permuted)[::-1], axial)


def test_an_oblique_volume_still_takes_the_closest_axis():
    angle = np.radians(25)
    rotation = np.array(
        [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag([-0.7, -0.7, 2.5])
    geometry = imaging.slice_geometry(matrix, (40, 64, 64))
    assert geometry.axis == 0  # K is still closest to superior
    assert geometry.pixel_spacing == pytest.approx((0.7, 0.7))


def test_a_single_slice_volume_is_taken_as_its_own_slice():
    xray = np.diag([-0.14, -0.14, 1.0, 1.0])
    geometry = imaging.slice_geometry(xray, (1, 512, 400))
    assert geometry.axis == 0
    assert geometry.view(np.zeros((1, 512, 400))).shape == (1, 512, 400)
    coronal = np.array([[-0.14, 0, 0, 0], [0, 0, 1, 0], [0, -0.14, 0, 0], [0, 0, 0, 1.0]])
    geometry = imaging.slice_geometry(coronal, (1, 512, 400))
    assert geometry.orientation == "coronal"


def test_named_axes_and_bad_names():
    assert imaging.slice_geometry(CT_IJK_TO_RAS, (40, 64, 64), "sagittal").axis == 2
    assert imaging.slice_geometry(CT_IJK_TO_RAS, (40, 64, 64), "coronal").axis == 1
    with pytest.raises(ValueError, match="Unknown slice axis"):
        imaging.slice_geometry(CT_IJK_TO_RAS, (40, 64, 64), "diagonal")


def test_writing_through_a_view_reaches_the_volume():
    geometry = imaging.slice_geometry(
        np.diag([0.7, 0.7, 2.5, 1.0]), (4, 5, 6)
    )  # flips both in-plane axes
    assert geometry.flip_rows and geometry.flip_cols
    volume = np.zeros((4, 5, 6), bool)
    geometry.view(volume)[2, 0, 0] = True
    assert volume[2, 4, 5]


def test_ct_lung_window_clips_then_stretches_and_never_modifies_the_input():
    plane = np.array([[-2048, -1400, -650], [100, 400, 3000]], dtype=np.int16)
    original = plane.copy()
    rgb = imaging.to_rgb8(plane, imaging.WINDOW_PRESETS["ct-lung"])
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    gray = rgb[..., 0]
    assert gray.tolist() == [[0, 0, 127], [255, 255, 255]]  # -650 is mid-window: 127.5 truncated
    np.testing.assert_array_equal(plane, original)


def test_xray_window_is_min_max_and_a_constant_slice_is_black():
    plane = np.array([[10.0, 20.0], [30.0, 50.0]])
    assert imaging.to_rgb8(plane, imaging.WINDOW_PRESETS["xray"])[..., 1].tolist() == [
        [0, 63],
        [127, 255],
    ]
    assert not imaging.to_rgb8(np.full((3, 3), 7.0), imaging.WINDOW_PRESETS["xray"]).any()


def test_auto_window_recognises_hounsfield_units_and_keeps_other_grey_levels():
    assert imaging.resolve_window("auto", np.array([-1024, 0, 1500])).name == "ct-lung"
    # Stored grey levels (a radiograph, or an 8-bit CT export) are stretched min-max.
    assert imaging.resolve_window("auto", np.array([0, 128, 255])).name == "min-max"
    assert imaging.WINDOW_PRESETS["xray"].level is None  # the older name of the same window
    with pytest.raises(ValueError, match="Unknown window"):
        imaging.resolve_window("bone", np.zeros(3))
