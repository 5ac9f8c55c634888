"""Shared fixtures: a real MRML scene (slicer-core) and real chest CT data from slicerio."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SAMZeroShot"))  # the library, also without the editable install


@pytest.fixture(scope="session")
def slicerio_data() -> Path:
    import slicerio

    return Path(os.path.dirname(slicerio.__file__)) / "data"


@pytest.fixture
def scene_app():
    """A fresh headless scene with the Colors, Volumes, Segmentations, Tables and Data logics."""
    from SAMZeroShotLib import mrml_io

    scene, app = mrml_io.new_scene()
    yield scene, app
    scene.Clear(1)


@pytest.fixture
def ctchest(scene_app, slicerio_data):
    """slicerio's CTChest4.nrrd and its Segmentation.seg.nrrd (made in Slicer) as real nodes.

    Returns ``(scene, volume node, segmentation node, {name: segment ID})``.
    """
    from SAMZeroShotLib import mrml_io

    scene, app = scene_app
    volume = mrml_io.load_volume(app, slicerio_data / "CTChest4.nrrd")
    segmentation = mrml_io.load_segmentation(app, slicerio_data / "Segmentation.seg.nrrd")
    segments = segmentation.GetSegmentation()
    ids = {segments.GetNthSegment(i).GetName(): segments.GetNthSegmentID(i)
           for i in range(segments.GetNumberOfSegments())}
    return scene, volume, segmentation, ids


@pytest.fixture(scope="session")
def litemedsam():
    """The built-in model on the CPU, loaded once per test session."""
    from SAMZeroShotLib import models

    return models.load_model("litemedsam", device="cpu")
