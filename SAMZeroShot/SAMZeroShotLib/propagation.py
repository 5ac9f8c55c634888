"""Propagation: from a few annotated slices to every slice of the volume.

A user outlines the segments (lungs) on one or a few slices; every other slice is segmented by
walking outward from them, one slice at a time, each new slice prompted with its neighbour's
result (:class:`Rules` says how the prompt is made and when a walk stops).

* Outside the annotated slices (below the lowest, above the highest) one walk goes outward.
* Between two annotated slices a walk starts from each side and crosses the whole gap; each slice
  takes, segment by segment, the result of the nearer annotated slice's walk, or the other one's
  where the nearer walk has stopped for that segment. A slice exactly half way takes the lower
  slice's walk.
* An annotated slice is complete: a segment the user did not draw there is absent there, and no
  walk enters it.

Every segment that stops is reported as a :class:`Stop`: where, why, and how far the other
segments of the same walk went on, so that a lung that stopped while the other carried on never
goes unnoticed. :func:`propagate` is the entry point for callers with a volume and annotated slices
(the module, the Segment Editor effect); :func:`walk_volume` is the walk itself on any
:class:`SliceModel`, which the tests drive with a fake model.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from .errors import Cancelled, SettingError
from .prompts import bounding_box

Masks = dict[Hashable, np.ndarray]

#: Rule values chosen by measuring with ``Utilities/propagation_dev.py`` (``box`` strategy): on
#: ct_dev's selection blocks (Utilities/dev_split.json) and ct_dev2's pyrad_lung1 only, by the mean
#: slice Dice from the middle slice and from 3 annotated slices, one rule changed at a time from
#: the values set before measuring (in brackets); reported on ct_dev's held-out blocks and
#: pyrad_lung2 (docs/propagation.md has every setting tried and its numbers).
CHOSEN_FROM_DATA = {
    # Compare with the neighbour's mask (was: the annotated slice's): the lung's grey level drifts
    # towards the apex; the annotated-slice rule stopped pyrad_lung1's apex and ct_dev's left base
    # early (0.9359 -> 0.9417 on pyrad_lung1 from the middle, ct_dev equal).
    "intensity_from": "neighbour",
    # 20 / 40 / 60 / no limit tried (40): 60 keeps the apex (pyrad_lung1 0.9616); alone it let
    # ct_dev's left lung walk on below its base (0.8574), which the growth limit stops.
    "max_intensity_shift": 60.0,
    # 2 and 1.5 tried (no limit): 2 stops the walk that leaves the lung at its end (0.9347).
    "max_growth": 2.0,
    # Where the walks start on an annotated slice: "model" / "drawn" tried ("model"): the user's
    # own outline, which that slice then keeps, scored higher on every selection run and tied on
    # the propagated slices alone (-0.0003 on ct_dev from the middle).
    "start_from": "drawn",
    # 185 / 200 / 215 / 225 / none tried (none): with the default strategy (adaptive) ct_dev's
    # right lung walked 20 slices below its base onto soft tissue (grey 231-243), each step
    # within the shift limit; 185 and 200 tie on the selection Dice (0.9600 with adaptive, none
    # 0.9597), the higher limit is kept: the selection data hold few base crescents to cut.
    "max_grey": 200.0,
    # 0 / 1 tried (0): equal on the selection scores (-0.0004 on ct_dev from the middle), but from
    # 3 slices ct_dev's left lung, skipping the slice where it had rightly stopped, went on for
    # 14 slices below its base (masks on slices without lung): not used.
    "patience": 0,
    # 0 / 1500 px tried (0): the zoomed view for small pieces found "lung" below ct_dev's right
    # base down to slice 0 and lost pyrad_lung1's apex slice (0.9433): not used.
    "small_piece": 0,
    # False / True tried (False): on the slice where a segment stops, keep the part of its new
    # mask inside its neighbour's mask (when that part keeps the rules) instead of nothing: all
    # 16 selection runs (box, adaptive; 1, 2, 3, 5 slices) equal or higher, 12 by one slice each
    # (+0.0011 to +0.0021), no more slices beyond the lung. Not after a bright stop: on
    # pyrad_lung1 resampled to thin slices it kept soft tissue there (a slice 0.90 -> 0.75).
    "keep_at_stop": True,
    # Not changed from the values set before measuring (not tried, or tried and no better).
    "grow": 0.05,
    "min_grow_pixels": 1,
    "min_area": 0.002,
    "min_overlap": 0.5,
}


#: Stops after which ``keep_at_stop`` keeps nothing: a bright mask is soft tissue on average, and
#: a part of it just under the limit is no lung.
_NOTHING_KEPT_AFTER = frozenset({"bright"})


@dataclass(frozen=True)
class Rules:
    """How a prompt travels to the next slice, and when a segment's walk stops.

    Prompt: the neighbour's mask dilated by ``grow`` of its larger box side, at least
    ``min_grow_pixels`` pixels, so that a widening structure still fits its box. Small pieces
    (the apex and base of a lung): a neighbour mask under ``small_piece`` pixels is segmented in
    a zoomed view of its box instead of the whole slice (0: never).

    Stop (for that segment, in that direction), when the new mask is empty, under ``min_area`` of
    the segment's largest annotated area, is more than ``max_growth`` times the neighbour's mask (0:
    no limit; a walk that leaves the lung at its end tends to spread), overlaps the neighbour's mask
    less than ``min_overlap`` (intersection over the smaller mask), or its mean 8-bit intensity
    differs from the neighbour's mask's by more than ``max_intensity_shift`` grey levels (the box
    slid onto other tissue; ``intensity_from="annotated"``: from the annotated slice's, the rule
    before these were chosen), or that mean is above ``max_grey`` (0: no limit; in the lung
    window, soft tissue, not aerated lung: a walk that crept off the lung's end a little at a
    time). On the slice where it stopped, a segment keeps the part of its new mask inside its
    neighbour's mask when that part keeps the rules and the stop was not for brightness
    (``keep_at_stop``; the last slice of a lung is usually a piece of the one before), else
    nothing. With
    ``patience``, a segment that breaks a rule is tried again on up to that many further slices,
    each prompted from its last mask that kept the rules; the slices it missed stay empty, and it
    stops (at the first missed slice) only when none of them keeps the rules.

    Start: with ``start_from="drawn"`` the walks start from the user's outlines on the annotated
    slices, and those slices keep them; with ``"model"`` from the model's masks for them.
    """

    grow: float = CHOSEN_FROM_DATA["grow"]
    min_grow_pixels: int = CHOSEN_FROM_DATA["min_grow_pixels"]
    min_area: float = CHOSEN_FROM_DATA["min_area"]
    min_overlap: float = CHOSEN_FROM_DATA["min_overlap"]
    max_intensity_shift: float = CHOSEN_FROM_DATA["max_intensity_shift"]
    small_piece: int = CHOSEN_FROM_DATA["small_piece"]
    intensity_from: str = CHOSEN_FROM_DATA["intensity_from"]
    patience: int = CHOSEN_FROM_DATA["patience"]
    max_growth: float = CHOSEN_FROM_DATA["max_growth"]
    start_from: str = CHOSEN_FROM_DATA["start_from"]
    max_grey: float = CHOSEN_FROM_DATA["max_grey"]
    keep_at_stop: bool = CHOSEN_FROM_DATA["keep_at_stop"]

    def __post_init__(self):
        if self.start_from not in ("model", "drawn"):
            raise SettingError(f"start_from {self.start_from!r}: use 'model' or 'drawn'.")
        if self.intensity_from not in ("neighbour", "annotated"):
            raise SettingError(
                f"intensity_from {self.intensity_from!r}: use 'neighbour' or 'annotated'."
            )


@dataclass(frozen=True)
class Stop:
    """Where one segment's walk stopped, and why.

    ``slice``: the first slice it did not carry to; ``kept``: the pixels kept there, the part of
    its new mask inside its neighbour's mask (0: nothing); ``reason``: ``empty``, ``small area``,
    ``grew``, ``low overlap``, ``intensity shift`` or ``bright``, with the measured value in
    ``detail``;
    ``others_to``: the last slice another segment of the same walk reached (None: none went
    further); ``covered``: between two annotated slices, the walk from the other side carried
    the segment to this slice, so nothing was lost.
    """

    segment: Hashable
    start: int
    direction: int
    slice: int
    reason: str
    detail: str
    others_to: int | None = None
    covered: bool = False
    kept: int = 0

    def describe(self, name: str | None = None) -> str:
        """One line, e.g. ``left: walk down from 60 stopped at 31 (low overlap: 0.21 < 0.5)``."""
        way = "up" if self.direction > 0 else "down"
        line = (
            f"{self.segment if name is None else name}: walk {way} from {self.start} stopped at"
            f" {self.slice} ({self.reason}: {self.detail})"
        )
        if self.kept:
            line += f", keeping there its {self.kept} px inside the neighbour's mask"
        if self.covered:
            return line + ", covered by the walk from the other side"
        if self.others_to is not None:
            line += f", while the other segments went on to {self.others_to}"
        return line


class SliceModel(Protocol):
    """What the walk needs of a model: masks for prompts on a slice, and the slice's grey image."""

    def segment(self, s: int, prompts: Masks, small: bool) -> Masks:
        """Masks for the prompt masks on slice ``s`` (``small``: the small-piece view)."""

    def image(self, s: int) -> np.ndarray:
        """Slice ``s`` as a 2D 8-bit grey image (what the intensity rule measures)."""


