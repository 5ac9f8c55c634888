"""Cohort evaluation from files: the loop of ``samzeroshot evaluate``.

Each case (:mod:`.cases`: an image, its masks and settings of its own) is read as a
:class:`~.volumes.Volume`, segmented by the pipeline and scored (:mod:`.scoring`); a
:class:`~.recorder.Recorder` keeps it. Outputs (a stable interface, read by scripts outside this
project):

* ``slices.csv`` - one row per scored slice (reference has any label): case, slice, dice, jaccard,
  sensitivity, precision, pixel counts, ``prompt_only_dice``; scores are for the union of all
  segments;
* ``cases.csv`` - one row per case: slice means, volume Dice/Jaccard, HD95, mean surface distance,
  the modality the strategy was told and why, and with ``propagate_from`` where each segment's
  walk stopped and why (``propagation_stops``, also in ``summary.json``);
* with ``--clicks N``: ``dice_by_clicks`` in both tables (the Dice after 0, 1, ..., N simulated
  correction clicks, ``;``-separated; see :mod:`corrections`) and in the summary (the means);
* ``summary.json`` - ``n_cases``, ``n_scored_slices``, ``mean_dice``, ``mean_jaccard`` (means over
  scored 2D slices, pooled over cases as the paper does), ``prompt_only_dice`` (the same mean for
  the prompt boxes themselves, filled: what the prompt alone gives), ``model``, ``strategy``,
  ``seconds``, ...

The files are written case by case by :class:`~.results.ResultsFolder`, so a stopped run keeps its
finished cases and a second run with the same settings carries on from them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from . import __version__
from .cases import Case, case_settings, read_case
from .errors import Cancelled, CaseError
from .recorder import Recorder, engine_about
from .results import CaseResult, ResultsFolder
from .scoring import case_scores, click_scores


def evaluate_case(
    case: Case,
    engine,
    parameters,
    propagate_from: str | None = None,
    cancel=None,
    clicks: int = 0,
    correction: str | None = None,
) -> CaseResult:
    """Segment one case with ``parameters`` (and the case's own settings) and score it.

    The one function that computes a case, in this process or on a cluster's worker. Each row
    also carries ``prompt_only_dice``: the Dice of the prompt boxes themselves, filled, a
    baseline that costs no model call. ``clicks``: simulated correction clicks per slice and
    segment after the first result (``dice_by_clicks``), applied with ``correction`` (see
    :mod:`interactive`).
    """
    from . import modality as modalities
    from . import pipeline, propagation

    started = time.perf_counter()
    volume, geometry, notes, reference, ignore = read_case(case, parameters.fill_nonfinite)
    prompts = reference
    if propagate_from is not None:
        prompts = pipeline.keep_slices(
            reference, geometry, pipeline.annotated_slices(reference, geometry, propagate_from)
        )
    modality, reason = modalities.decide(parameters.modality, volume, geometry)
    result = pipeline.segment_volume(
        volume,
        geometry,
        prompts,
        engine,
        strategy=parameters.strategy,
        window=case_settings(case, parameters)["window"],
        cancel=cancel,
        propagate=propagate_from is not None,
        modality=modality,
    )
    slice_rows, case_row = case_scores(case.name, result, reference, prompts, ignore, geometry)
    if clicks:
        views = (volume.voxels, reference, prompts, ignore)
        click_scores(slice_rows, case_row, views, result, engine, clicks, correction)
    case_row.update(
        n_segments=len(reference),
        seconds=time.perf_counter() - started,
        modality=modality,
        modality_reason=reason,
    )
    if propagate_from is not None:
        names = {key: f"label {key}" for key in reference}
        case_row["propagation_stops"] = propagation.describe_stops(result.stops, names)
    return CaseResult(case.name, slice_rows, case_row, notes)


def run_settings(
    parameters,
    source: dict[str, str],
    propagate_from: str | None = None,
    clicks: int = 0,
    correction: str | None = None,
) -> dict:
    """What an evaluation's results depend on: a results folder made with other settings is not
    resumed.

    ``source`` names the data (a layout's :func:`~.layouts.source`). The settings are those
    :class:`~.parameters.Parameters` marks as changing results
    (:meth:`~.parameters.Parameters.results_settings`).
    """
    from .interactive import DEFAULT_CORRECTION

    # Only runs with clicks name them, so that folders made before they existed still resume.
    with_clicks = (
        {"clicks": clicks, "correction": correction or DEFAULT_CORRECTION} if clicks else {}
    )
    return {
        **parameters.results_settings(),
        "propagate_from": propagate_from,
        **with_clicks,
        **source,
        "version": __version__,
    }


def evaluate(
    cases: Sequence[Case],
    folder: ResultsFolder,
    engine,
    parameters,
    propagate_from: str | None = None,
    skipped: Sequence[CaseError] = (),
    progress=None,
    cancel: Callable[[], bool] | None = None,
    clicks: int = 0,
    correction: str | None = None,
) -> dict:
    """Evaluate the cases not yet in ``folder`` in this process, recording each as it finishes; the
    summary.

    ``progress``: see :class:`~.recorder.Recorder`. ``cancel()`` is asked between
    cases: when it returns True, :class:`~.errors.Cancelled` is raised and the folder keeps
    every case finished so far. ``clicks``, ``correction``: see :func:`evaluate_case`.
    """

    recorder = Recorder(cases, folder, parameters, propagate_from, skipped, progress)
    recorder.engine_used(engine_about(engine))
    by_name = {case.name: case for case in cases}
    try:
        for name in recorder.todo:
            if cancel is not None and cancel():
                raise Cancelled()
            recorder.keep(
                evaluate_case(
                    by_name[name],
                    engine,
                    parameters,
                    propagate_from,
                    clicks=clicks,
                    correction=correction,
                )
            )
    finally:
        recorder.progress.close()
    return recorder.finish()
