"""How one slice is segmented from its prompt masks: the named strategies.

A strategy turns an 8-bit RGB slice and the masks of its prompt segments into one predicted
mask per segment, calling the engine as often as it needs. Prompts are always derived from the
prompt masks only (with oracle prompts these are the reference masks, as in the paper).

``paper``
    The paper's single call for all segments (points, negative point, union box); see
    :mod:`prompts`. Its one mask is split between the segments by nearest distance.
``box``
    One call per segment with its own box, all on one embedding of the whole slice.
``crop``
    Each segment gets its own view: its box grown by a margin, cut out and encoded at the
    model's full input size; the mask is mapped back.
``zoom``
    Small structures only: a segment whose box would span less than a set fraction of the slice
    gets a square view in which it does (apex and base slices of a lung with a few pixels of
    lung); large ones keep the whole slice.
``refine``
    ``crop`` plus correction passes: the previous low-resolution logits go back in as a mask
    prompt, with one more point where the prediction and the prompt mask disagree most (a
    positive point deep in the largest missed region, or a negative one in the largest spurious
    one).
``flip4``
    Test-time flips: ``box`` on the slice as it is, mirrored, upside down and both; the four
    logit maps are averaged.
``flip-v``
    ``box`` on the slice as it is and upside down; the two logit maps are averaged.
``adaptive``
    ``box``, and ``flip-v`` only for the segments whose mask the decoder doubts (its predicted
    IoU below :data:`CHOSEN_FROM_DATA` ``adaptive_min_score``): the second view is encoded only
    on slices where it may pay, once for all doubtful segments of the slice.
``flip4-xray``
    ``flip4``, and on radiographs a lower logit cut-off (see :data:`CHOSEN_FROM_DATA`).
``box+crop``, ``flip4+crop``
    Two strategies at once, their mean logits averaged wherever both have a view: the whole
    slice (context) and each segment's crop (about 2.5x the resolution on a 1024 px radiograph).
``prompt-only``
    No model: each segment's box, filled. What the prompt alone gives, the baseline every
    model result is read against.

Each strategy is told the modality (``ct`` or ``xray``, see :mod:`modality`); only the
radiograph cut-off of ``flip4-xray`` depends on it. Parameters chosen from the dev sets are
named in :data:`CHOSEN_FROM_DATA`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, replace

import numpy as np

from .errors import SettingError
from .prompts import Masks, Prompt, bounding_box, box_prompt, paper_prompts, split_among_segments

Region = tuple[int, int, int, int]  # row0, row1, col0, col1 (exclusive ends)


class PromptStrategy:
    """A fixed prompt function decoded on the embedding of the whole slice."""

    def __init__(self, name: str, make_prompts):
        self.name = name
        self.make_prompts = make_prompts

    def segment(self, image: np.ndarray, masks: Masks, engine, modality: str = "ct") -> Masks:
        masks = {key: mask for key, mask in masks.items() if mask.any()}
        prompts = self.make_prompts(masks)
        outputs = {key: np.zeros(image.shape[:2], bool) for key in masks}
        if not prompts:
            return outputs
        [embedding] = engine.encode([image])
        for prompt, prediction in zip(prompts, engine.decode(embedding, prompts), strict=True):
            for key, part in split_among_segments(prediction.mask, masks, prompt.segments).items():
                outputs[key] |= part
        return outputs


def fill_boxes(masks: Masks) -> Masks:
    """Each mask's bounding box, filled (the box SAM is prompted with); empty masks stay empty."""
    filled = {}
    for key, mask in masks.items():
        filled[key] = np.zeros(mask.shape, bool)
        if mask.any():
            min_row, min_col, max_row, max_col = bounding_box(mask)
            filled[key][min_row:max_row, min_col:max_col] = True
    return filled


class PromptOnlyStrategy:
    """The mask is the prompt itself: each segment's box filled; the engine is never called."""

    name = "prompt-only"

    def segment(self, image: np.ndarray, masks: Masks, engine=None, modality: str = "ct") -> Masks:
        return fill_boxes(masks)