@dataclass
class Propagated:
    """The result of a walk: masks per slice and segment, and every stop."""

    masks: dict[int, Masks]
    stops: list[Stop] = field(default_factory=list)


def grown(mask: np.ndarray, rules: Rules) -> np.ndarray:
    """``mask`` dilated by ``rules.grow`` of its larger box side (at least
    ``rules.min_grow_pixels``)."""
    import SimpleITK as sitk

    min_row, min_col, max_row, max_col = bounding_box(mask)
    radius = max(
        int(rules.min_grow_pixels),
        int(round(rules.grow * max(max_row - min_row, max_col - min_col))),
    )
    if radius <= 0:
        return mask.copy()
    image = sitk.BinaryDilate(sitk.GetImageFromArray(mask.astype(np.uint8)), [radius, radius])
    return sitk.GetArrayFromImage(image) > 0


def stop_reason(
    mask: np.ndarray,
    previous: np.ndarray,
    image: np.ndarray,
    reference: tuple[int, float],
    rules: Rules,
) -> tuple[str, str] | None:
    """``(reason, detail)`` when ``mask`` on ``image`` (following ``previous``) breaks a rule;
    else None. ``reference``: the segment's largest annotated area and the mean intensity that
    the intensity rule compares with."""
    largest_area, intensity = reference
    area = int(mask.sum())
    if area == 0:
        return "empty", "no pixels"
    if area < rules.min_area * largest_area:
        return "small area", f"{area / largest_area:.2%} of annotated < {rules.min_area:.2%}"
    if rules.max_growth and area > rules.max_growth * int(previous.sum()):
        return "grew", f"{area / int(previous.sum()):.1f} x the neighbour's > {rules.max_growth}"
    overlap = float((mask & previous).sum()) / max(1, min(area, int(previous.sum())))
    if overlap < rules.min_overlap:
        return "low overlap", f"{overlap:.2f} < {rules.min_overlap}"
    grey = float(image[mask].mean())
    shift = abs(grey - intensity)
    if shift > rules.max_intensity_shift:
        return "intensity shift", f"{shift:.0f} > {rules.max_intensity_shift:.0f} grey levels"
    if rules.max_grey and grey > rules.max_grey:
        return "bright", f"mean grey level {grey:.0f} > {rules.max_grey:.0f}"
    return None


