"""Shared fixtures: a real MRML scene (slicer-core) and real chest CT data from slicerio."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SAMZeroShot"))  # the library, also without the editable install


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Downloads and ONNX exports go to a folder of the test session, never the user's cache."""
    from SAMZeroShotLib import models

    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get(models.CACHE_ENV)
    os.environ[models.CACHE_ENV] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop(models.CACHE_ENV, None)
    else:
        os.environ[models.CACHE_ENV] = previous


@pytest.fixture(scope="session")
def engines():
    """The test session's engine factory: every test that runs the model in this process takes
    its engine from it, so tests share built engines (and their embedding caches) in any order.

    It keeps a few engines, so that a test with other model settings does not drop the default
    one that most tests use.
    """
    from SAMZeroShotLib.engines import EngineFactory

    return EngineFactory(keep=4)


class CommandLine:
    """``samzeroshot`` run in this process: each call gives ``(exit code, stdout, stderr)``.

    The commands take their engines from the session's factory (see :func:`engines`)."""

    def __init__(self, capsys, engines):
        self.capsys = capsys
        self.engines = engines

    def __call__(self, *argv):
        from SAMZeroShotLib import cli

        code = cli.main([str(a) for a in argv], engines=self.engines)
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def segment(self, volume, prompts, out, *options):
        return self("segment", "--volume", volume, "--prompts", prompts, "--out", out, *options)

    def evaluate(self, images, masks, out, *options):
        return self("evaluate", "--images", images, "--masks", masks, "--out", out, *options)


@pytest.fixture
def samzeroshot(capsys, engines) -> CommandLine:
    """The command line, as a user types it, in this process (see :class:`CommandLine`)."""
    return CommandLine(capsys, engines)


@pytest.fixture(scope="session")
def slicerio_data() -> Path:
    import slicerio

    return Path(os.path.dirname(slicerio.__file__)) / "data"


@pytest.fixture
def scene_app():
    """A fresh headless scene with the Colors, Volumes, Segmentations, Tables and Data logics."""
    from SAMZeroShotLib import headless

    scene, app = headless.new_scene()
    yield scene, app
    scene.Clear(1)


@pytest.fixture
def ctchest(scene_app, slicerio_data):
    """slicerio's CTChest4.nrrd and its Segmentation.seg.nrrd (made in Slicer) as real nodes.

    Returns ``(scene, volume node, segmentation node, {name: segment ID})``.
    """
    from SAMZeroShotLib import headless

    scene, app = scene_app
    volume = headless.load_volume(app, slicerio_data / "CTChest4.nrrd")
    segmentation = headless.load_segmentation(app, slicerio_data / "Segmentation.seg.nrrd")
    segments = segmentation.GetSegmentation()
    ids = {
        segments.GetNthSegment(i).GetName(): segments.GetNthSegmentID(i)
        for i in range(segments.GetNumberOfSegments())
    }
    return scene, volume, segmentation, ids


@pytest.fixture
def chest(ctchest):
    """CTChest4 as arrays: ``(voxels, slice geometry, {"right": mask, "left": mask})``."""
    from SAMZeroShotLib import imaging, mrml_io

    scene, volume, segmentation, ids = ctchest
    masks = mrml_io.segment_masks(segmentation, [ids["right lung"], ids["left lung"]], volume)
    voxels = mrml_io.volume_array(volume)
    geometry = imaging.slice_geometry(mrml_io.ijk_to_ras(volume), voxels.shape)
    return voxels, geometry, dict(zip(("right", "left"), masks.values(), strict=True))


@pytest.fixture
def chest_volume(ctchest):
    """CTChest4 as the pipeline takes it: ``(Volume, slice geometry, {"right": mask, "left":
    mask})``."""
    from SAMZeroShotLib import imaging, mrml_io, volumes

    scene, node, segmentation, ids = ctchest
    masks = mrml_io.segment_masks(segmentation, [ids["right lung"], ids["left lung"]], node)
    volume = volumes.volume_from_node(node)
    geometry = imaging.slice_geometry(volume.ijk_to_ras, volume.voxels.shape)
    return volume, geometry, dict(zip(("right", "left"), masks.values(), strict=True))