def crop_region(mask: np.ndarray, margin: float, min_size: int) -> Region:
    """The mask's box grown by ``margin`` x its size on each side, at least ``min_size`` pixels a
    side, clipped to the image."""
    min_row, min_col, max_row, max_col = bounding_box(mask)
    region = []
    for low, high, limit in ((min_row, max_row, mask.shape[0]), (min_col, max_col, mask.shape[1])):
        grow = max(margin * (high - low), (min_size - (high - low)) / 2.0, 0.0)
        region += [max(0, int(np.floor(low - grow))), min(limit, int(np.ceil(high + grow)))]
    return tuple(region)


def zoom_region(mask: np.ndarray, fraction: float, min_size: int) -> Region:
    """A square view, centred on the mask's box, in which the box spans ``fraction`` of the side.

    The view never gets smaller than ``min_size`` pixels nor larger than the image (then it is
    the whole image, or slid to stay inside it). A large structure thus keeps the whole slice,
    and a small one is magnified until it looks as large as a typical structure in a full slice.
    """
    min_row, min_col, max_row, max_col = bounding_box(mask)
    side = int(np.ceil(max(max(max_row - min_row, max_col - min_col) / fraction, min_size)))
    region = []
    for low, high, limit in ((min_row, max_row, mask.shape[0]), (min_col, max_col, mask.shape[1])):
        if side >= limit:
            region += [0, limit]
            continue
        centre = (low + high) / 2.0
        start = int(np.clip(round(centre - side / 2.0), 0, limit - side))
        region += [start, start + side]
    return tuple(region)


def correction_click(
    target: np.ndarray, predicted: np.ndarray, min_pixels: int
) -> tuple[int, int, int] | None:
    """``(row, col, label)`` inside the larger error region, at its point farthest from the region's
    border; None when both errors are smaller than ``min_pixels``."""
    import SimpleITK as sitk

    missed, spurious = target & ~predicted, predicted & ~target
    error, label = (missed, 1) if missed.sum() >= spurious.sum() else (spurious, 0)
    if error.sum() < min_pixels:
        return None
    distance = sitk.SignedMaurerDistanceMap(
        sitk.GetImageFromArray(error.astype(np.uint8)),
        insideIsPositive=True,
        squaredDistance=False,
        useImageSpacing=False,
    )
    depth = sitk.GetArrayViewFromImage(distance)
    row, col = np.unravel_index(int(np.argmax(np.where(error, depth, -np.inf))), error.shape)
    return int(row), int(col), label