@dataclass
class _Walk:
    """One walk: from ``start`` in ``direction`` up to and including ``limit``."""

    start: int
    direction: int
    limit: int
    masks: dict[int, Masks] = field(default_factory=dict)
    stops: list[Stop] = field(default_factory=list)
    partial: dict[int, Masks] = field(default_factory=dict)  # the parts kept where segments stopped

    def reached(self, key) -> int:
        """The last slice this walk carried ``key`` to (its start when none)."""
        slices = [s for s, masks in self.masks.items() if key in masks]
        return max(slices, key=lambda s: s * self.direction) if slices else self.start

    def distance(self, s: int) -> int:
        return abs(s - self.start)


class _Walker:
    """Runs walks on a :class:`SliceModel` with the segments' annotated references."""

    def __init__(self, model: SliceModel, rules: Rules, references, cancel, on_slice):
        self.model, self.rules, self.references = model, rules, references
        self.cancel, self.on_slice = cancel, on_slice

    def run(self, walk: _Walk, live: Masks) -> _Walk:
        """Carry ``live`` (``{key: mask on walk.start}``) slice by slice until nothing is left."""
        if self.rules.intensity_from == "annotated":
            intensities = {key: self.references[key][1] for key in live}
        else:
            image = self.model.image(walk.start)
            intensities = {key: float(image[mask].mean()) for key, mask in live.items()}
        t, missed = walk.start, {}  # missed: key -> (slices missed in a row, the first stop)
        while live and t != walk.limit:
            t += walk.direction
            if self.cancel is not None and self.cancel():
                raise Cancelled()
            carried, failed, image, kept = self.step(t, live, intensities)
            walk.masks[t] = dict(carried)
            for key in carried:
                missed.pop(key, None)
            for key, (reason, detail) in failed.items():
                count, first = missed.get(key, (0, None))
                first = first or Stop(key, walk.start, walk.direction, t, reason, detail)
                if count < self.rules.patience:  # try the next slice from the last good mask
                    missed[key] = (count + 1, first)
                    carried[key] = live[key]
                else:
                    missed.pop(key, None)
                    if first.slice == t and key in kept:
                        walk.partial.setdefault(t, {})[key] = kept[key]
                        first = replace(first, kept=int(kept[key].sum()))
                    walk.stops.append(first)
            if self.rules.intensity_from == "neighbour":
                intensities = {
                    key: intensities[key] if key in missed else float(image[mask].mean())
                    for key, mask in carried.items()
                }
            live = carried
            if self.on_slice is not None:
                self.on_slice(t)
        walk.stops += [first for _, first in missed.values()]
        return walk

    def step(self, t: int, previous: Masks, intensities: dict):
        """``(carried masks, {key: (reason, detail)} of the stopped, image, {key: the part of a
        stopped mask inside its neighbour's that keeps the rules})`` on slice ``t``."""
        rules = self.rules
        prompts = {key: grown(mask, rules) for key, mask in previous.items()}
        small = {key for key, mask in previous.items() if mask.sum() < rules.small_piece}
        predicted: Masks = {}
        for group, is_small in (([k for k in prompts if k not in small], False), (small, True)):
            if group:
                predicted.update(self.model.segment(t, {k: prompts[k] for k in group}, is_small))
        image = self.model.image(t)
        carried, failed, kept = {}, {}, {}
        for key, mask in predicted.items():
            reference = (self.references[key][0], intensities[key])
            why = stop_reason(mask, previous[key], image, reference, rules)
            if why is None:
                carried[key] = mask
                continue
            failed[key] = why
            if rules.keep_at_stop and why[0] not in _NOTHING_KEPT_AFTER:
                inside = mask & previous[key]
                if not stop_reason(inside, previous[key], image, reference, rules):
                    kept[key] = inside
        return carried, failed, image, kept