@pytest.fixture(scope="session")
def default_whole_volume_run(slicerio_data, engines):
    """The default run on the whole of CTChest4, once per test session; its one-line summary.

    Built-in model, every setting at its default, both lungs: the suite's most expensive step
    (model load, CPU runtime preparation, every slice with lung encoded). It is a fixture of its
    own so that ``--durations`` names its cost; the tests that make a default run ask for it
    first and reuse its engine and embedding cache (through the session's :func:`engines`), so
    their own time is what they add.
    """
    from SAMZeroShotLib import headless, mrml_io, segment_nodes

    scene, app = headless.new_scene()
    volume = headless.load_volume(app, slicerio_data / "CTChest4.nrrd")
    segmentation = headless.load_segmentation(app, slicerio_data / "Segmentation.seg.nrrd")
    lungs = mrml_io.resolve_segment_ids(segmentation, ["right lung", "left lung"])
    _, table = segment_nodes.process(
        volume, segmentation, lungs, log=lambda line: None, engines=engines
    )
    summary = table.GetAttribute(mrml_io.SUMMARY_ATTRIBUTE)
    scene.Clear(1)
    return summary


@pytest.fixture
def engine(engines):
    """The engine users get by default, shared by every test (its embedding cache too)."""
    from SAMZeroShotLib.parameters import Parameters

    return engines.get(Parameters())


@pytest.fixture(scope="session")
def litemedsam():
    """The built-in model on the CPU, loaded once per test session."""
    from SAMZeroShotLib import models

    return models.load_model("litemedsam", device="cpu")


def _radiograph_from_ct(voxels, right, left, ijk_to_ras):
    """A frontal radiograph of a real CT (a digitally reconstructed radiograph) and its lung labels.

    Attenuation above air is summed along the anterior-posterior axis; the lung labels are the
    projections of the CT's lung masks (1 = right, 2 = left). Rows are resampled to the column
    spacing so that the image has square pixels. Returns ``(image[rows, cols] float32,
    labels[rows, cols] uint8, pixel spacing in mm)``; rows run superior to inferior and columns
    from the patient's right to left, as on a PA film displayed the usual way.
    """
    import numpy as np

    from SAMZeroShotLib import imaging

    geometry = imaging.slice_geometry(ijk_to_ras, voxels.shape, "coronal")
    attenuation = np.clip(geometry.view(voxels).astype(np.float32) + 1000.0, 0, None) / 1000.0
    image = attenuation.sum(axis=0)  # coronal view: [A-P, S-I, R-L] -> sum over A-P
    labels = np.zeros(image.shape, np.uint8)
    labels[geometry.view(right).any(axis=0)] = 1
    labels[geometry.view(left).any(axis=0)] = 2
    row_spacing, col_spacing = geometry.pixel_spacing
    rows = np.minimum(
        (
            np.arange(int(image.shape[0] * row_spacing / col_spacing)) * col_spacing / row_spacing
        ).astype(int),
        image.shape[0] - 1,
    )
    return image[rows].astype(np.float32), labels[rows], col_spacing


@pytest.fixture(scope="session")
def radiograph_from_ct():
    """The function that makes a radiograph of a CT (see :func:`_radiograph_from_ct`)."""
    return _radiograph_from_ct


@pytest.fixture
def cohort(ctchest, tmp_path):
    """A small real cohort: a radiograph (PNG, with an ignore band) and a 3-slice CT (NRRD + NIfTI
    mask).

    Returns ``(images folder, masks folder)``; cases ``xray`` and ``ct``.
    """
    import numpy as np
    import SimpleITK as sitk

    from SAMZeroShotLib import mrml_io

    scene, volume, segmentation, ids = ctchest
    masks = mrml_io.segment_masks(segmentation, [ids["right lung"], ids["left lung"]], volume)
    right, left = masks.values()
    voxels, matrix = mrml_io.volume_array(volume), mrml_io.ijk_to_ras(volume)
    images, labels = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    labels.mkdir()
    image, label, _ = _radiograph_from_ct(voxels, right, left, matrix)
    gray = (255 * (image - image.min()) / (image.max() - image.min())).astype(np.uint8)
    label[:, :4] = 255  # an "ignore" band along the border
    sitk.WriteImage(sitk.GetImageFromArray(gray), str(images / "xray.png"))
    sitk.WriteImage(sitk.GetImageFromArray(label), str(labels / "xray.png"))
    ct = sitk.GetImageFromArray(voxels[18:21].astype(np.int16))
    ct.SetSpacing((3.0, 3.0, 10.0))
    mask = sitk.GetImageFromArray((right[18:21] * 1 + left[18:21] * 2).astype(np.uint8))
    mask.CopyInformation(ct)
    sitk.WriteImage(ct, str(images / "ct.nrrd"))
    sitk.WriteImage(mask, str(labels / "ct.nii.gz"))
    return images, labels


def _add_mirrored_radiograph(images: Path, labels: Path) -> None:
    """Case ``xray2``: the cohort's radiograph and its mask mirrored left-right."""
    import SimpleITK as sitk

    for folder in (images, labels):
        sitk.WriteImage(
            sitk.Flip(sitk.ReadImage(str(folder / "xray.png")), [True, False]),
            str(folder / "xray2.png"),
        )


