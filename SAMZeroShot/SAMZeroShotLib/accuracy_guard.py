"""The accuracy guard: a reduced-precision runtime is kept only if it is as accurate as float32.

On first use per model, runtime and CPU, the chest CT shipped with the module
(``Resources/TestData``: CTChest4 and its lung segments, made in Slicer) is segmented with
``box`` prompts on every slice with both lungs, by the candidate runtime (e.g. bf16) and by its
float32 twin. Both are scored against the reference segments, not against each other: the
candidate passes when its mean Dice is at most :data:`MAX_MEAN_DICE_DROP` below the twin's and
no mask loses more than :data:`MAX_MASK_DICE_DROP` of Dice against the reference compared with
the twin's mask of the same lung on the same slice. How closely the candidate's masks agree
with the twin's is reported, never judged: a mask that moves without losing accuracy is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .volumes import Volume, read_volume

#: Largest accepted loss of mean Dice against the reference (the acceptance limit for bf16).
MAX_MEAN_DICE_DROP = 0.002
#: Largest accepted loss of one mask's Dice against the reference, compared with float32's mask.
MAX_MASK_DICE_DROP = 0.05
#: Names the rule in the cached verdicts: a verdict made under another rule is made again.
RULE = "reference-dice-v2"
TEST_DATA = Path(__file__).resolve().parents[1] / "Resources" / "TestData"
LUNGS = ("right lung", "left lung")


@dataclass(frozen=True)
class Verdict:
    passed: bool
    mean_dice_reference: float  # the float32 twin's mean Dice against the reference segments
    mean_dice_candidate: float
    worst_mask_drop: float  # the largest loss of one mask's Dice against float32's (0 if none)
    min_twin_dice: float  # information only: the candidate's worst agreement with float32
    masks: int

    def summary(self) -> str:
        return (
            f"mean Dice {self.mean_dice_candidate:.4f} vs {self.mean_dice_reference:.4f} in fp32, "
            f"largest loss of one mask {self.worst_mask_drop:.3f}, lowest agreement with fp32 "
            f"{self.min_twin_dice:.3f} over {self.masks} masks"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def judge(
    truths: Sequence[np.ndarray],
    twin_masks: Sequence[np.ndarray],
    candidate_masks: Sequence[np.ndarray],
) -> Verdict:
    """Judge a candidate's masks against the reference, beside its float32 twin's.

    Arguments:
      truths: reference masks, one per lung and slice (2D boolean arrays).
      twin_masks: the float32 runtime's masks, in the same order and shapes.
      candidate_masks: the candidate runtime's masks, in the same order and shapes.

    Returns:
      The :class:`Verdict`; ``passed`` follows the rule in the module's docstring.
    """
    from . import metrics

    if not len(truths) == len(twin_masks) == len(candidate_masks) > 0:
        raise ValueError("the guard needs one twin and one candidate mask per reference mask")
    twin = np.array(
        [metrics.overlap(m, t)["dice"] for m, t in zip(twin_masks, truths, strict=True)]
    )
    ours = np.array(
        [metrics.overlap(m, t)["dice"] for m, t in zip(candidate_masks, truths, strict=True)]
    )
    agreement = [
        metrics.overlap(m, t)["dice"] for m, t in zip(candidate_masks, twin_masks, strict=True)
    ]
    worst_drop = max(0.0, float(np.max(twin - ours)))
    mean_twin, mean_ours = float(twin.mean()), float(ours.mean())
    passed = mean_ours >= mean_twin - MAX_MEAN_DICE_DROP and worst_drop <= MAX_MASK_DICE_DROP
    return Verdict(passed, mean_twin, mean_ours, worst_drop, float(min(agreement)), len(truths))


def shipped_lungs(folder: Path = TEST_DATA) -> tuple[Volume, dict[str, np.ndarray]]:
    """The shipped chest CT (a :class:`~.volumes.Volume`, voxels ``[K, J, I]``) and its two lung
    masks of the voxels' shape, read with SimpleITK (the segment names and label values are in
    the ``.seg.nrrd`` header)."""
    import SimpleITK as sitk

    from .cases import read_labels

    volume = read_volume(folder / "CTChest4.nrrd")
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
    labels = read_labels(folder / "Segmentation.seg.nrrd", volume.voxels.shape)
    return volume, {name: labels == values[name] for name in LUNGS}


def _segment(engine, volume: Volume, geometry, prompts) -> dict[str, np.ndarray]:
    from . import pipeline

    return pipeline.segment_volume(
        volume, geometry, prompts, engine, strategy="box", window="ct-lung"
    ).masks


def check(model, reference, candidate, slices: int | None = None) -> Verdict:
    """Segment the shipped CT with the ``reference`` (float32) and ``candidate`` runtimes
    (:class:`runtimes.Runtime`) and :func:`judge` the candidate.

    Arguments:
      slices: how many of the slices with both lungs to use, spread evenly; None for all.
    """
    from . import imaging
    from .engine import SamEngine
    from .pipeline import keep_slices

    volume, lungs = shipped_lungs()
    geometry = imaging.slice_geometry(volume.ijk_to_ras, volume.voxels.shape)
    both = np.flatnonzero(
        np.logical_and.reduce([geometry.view(m).any(axis=(1, 2)) for m in lungs.values()])
    )
    count = len(both) if slices is None else min(slices, len(both))
    chosen = both[np.linspace(0, len(both) - 1, count).round().astype(int)]
    prompts = keep_slices(lungs, geometry, chosen)
    masks = {
        name: _segment(SamEngine(model, runtime=runtime), volume, geometry, prompts)
        for name, runtime in (("twin", reference), ("candidate", candidate))
    }
    picked = [(s, lung) for s in chosen for lung in LUNGS]
    truths, twin, ours = (
        [geometry.view(source[lung])[s] for s, lung in picked]
        for source in (lungs, masks["twin"], masks["candidate"])
    )
    return judge(truths, twin, ours)


@dataclass(frozen=True)
class AccuracyGuard:
    """The guard as the precision check the runtime layer is handed (``runtimes.prepare``'s
    ``check``): :func:`check` under :data:`RULE`, on ``slices`` slices (None: all)."""

    slices: int | None = None
    rule: str = RULE

    def check(self, model, reference, candidate) -> Verdict:
        return check(model, reference, candidate, self.slices)

    @staticmethod
    def verdict(stored: dict) -> Verdict:
        """A kept verdict again (``stored`` is what :meth:`Verdict.as_dict` gave)."""
        return Verdict(**stored)


#: The guard every engine builder hands to the runtime layer.
GUARD = AccuracyGuard()