def walks_for(annotated: list[int], n_slices: int) -> list[tuple[int, int, int]]:
    """``(start, direction, limit)`` of every walk: outward from the lowest and the highest
    annotated slice, and both ways across every gap between two annotated slices."""
    if not annotated:
        return []
    walks = [(annotated[0], -1, 0), (annotated[-1], +1, n_slices - 1)]
    for low, high in zip(annotated, annotated[1:], strict=False):
        if high - low > 1:
            walks += [(low, +1, high - 1), (high, -1, low + 1)]
    return [w for w in walks if w[0] != w[2]]


def _references(annotated: Mapping[int, Masks], model: SliceModel) -> dict:
    """Per segment: ``(largest annotated area, mean intensity on its annotated slices)``."""
    areas: dict[Hashable, int] = {}
    intensities: dict[Hashable, list[float]] = {}
    for s, masks in annotated.items():
        image = model.image(s)
        for key, mask in masks.items():
            if mask.any():
                areas[key] = max(areas.get(key, 0), int(mask.sum()))
                intensities.setdefault(key, []).append(float(image[mask].mean()))
    return {key: (areas[key], float(np.mean(intensities[key]))) for key in areas}


def walk_volume(
    n_slices: int,
    annotated: Mapping[int, Masks],
    predicted: Mapping[int, Masks],
    model: SliceModel,
    rules: Rules | None = None,
    cancel: Callable[[], bool] | None = None,
    on_slice: Callable[[int], None] | None = None,
) -> Propagated:
    """Walk from the annotated slices over every other slice of an ``n_slices`` volume.

    ``annotated``: the user's masks per annotated slice (their areas and intensities are the
    segments' references); ``predicted``: the model's masks there, what the walks start from and
    what those slices keep. ``on_slice(s)`` is called after each slice a walk segments.
    """
    rules = rules or Rules()
    slices = sorted(annotated)
    walker = _Walker(model, rules, _references(annotated, model), cancel, on_slice)
    walks = []
    for start, direction, limit in walks_for(slices, n_slices):
        live = {key: mask for key, mask in predicted[start].items() if mask.any()}
        walks.append(walker.run(_Walk(start, direction, limit), live))
    masks = {s: dict(predicted[s]) for s in slices}
    for s in range(n_slices):
        if s not in masks:
            masks[s] = _joined(s, [w for w in walks if s in w.masks or s in w.partial])
    return Propagated(masks, _stops(walks))


