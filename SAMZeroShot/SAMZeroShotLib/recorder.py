"""Each finished case of a cohort into its results folder, and its line in the progress view.

The loop of :func:`~.evaluation.evaluate` and the cluster runner (:mod:`.cluster`) both hand their
cases to a :class:`Recorder`, so that a cohort's files and log are the same however it was
computed; the folder itself is :class:`~.results.ResultsFolder`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .cases import Case
from .errors import CaseError
from .results import CaseResult, ResultsFolder


def engine_about(engine) -> dict[str, str]:
    """Where and how an engine runs, for the summary (``threads``: of each process that ran
    cases)."""
    return {
        "device": engine.device,
        "precision": engine.precision,
        "backend": engine.backend,
        "threads": str(engine.threads),
    }


class Recorder:
    """Keeps each finished case in the results folder and reports it, whoever computed it."""

    def __init__(
        self,
        cases: Sequence[Case],
        folder: ResultsFolder,
        parameters,
        propagate_from: str | None,
        skipped: Sequence[CaseError] = (),
        progress: Callable[[int, int], object] | None = None,
    ):
        """``progress(total, done)`` makes the view of the run's progress (a
        :class:`~.progress.Counter`; default: silent)."""
        from .progress import Counter

        about = {**parameters.summary_settings(), "propagate_from": propagate_from}
        own = {case.name: case.settings for case in cases if case.settings}
        if own:
            about["case_settings"] = own
        self.folder, self.n_cases = folder, len(cases)
        self.todo = folder.plan(
            [case.name for case in cases],
            [{"file": p.path, "problem": p.problem} for p in skipped],
            about,
        )
        self.progress = (progress or Counter)(len(cases), len(cases) - len(self.todo))
        if len(self.todo) < len(cases):
            self.progress.note(
                f"resuming: {len(cases) - len(self.todo)} of {len(cases)} cases are already in "
                f"{folder.folder}"
            )
        self._engines: dict[str, list[str]] = {}

    def engine_used(self, about: dict[str, str]) -> None:
        """Note where a case ran (device, precision, backend); workers that differ are all named."""
        for key, value in about.items():
            seen = self._engines.setdefault(key, [])
            if value not in seen:
                seen.append(value)
                self.folder.about[key] = ", ".join(seen)

    def keep(self, result: CaseResult) -> None:
        self.folder.record(result)
        for note in result.notes:
            self.progress.note(f"{result.name}: {note}")
        row = result.case_row
        if row.get("propagation_stops"):
            self.progress.note(f"{result.name}: propagation stopped: {row['propagation_stops']}")
        self.progress.advance(
            f"{result.name}: mean Dice {row['mean_dice']:.4f} over {row['n_scored_slices']} slices "
            f"({row['seconds']:.1f} s)",
            slices=row["n_segmented_slices"],
        )

    def fail(self, case: Case, reason: str) -> None:
        """A case that could not be computed: listed in the summary; a later run tries it again."""
        self.folder.fail(case.name, str(case.image_path), reason)
        self.progress.note(f"{case.name}: failed: {reason}")

    def finish(self) -> dict:
        return self.folder.finish()
