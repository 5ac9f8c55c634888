"""Interactive SAM on one slice: a box gives a mask, clicks correct it (Qt-free).

The Segment Editor effect and ``samzeroshot evaluate --clicks`` both use :class:`SliceEditor`,
so what is measured is what the user gets. The slice is encoded once (through the engine's
embedding cache, shared with the module and across slices); every later box or click on it only
runs the decoder.

How a click reaches the model is a design choice (:data:`CORRECTIONS`), because LiteMedSAM was
trained with boxes and points alone do not suit it:

``points``
    The clicks alone (SAM's own interactive prompt), no box.
``box+points``
    The box with every click so far; an include click outside the box grows the box to it.
``box+points+mask``
    ``box+points`` and the previous result's low-resolution logits as the mask prompt.
``local``
    ``box+points+mask`` decoded, but only the part of the change that touches the click is
    taken: an include click adds the connected new region under it, an exclude click removes
    the connected part of the old mask under it; the rest of the mask is kept as it was.
``local-box``
    An include click is decoded as a box of its own around the click (its half side twice the
    click's distance to the current mask, at least 8 pixels) with the click as a point, and the
    part of that mask under the click is added; an exclude click is handled as in ``local``.
``bounded``
    ``local-box``, with every change kept inside a square around the click whose half side is
    twice the click's distance to the mask's border (at least 3 pixels): a click beside the
    border moves the border there, a click deep inside a wrong region may change all of it.

:data:`DEFAULT_CORRECTION` is the one chosen on the selection halves of the dev sets (README,
"Segment Editor effect").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .prompts import Prompt, box_prompt

CORRECTIONS = ("points", "box+points", "box+points+mask", "local", "local-box", "bounded")
#: The corrections that give the decoder the previous logits as a mask prompt.
MASK_PROMPTED = ("box+points+mask", "local", "local-box", "bounded")
#: Smallest half side of the window a ``bounded`` click may change, in pixels.
WINDOW_MIN = 3
#: Smallest half side of a ``local-box`` correction's box, in pixels.
LOCAL_BOX_MIN = 8
DEFAULT_CORRECTION = "bounded"


@dataclass(frozen=True)
class Click:
    """One user click on a slice: ``(row, col)`` in pixels; ``include`` adds, otherwise removes."""

    row: int
    col: int
    include: bool

    @property
    def point(self) -> tuple[float, float]:
        """The click as a SAM point ``(x, y)``."""
        return float(self.col), float(self.row)

    @property
    def label(self) -> int:
        """SAM's point label: 1 foreground (include), 0 background (exclude)."""
        return int(self.include)


def depth(region: np.ndarray) -> np.ndarray:
    """Distance of each region pixel to the nearest pixel outside it (the border counts as
    outside); 0 outside the region."""
    import SimpleITK as sitk

    padded = np.pad(region, 1, constant_values=False)
    outside = sitk.GetImageFromArray((~padded).astype(np.uint8))
    distance = sitk.SignedMaurerDistanceMap(
        outside, insideIsPositive=False, squaredDistance=False, useImageSpacing=False
    )
    # Signed distance to the outside set: negative on it, positive everywhere else.
    values = sitk.GetArrayFromImage(distance)[1:-1, 1:-1]
    return np.where(region, np.maximum(values, 0.0), 0.0)


def _component_at(mask: np.ndarray, row: int, col: int) -> np.ndarray:
    """The 4-connected part of ``mask`` that holds ``(row, col)`` (empty when it is not in it)."""
    import SimpleITK as sitk

    if not mask[row, col]:
        return np.zeros(mask.shape, bool)
    labels = sitk.GetArrayFromImage(
        sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), False)
    )
    return labels == labels[row, col]


def local_box(mask: np.ndarray, click: Click) -> np.ndarray:
    """A square box around ``click`` whose half side is twice its distance to ``mask`` (at
    least :data:`LOCAL_BOX_MIN`), clipped to the slice."""
    distance = float(depth(~mask)[click.row, click.col]) if mask.any() else 0.0
    half = max(LOCAL_BOX_MIN, 2.0 * distance)
    rows, cols = mask.shape
    return np.array(
        [
            max(0.0, click.col - half),
            max(0.0, click.row - half),
            min(float(cols), click.col + half + 1),
            min(float(rows), click.row + half + 1),
        ],
        dtype=np.float32,
    )


def click_window(mask: np.ndarray, click: Click) -> np.ndarray:
    """Where a ``bounded`` click may change the mask: a square around the click whose half side
    is twice the click's distance to the other side of the mask's border (at least
    :data:`WINDOW_MIN`)."""
    other_side = ~mask if click.include else mask
    distance = float(depth(other_side)[click.row, click.col]) if other_side.any() else 0.0
    half = int(np.ceil(max(WINDOW_MIN, 2.0 * distance)))
    window = np.zeros(mask.shape, bool)
    window[
        max(0, click.row - half) : click.row + half + 1,
        max(0, click.col - half) : click.col + half + 1,
    ] = True
    return window