@dataclass(frozen=True)
class ViewStrategy:
    """Box prompts per segment, on the whole slice or a zoomed crop, with optional refinement and
    flips.

    ``margin``: None segments on the whole slice; a number crops each segment's box grown by that
    fraction of its size on each side. ``min_size``: smallest crop side in pixels.
    ``refine``: correction passes. ``flip``: average with the mirrored view.
    """

    name: str
    margin: float | None = None
    min_size: int = 0
    zoom: float | None = None
    refine: int = 0
    flip: str = ""  # "", "h" (mirror left-right), "v" (upside down) or "hv" (all four)
    threshold: float = 0.0  # mean logit above which a pixel is kept (SAM's own: 0)
    xray_threshold: float | None = None  # the same for radiographs; None: ``threshold``
    #: Smallest error region (pixels of the view) worth a correction click.
    min_click_pixels: int = 4

    def segment(self, image: np.ndarray, masks: Masks, engine, modality: str = "ct") -> Masks:
        threshold = (
            self.xray_threshold
            if modality == "xray" and self.xray_threshold is not None
            else self.threshold
        )
        outputs = {key: np.zeros(image.shape[:2], bool) for key in masks}
        for key, ((row0, row1, col0, col1), mean) in self.region_logits(
            image, masks, engine, threshold
        ).items():
            outputs[key][row0:row1, col0:col1] = mean > threshold
        return outputs

    def region_logits(self, image: np.ndarray, masks: Masks, engine, threshold: float = 0.0):
        """``{key: (region, mean logits of its views over that region)}`` for each non-empty
        segment.

        ``threshold`` decides, between correction passes, what counts as predicted.
        """
        keys = [key for key, mask in masks.items() if mask.any()]
        if not keys:
            return {}
        full = (0, image.shape[0], 0, image.shape[1])
        regions = {key: self._region(masks[key], full) for key in keys}
        flips = self.flips()
        views = list(dict.fromkeys((regions[key], flipped) for key in keys for flipped in flips))
        embeddings = dict(
            zip(
                views,
                engine.encode([self._view(image, region, flipped) for region, flipped in views]),
                strict=True,
            )
        )

        targets = {
            key: masks[key][regions[key][0] : regions[key][1], regions[key][2] : regions[key][3]]
            for key in keys
        }
        clicks: dict[Hashable, list[tuple[int, int, int]]] = {key: [] for key in keys}
        low_res: dict[tuple, np.ndarray] = {}
        active = set(keys)
        means: dict[Hashable, np.ndarray] = {}
        for step in range(1 + self.refine):
            logits = {key: 0.0 for key in active}
            for view in views:
                region, flipped = view
                users = [key for key in keys if key in active and regions[key] == region]
                if not users:
                    continue
                size = (region[1] - region[0], region[3] - region[2])
                prompts = [
                    self._prompt(key, targets[key], clicks[key], flipped, size) for key in users
                ]
                inputs = [low_res.get((key, view)) for key in users] if step else None
                for key, prediction in zip(
                    users,
                    engine.decode(embeddings[view], prompts, inputs, logits=True),
                    strict=True,
                ):
                    low_res[(key, view)] = prediction.low_res_logits
                    logits[key] = logits[key] + self._unflip(prediction.logits, flipped)
            for key in list(active):
                means[key] = logits[key] / len(flips)
                if step < self.refine:
                    click = correction_click(
                        targets[key], means[key] > threshold, self.min_click_pixels
                    )
                    if click is None:
                        active.discard(key)  # already right: no more passes for this segment
                    else:
                        clicks[key].append(click)
        return {key: (regions[key], means[key]) for key in keys}

    def _region(self, mask, full) -> Region:
        if self.zoom is not None:
            return zoom_region(mask, self.zoom, self.min_size)
        if self.margin is not None:
            return crop_region(mask, self.margin, self.min_size)
        return full

    def flips(self):
        """The views' ``(upside down, mirrored)`` flags."""
        rows = (False, True) if "v" in self.flip else (False,)
        cols = (False, True) if "h" in self.flip else (False,)
        return [(r, c) for r in rows for c in cols]

    @staticmethod
    def _unflip(array, flipped):
        return array[:: -1 if flipped[0] else 1, :: -1 if flipped[1] else 1]

    @classmethod
    def _view(cls, image, region, flipped):
        return np.ascontiguousarray(
            cls._unflip(image[region[0] : region[1], region[2] : region[3]], flipped)
        )

    @staticmethod
    def _prompt(key, target, clicks, flipped, size) -> Prompt:
        box = box_prompt(target)
        height, width = size
        # An exclusive-max interval [a, b) mirrors to [size - b, size - a).
        if flipped[1]:
            box = np.array([width - box[2], box[1], width - box[0], box[3]], dtype=np.float32)
        if flipped[0]:
            box = np.array([box[0], height - box[3], box[2], height - box[1]], dtype=np.float32)
        if not clicks:
            return Prompt(segments=(key,), box=box)
        points = [
            ((width - 1 - col) if flipped[1] else col, (height - 1 - row) if flipped[0] else row)
            for row, col, _ in clicks
        ]
        return Prompt(
            segments=(key,), points=points, labels=[label for _, _, label in clicks], box=box
        )