def _joined(s: int, walks: list[_Walk]) -> Masks:
    """Slice ``s`` from the walks that reached it: per segment, the nearest walk that carried it
    (the lower start on a tie); a part kept where a walk stopped only where no walk carried it."""
    joined: Masks = {}
    ordered = sorted(walks, key=lambda w: (w.distance(s), w.start))
    for walk in ordered:
        for key, mask in walk.masks.get(s, {}).items():
            joined.setdefault(key, mask)
    for walk in ordered:
        for key, mask in walk.partial.get(s, {}).items():
            joined.setdefault(key, mask)
    return joined


def _stops(walks: list[_Walk]) -> list[Stop]:
    """Every walk's stops, with how far the others went and whether the other side covered."""
    stops = []
    for walk in walks:
        for stop in walk.stops:
            others = [walk.reached(key) for key in walk.masks.get(stop.slice, {})]
            others_to = max(others, key=lambda s: s * walk.direction) if others else None
            covered = any(
                stop.segment in other.masks.get(stop.slice, {})
                for other in walks
                if other is not walk
            )
            stops.append(replace(stop, others_to=others_to, covered=covered))
    return sorted(stops, key=lambda stop: (stop.start, stop.direction, stop.slice))


class StrategyModel:
    """A :class:`SliceModel` on a volume's slices: a strategy (see :mod:`strategies`) on each
    slice in the window, and the ``zoom`` view for small pieces."""

    def __init__(self, volume_view: np.ndarray, window, engine, strategy, modality: str = "ct"):
        from . import strategies

        self.volume_view, self.window, self.engine = volume_view, window, engine
        self.strategy = strategies.without_refinement(strategy)
        self.small = strategies.STRATEGIES["zoom"]
        self.modality = modality
        self._rgb: dict[int, np.ndarray] = {}

    def rgb(self, s: int) -> np.ndarray:
        """Slice ``s`` in the window as 8-bit RGB (the last few are kept)."""
        from . import imaging

        if s not in self._rgb:
            if len(self._rgb) >= 4:
                self._rgb.pop(next(iter(self._rgb)))
            self._rgb[s] = imaging.to_rgb8(self.volume_view[s], self.window)
        return self._rgb[s]

    def image(self, s: int) -> np.ndarray:
        return self.rgb(s)[..., 0]

    def segment(self, s: int, prompts: Masks, small: bool = False) -> Masks:
        chooser = self.small if small else self.strategy
        return chooser.segment(self.rgb(s), prompts, self.engine, self.modality)