def grown_box(box: np.ndarray | None, clicks: list[Click]) -> np.ndarray | None:
    """``box`` (x0, y0, x1, y1, exclusive ends) grown to hold every include click."""
    points = [(c.col, c.row) for c in clicks if c.include]
    if box is None or not points:
        return box
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return np.array(
        [
            min(box[0], min(xs)),
            min(box[1], min(ys)),
            max(box[2], max(xs) + 1),
            max(box[3], max(ys) + 1),
        ],
        dtype=np.float32,
    )


@dataclass
class SliceEditor:
    """One segment on one 8-bit RGB slice: its box, its clicks, its current mask.

    ``correction`` is one of :data:`CORRECTIONS`. ``mask`` is the current result (rows x cols,
    bool); :meth:`set_box` and :meth:`click` return the new one.
    """

    engine: object
    image: np.ndarray
    correction: str = DEFAULT_CORRECTION
    box: np.ndarray | None = None
    clicks: list[Click] = field(default_factory=list)
    mask: np.ndarray | None = None
    low_res: np.ndarray | None = None
    _embedding: object = None

    def __post_init__(self):
        if self.correction not in CORRECTIONS:
            raise ValueError(
                f"Unknown correction {self.correction!r}: choose one of {', '.join(CORRECTIONS)}."
            )
        if self.mask is None:
            self.mask = np.zeros(self.image.shape[:2], bool)

    @property
    def embedding(self):
        """The slice's embedding: encoded on first use (or taken from the engine's cache)."""
        if self._embedding is None:
            [self._embedding] = self.engine.encode([self.image])
        return self._embedding

    def _decode(self, prompt: Prompt, mask_input=None, keep: bool = True):
        [prediction] = self.engine.decode(
            self.embedding, [prompt], None if mask_input is None else [mask_input]
        )
        if keep:
            self.low_res = prediction.low_res_logits
        return prediction.mask

    def set_box(self, box) -> np.ndarray:
        """A new box ``(x0, y0, x1, y1)`` (pixels, exclusive ends): its mask; clicks are
        forgotten."""
        self.box = np.asarray(box, dtype=np.float32).reshape(4)
        self.clicks = []
        self.mask = self._decode(Prompt(segments=(0,), box=self.box))
        return self.mask

    def start_from(self, mask: np.ndarray, box=None) -> np.ndarray:
        """Take ``mask`` (e.g. a strategy's result) as the current one, to be corrected.

        ``box`` defaults to the mask's own; its box decode gives the logits that a mask prompt
        starts from (decoder only, on the cached embedding).
        """
        mask = np.asarray(mask, bool)
        if box is None and mask.any():
            box = box_prompt(mask)
        self.box = None if box is None else np.asarray(box, dtype=np.float32).reshape(4)
        self.clicks = []
        if self.box is not None and self.correction in MASK_PROMPTED:
            self._decode(Prompt(segments=(0,), box=self.box))
        self.mask = mask.copy()
        return self.mask

    def click(self, click: Click) -> np.ndarray:
        """Apply one correction click; the new mask."""
        self.clicks.append(click)
        if self.correction in ("local-box", "bounded") and click.include:
            box = local_box(self.mask, click)
            # A view of its own: its logits are not the segment's, so they are not kept.
            new = self._decode(
                Prompt(segments=(0,), points=[click.point], labels=[1], box=box), keep=False
            )
        else:
            new = self._decode(self._click_prompt(), self.low_res if self._with_mask() else None)
        self.mask = self._merged(new, click)
        return self.mask

    def _with_mask(self) -> bool:
        return self.correction in MASK_PROMPTED and self.low_res is not None

    def _click_prompt(self) -> Prompt:
        """The segment's box (grown to the include clicks) with every click so far."""
        box = None if self.correction == "points" else grown_box(self.box, self.clicks)
        return Prompt(
            segments=(0,),
            points=[c.point for c in self.clicks],
            labels=[c.label for c in self.clicks],
            box=box,
        )

    def _merged(self, new: np.ndarray, click: Click) -> np.ndarray:
        """The mask after a click: the decoder's, or only its change under the click."""
        if self.correction not in ("local", "local-box", "bounded"):
            return new
        changed = (new & ~self.mask) if click.include else (self.mask & ~new)
        part = _component_at(changed, click.row, click.col)
        if self.correction == "bounded":
            part &= click_window(self.mask, click)
        return (self.mask | part) if click.include else (self.mask & ~part)