@dataclass(frozen=True)
class EnsembleStrategy:
    """Several view strategies at once: their mean logits averaged pixel by pixel.

    Each member counts once wherever it has a view (a crop covers only its region); a pixel no
    member sees stays background. Combines the whole slice's context with a crop's resolution.
    """

    name: str
    members: tuple[ViewStrategy, ...]
    threshold: float = 0.0

    def segment(self, image: np.ndarray, masks: Masks, engine, modality: str = "ct") -> Masks:
        totals = {key: np.zeros(image.shape[:2], np.float32) for key in masks}
        counts = {key: np.zeros(image.shape[:2], np.int32) for key in masks}
        for member in self.members:
            for key, ((row0, row1, col0, col1), mean) in member.region_logits(
                image, masks, engine
            ).items():
                totals[key][row0:row1, col0:col1] += mean
                counts[key][row0:row1, col0:col1] += 1
        return {
            key: (counts[key] > 0) & (totals[key] > self.threshold * counts[key]) for key in masks
        }


@dataclass(frozen=True)
class AdaptiveStrategy:
    """``box`` first; the slice upside down as a second view only for the doubtful segments.

    A segment is doubtful when the decoder's predicted IoU for its ``box`` mask is below
    ``min_score``. The upside-down slice is encoded once per slice that has a doubtful segment,
    and each doubtful segment's mask becomes the mean of its two views' logits above
    ``threshold`` (what ``flip-v`` gives it); the others keep their ``box`` mask.
    """

    name: str
    min_score: float
    threshold: float = 0.0
    second_view: tuple[bool, bool] = (True, False)  # (upside down, mirrored)

    def doubtful(self, scores: dict[Hashable, float]) -> list[Hashable]:
        """The segments whose first mask gets the second view, in the order given."""
        return [key for key, score in scores.items() if score < self.min_score]

    def segment(self, image: np.ndarray, masks: Masks, engine, modality: str = "ct") -> Masks:
        outputs = {key: np.zeros(image.shape[:2], bool) for key in masks}
        keys = [key for key, mask in masks.items() if mask.any()]
        if not keys:
            return outputs
        size = image.shape[:2]
        [embedding] = engine.encode([image])
        first = engine.decode(
            embedding,
            [ViewStrategy._prompt(key, masks[key], [], (False, False), size) for key in keys],
            logits=True,
        )
        logits = {key: prediction.logits for key, prediction in zip(keys, first, strict=True)}
        doubtful = self.doubtful(
            {key: prediction.score for key, prediction in zip(keys, first, strict=True)}
        )
        if doubtful:
            flipped = self.second_view
            full = (0, size[0], 0, size[1])
            [second] = engine.encode([ViewStrategy._view(image, full, flipped)])
            prompts = [ViewStrategy._prompt(k, masks[k], [], flipped, size) for k in doubtful]
            for key, prediction in zip(
                doubtful, engine.decode(second, prompts, logits=True), strict=True
            ):
                logits[key] = (logits[key] + ViewStrategy._unflip(prediction.logits, flipped)) / 2
        for key in keys:
            outputs[key] = logits[key] > self.threshold
        return outputs


@dataclass(frozen=True)
class ByModality:
    """One strategy for CT slices and another for radiographs."""

    name: str
    ct: object
    xray: object

    def segment(self, image: np.ndarray, masks: Masks, engine, modality: str = "ct") -> Masks:
        return (self.xray if modality == "xray" else self.ct).segment(
            image, masks, engine, modality
        )


#: Every setting below that was picked by measuring on the dev sets (README, Accuracy), and on what.
#: The dev sets are split in two (Utilities/dev_split.json): choices are made on the selection
#: halves and reported on the held-out halves.
CHOSEN_FROM_DATA = {
    # X-ray only (flip4-xray): lowest mean logit kept as lung. Chosen on the whole of cxr_dev,
    # before the split, among 0, -1, -2, -3, -4, -6, -8; cxr_dev's masks include the lung behind
    # the heart, which this cut-off adds: masks that leave it out lose with it. Not used by auto.
    "xray_threshold": -6.0,
    # zoom: the structure spans this fraction of its view. First chosen on the whole of ct_dev
    # (0.25, 0.35, 0.5); on the selection half alone 0.35 is still the best (0.9459, 0.9518,
    # 0.9496).
    "zoom": 0.35,
    # adaptive: a segment whose box mask has a predicted IoU below this gets the second view.
    # Tried on the selection halves of ct_dev, ct_dev2 and cxr_dev (ADAPTIVE_MIN_SCORES_TRIED);
    # 0.94 costs over 1.6x box's bench time; 0.92 gained a little more than 0.90 (+0.0047 against
    # +0.0039) but needs 1.44 encodes per slice on ct_dev's selection half, too close to the
    # limit; 0.90 (1.38) kept (docs/accuracy.md).
    "adaptive_min_score": 0.90,
}
#: The cut-offs of ``adaptive`` tried on the selection halves (Utilities/heldout.py) and timed by
#: ``make bench --cost-table``.
ADAPTIVE_MIN_SCORES_TRIED = (0.85, 0.88, 0.90, 0.92, 0.94)

