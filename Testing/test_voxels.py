"""Voxels the model cannot use: NaN and infinite voxels counted, refused or filled."""

import numpy as np
import pytest

from SAMZeroShotLib import errors, voxels
from SAMZeroShotLib.imaging import slice_geometry


def test_filled_voxels_take_their_slice_minimum_and_the_original_is_untouched():
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    volume[1, 0, 0] = np.nan
    original = volume.copy()
    geometry = slice_geometry(np.eye(4), volume.shape)
    filled, notes = voxels.checked(volume, geometry, fill=True)
    np.testing.assert_array_equal(
        volume, original
    )  # NaN where it was (assert_array_equal matches NaN with NaN)
    assert filled[1, 0, 0] == 13.0 and len(notes) == 1
    with pytest.raises(errors.BadVoxels, match="1 voxel is NaN or infinite \\(slice 1\\)"):
        voxels.checked(volume, geometry)
