"""The accuracy guard: a reduced-precision runtime is used only if it segments like float32.

On first use per model, runtime and CPU, a few slices of the chest CT shipped with the module
(``Resources/TestData``: CTChest4 and its lung segments, made in Slicer) are segmented with
``box`` prompts by the candidate runtime (e.g. bf16) and by its float32 twin. The candidate
passes when the mean Dice of its masks against the reference segments differs from the twin's
by at most :data:`MAX_MEAN_DICE_SHIFT`, and when none of its masks has a Dice below
:data:`MIN_TWIN_DICE` against the twin's mask of the same lung on the same slice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: Largest accepted change of the mean Dice against the reference (the acceptance limit for bf16).
MAX_MEAN_DICE_SHIFT = 0.002
#: Lowest accepted Dice between a candidate mask and its float32 twin.
MIN_TWIN_DICE = 0.95
#: Slices segmented (spread evenly over those with both lungs): 16 masks, a few seconds.
GUARD_SLICES = 8
TEST_DATA = Path(__file__).resolve().parents[1] / "Resources" / "TestData"
LUNGS = ("right lung", "left lung")


@dataclass(frozen=True)
class Verdict:
    passed: bool
    mean_dice_reference: float  # the float32 twin's mean Dice against the reference segments
    mean_dice_candidate: float
    min_twin_dice: float  # the candidate's worst mask against its float32 twin
    masks: int

    def summary(self) -> str:
        return (
            f"mean Dice {self.mean_dice_candidate:.4f} vs {self.mean_dice_reference:.4f} in fp32, "
            f"lowest agreement with fp32 {self.min_twin_dice:.3f} over {self.masks} masks"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def shipped_lungs(folder: Path = TEST_DATA) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The shipped chest CT: voxels ``[K, J, I]``, IJK-to-RAS and the two lung masks, read with
    SimpleITK (the segment names and label values are in the ``.seg.nrrd`` header)."""
    import SimpleITK as sitk

    from . import evaluation

    voxels, ijk_to_ras = evaluation.read_image(folder / "CTChest4.nrrd")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(folder / "Segmentation.seg.nrrd"))
    reader.ReadImageInformation()
    values = {}
    for key in reader.GetMetaDataKeys():
        if key.startswith("Segment") and key.endswith("_Name") and reader.GetMetaData(key) in LUNGS:
            prefix = key[: -len("Name")]
            if reader.GetMetaData(prefix + "Layer") != "0":
                raise ValueError("the shipped segmentation's lungs are expected on its first layer")
            values[reader.GetMetaData(key)] = int(reader.GetMetaData(prefix + "LabelValue"))
    labels = evaluation.read_labels(folder / "Segmentation.seg.nrrd", voxels.shape)
    return voxels, ijk_to_ras, {name: labels == values[name] for name in LUNGS}


def _segment(engine, voxels, geometry, prompts) -> dict[str, np.ndarray]:
    from . import pipeline

    return pipeline.segment_volume(
        voxels, geometry, prompts, engine, strategy="box", window="ct-lung"
    ).masks


def check(model, reference, candidate, slices: int = GUARD_SLICES) -> Verdict:
    """Segment the shipped CT with ``reference`` (float32) and ``candidate`` runtimes
    (:class:`runtimes.Runtime`) and judge the candidate."""
    from . import imaging, metrics
    from .engine import SamEngine
    from .pipeline import keep_slices

    voxels, ijk_to_ras, lungs = shipped_lungs()
    geometry = imaging.slice_geometry(ijk_to_ras, voxels.shape)
    both = np.flatnonzero(
        np.logical_and.reduce([geometry.view(m).any(axis=(1, 2)) for m in lungs.values()])
    )
    chosen = both[np.linspace(0, len(both) - 1, min(slices, len(both))).round().astype(int)]
    prompts = keep_slices(lungs, geometry, chosen)
    masks = {
        name: _segment(SamEngine(model, runtime=runtime), voxels, geometry, prompts)
        for name, runtime in (("reference", reference), ("candidate", candidate))
    }
    dice: dict[str, list[float]] = {"reference": [], "candidate": [], "twin": []}
    for s in chosen:
        for lung in LUNGS:
            truth = geometry.view(lungs[lung])[s]
            ours = {name: geometry.view(masks[name][lung])[s] for name in masks}
            dice["reference"].append(metrics.overlap(ours["reference"], truth)["dice"])
            dice["candidate"].append(metrics.overlap(ours["candidate"], truth)["dice"])
            dice["twin"].append(metrics.overlap(ours["candidate"], ours["reference"])["dice"])
    mean_reference, mean_candidate = (
        float(np.mean(dice["reference"])),
        float(np.mean(dice["candidate"])),
    )
    worst = float(np.min(dice["twin"]))
    passed = abs(mean_candidate - mean_reference) <= MAX_MEAN_DICE_SHIFT and worst >= MIN_TWIN_DICE
    return Verdict(passed, mean_reference, mean_candidate, worst, len(dice["twin"]))