def propagate(
    volume: np.ndarray,
    geometry,
    annotated: Mapping[int, Masks],
    engine,
    strategy="box",
    window="auto",
    rules: Rules | None = None,
    modality: str = "ct",
    cancel: Callable[[], bool] | None = None,
    on_slice: Callable[[int], None] | None = None,
) -> tuple[dict[Hashable, np.ndarray], list[Stop]]:
    """Every slice of ``volume`` from the masks drawn on a few of its slices.

    ``annotated``: ``{slice: {segment: 2D mask}}``, slices numbered and laid out as
    ``geometry.view`` gives them; an annotated slice is complete (a segment not drawn there is
    absent there). ``strategy``: a name or object of :mod:`strategies`. Returns one 3D mask per
    segment in the volume's own layout, and the :class:`Stop` of every segment's walk. The inputs
    are never modified.
    """
    from . import imaging, strategies

    view = geometry.view(volume)
    _check_annotated(annotated, view)
    _, chooser = strategies.resolve(strategy, strategies.model_name_of(engine))
    model = StrategyModel(view, imaging.resolve_window(window, volume), engine, chooser, modality)
    rules = rules or Rules()
    predicted = {}
    for s, masks in sorted(annotated.items()):
        drawn = {key: mask.astype(bool) for key, mask in masks.items() if mask.any()}
        if rules.start_from == "drawn" or not drawn:
            predicted[s] = drawn
        else:
            predicted[s] = model.segment(s, drawn)
    walked = walk_volume(len(view), annotated, predicted, model, rules, cancel, on_slice)
    keys = list(dict.fromkeys(key for masks in annotated.values() for key in masks))
    outputs = {key: np.zeros(volume.shape, bool) for key in keys}
    views = {key: geometry.view(mask) for key, mask in outputs.items()}
    for s, masks in walked.masks.items():
        for key, mask in masks.items():
            views[key][s] = mask
    return outputs, walked.stops


def _check_annotated(annotated: Mapping[int, Masks], view: np.ndarray) -> None:
    if not any(mask.any() for masks in annotated.values() for mask in masks.values()):
        raise SettingError("No annotated slice holds a mask: draw the segments on a slice first.")
    for s, masks in annotated.items():
        if not 0 <= int(s) < len(view):
            raise SettingError(f"Annotated slice {s} is outside the volume's {len(view)} slices.")
        for key, mask in masks.items():
            if mask.shape != view.shape[1:]:
                raise SettingError(
                    f"The mask of {key!r} on slice {s} has shape {mask.shape}, the slice"
                    f" {view.shape[1:]}."
                )


def describe_stops(stops: list[Stop], names: Mapping[Hashable, str] | None = None) -> str:
    """The stops as one line (``; `` between them), for logs and result tables."""
    names = names or {}
    return "; ".join(stop.describe(names.get(stop.segment)) for stop in stops)


def annotated_slices(masks: Masks, geometry, which: str | int = "middle") -> list[int]:
    """Slices to keep prompts on when simulating a user who annotated only some slices.

    ``middle``: the one slice with the largest area of all segments together. A number ``K``:
    ``K`` slices evenly spaced among the slices where any segment has a label: the slices with
    labels are cut into ``K`` runs of (nearly) equal length and the middle slice of each run is
    taken (``1``: the middle of the labelled slices, which need not be the largest).
    """
    union = geometry.view(np.logical_or.reduce(list(masks.values())))
    if str(which) == "middle":
        return [int(np.argmax(union.sum(axis=(1, 2))))]
    try:
        count = int(which)
    except ValueError:
        count = 0
    if count < 1:
        raise SettingError(
            f"Unknown annotated-slice choice {which!r}: use 'middle' or a number of slices (1+)."
        )
    labelled = np.flatnonzero(union.any(axis=(1, 2)))
    count = min(count, len(labelled))
    return [int(labelled[(2 * i + 1) * len(labelled) // (2 * count)]) for i in range(count)]


def keep_slices(masks: Masks, geometry, slices) -> Masks:
    """Copies of ``masks`` emptied everywhere except on ``slices``."""
    kept = {}
    for key, mask in masks.items():
        copy = np.zeros_like(mask)
        for s in slices:
            geometry.view(copy)[s] = geometry.view(mask)[s]
        kept[key] = copy
    return kept