STRATEGIES = {
    "paper": PromptStrategy("paper", paper_prompts),
    "box": ViewStrategy("box"),
    # Not tuned: 10 % margin, 48 px minimum.
    "crop": ViewStrategy("crop", margin=0.1, min_size=48),
    # A view no smaller than 32 px (at most 8x magnification of the 256 px model input).
    "zoom": ViewStrategy("zoom", zoom=CHOSEN_FROM_DATA["zoom"], min_size=32),
    "refine": ViewStrategy("refine", margin=0.1, min_size=48, refine=2),
    "flip4": ViewStrategy("flip4", flip="hv"),
    "flip-v": ViewStrategy("flip-v", flip="v"),
    "adaptive": AdaptiveStrategy("adaptive", min_score=CHOSEN_FROM_DATA["adaptive_min_score"]),
    "flip4-xray": ViewStrategy(
        "flip4-xray", flip="hv", xray_threshold=CHOSEN_FROM_DATA["xray_threshold"]
    ),
    "prompt-only": PromptOnlyStrategy(),
}
# The whole slice (context) and each segment's crop (resolution), half and half.
STRATEGIES["box+crop"] = EnsembleStrategy("box+crop", (STRATEGIES["box"], STRATEGIES["crop"]))
STRATEGIES["flip4+crop"] = EnsembleStrategy("flip4+crop", (STRATEGIES["flip4"], STRATEGIES["crop"]))

#: What ``auto`` means, per model. The rule for LiteMedSAM: the most accurate strategy on the
#: selection halves of the dev sets (Utilities/dev_split.json) whose ``make bench`` wall time is
#: at most 1.6x ``box``'s (with a margin for data with more doubtful slices), provided it does
#: not lose to ``box`` on either held-out half (bootstrap interval of ``samzeroshot compare``).
#: ``adaptive`` is that strategy (docs/accuracy.md has the table of cost and accuracy);
#: ``flip4+crop``, the earlier default, costs six encodes per slice.
#: The SAM ViT models cannot be run here; the paper measured its own prompt with ViT-L.
AUTO = {
    "litemedsam": "adaptive",
    "sam_vit_b": "paper",
    "sam_vit_l": "paper",
    "sam_vit_h": "paper",
}
DEFAULT_AUTO = "box"


def without_refinement(strategy):
    """The strategy without correction passes (for slices that have no true mask to click on)."""
    if isinstance(strategy, ViewStrategy) and strategy.refine:
        return replace(strategy, refine=0)
    return strategy


def model_name_of(engine) -> str:
    """The name of the model an engine runs (``""`` for a stand-in without a model spec): what
    :func:`resolve` picks ``auto`` by."""
    return getattr(getattr(engine.model, "spec", None), "name", "")


def resolve(strategy, model_name: str = ""):
    """``(name, strategy object)`` for a name (``auto`` picks per model, :data:`AUTO`) or a
    strategy object: the one place a strategy setting becomes the strategy that runs."""
    if not isinstance(strategy, str):
        return getattr(strategy, "name", "custom"), strategy
    if strategy == "auto":
        strategy = AUTO.get(model_name, DEFAULT_AUTO)
    if strategy not in STRATEGIES:
        raise SettingError(
            f"Unknown strategy {strategy!r}: choose one of"
            f" {', '.join(('auto',) + tuple(STRATEGIES))}."
        )
    return strategy, STRATEGIES[strategy]