@pytest.fixture
def cohort3(cohort):
    """The two-case cohort plus a mirrored radiograph: cases ``ct``, ``xray``, ``xray2``."""
    _add_mirrored_radiograph(*cohort)
    return cohort


@pytest.fixture
def add_mirrored_radiograph():
    """Adds case ``xray2`` (the cohort's radiograph mirrored) to an images and a masks folder."""
    return _add_mirrored_radiograph


def _digests(*paths) -> dict:
    """SHA-256 of every file under ``paths`` (files or folders), by path."""
    import hashlib

    found = {}
    for path in map(Path, paths):
        for item in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            found[str(item)] = hashlib.sha256(item.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="session")
def digests():
    """The function that hashes files before and after a run (see :func:`_digests`)."""
    return _digests


def _dice(predicted, reference):
    from SAMZeroShotLib import metrics

    return metrics.overlap(predicted, reference)["dice"]


@pytest.fixture(scope="session")
def dice():
    """``dice(predicted, reference)``: the Dice of one mask against another."""
    return _dice


# The paper's data sets laid out as published, from real chest CT (cases named as in each set).
MONTGOMERY_CASES = ("MCUCXR_0001_0", "MCUCXR_0002_0")
CORONACASE, RADIOPAEDIA = "coronacases_001", "radiopaedia_4_85506_1"


@pytest.fixture
def chest_ct(ctchest):
    """CTChest4's voxels (HU), IJK-to-RAS and lung masks ``(right, left)``."""
    from SAMZeroShotLib import mrml_io

    scene, volume, segmentation, ids = ctchest
    masks = mrml_io.segment_masks(segmentation, [ids["right lung"], ids["left lung"]], volume)
    return mrml_io.volume_array(volume), mrml_io.ijk_to_ras(volume), tuple(masks.values())


def write_png(array, path):
    import numpy as np
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(array)), str(path))


@pytest.fixture
def montgomery_set(chest_ct, radiograph_from_ct, tmp_path):
    """The Montgomery County archive as it unpacks (``MontgomerySet/`` inside), two radiographs.

    The second is the first mirrored left-right. Masks are 0/255 PNGs, one folder per lung, and
    ``CXR_png`` holds a ``Thumbs.db`` as the published archive does.
    """
    import numpy as np

    voxels, matrix, (right, left) = chest_ct
    image, labels, _ = radiograph_from_ct(voxels, right, left, matrix)
    gray = (255 * (image - image.min()) / (image.max() - image.min())).astype(np.uint8)
    root = tmp_path / "NLM-MontgomeryCXRSet" / "MontgomerySet"
    for name, mirrored in zip(MONTGOMERY_CASES, (False, True), strict=True):
        view = (lambda a: a[:, ::-1]) if mirrored else (lambda a: a)
        write_png(view(gray), root / "CXR_png" / f"{name}.png")
        write_png(
            view((labels == 1).astype(np.uint8) * 255),
            root / "ManualMask" / "rightMask" / f"{name}.png",
        )
        write_png(
            view((labels == 2).astype(np.uint8) * 255),
            root / "ManualMask" / "leftMask" / f"{name}.png",
        )
    (root / "CXR_png" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
    return tmp_path / "NLM-MontgomeryCXRSet"


@pytest.fixture
def covid_set(chest_ct, tmp_path):
    """COVID-19-CT-Seg laid out as on Zenodo: a CT in HU and one exported as grey levels, 3 slices
    each.

    Lung masks use the data set's numbering: 1 left lung, 2 right lung.
    """
    import numpy as np
    import SimpleITK as sitk

    from SAMZeroShotLib import layouts

    voxels, matrix, (right, left) = chest_ct
    root = tmp_path / "covid"
    volumes = {
        CORONACASE: (voxels[18:21].astype(np.int16), slice(18, 21)),
        # Radiopaedia's volumes are image exports: the lung window baked into 0-255 grey levels.
        RADIOPAEDIA: (
            np.clip((voxels[20:23] + 1400.0) / 1500.0 * 255, 0, 255).astype(np.uint8),
            slice(20, 23),
        ),
    }
    for name, (array, rows) in volumes.items():
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((3.0, 3.0, 10.0))
        mask = sitk.GetImageFromArray((left[rows] * 1 + right[rows] * 2).astype(np.uint8))
        mask.CopyInformation(image)
        for folder, item in ((layouts.COVID_IMAGES, image), (layouts.COVID_MASKS, mask)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(item, str(root / folder / f"{name}.nii.gz"))
    return root
