"""The results folder of a cohort evaluation: written case by case, and resumable.

Whoever computes the cases (a loop here, or workers elsewhere), one writer owns the folder and is
handed each finished case: :class:`ResultsFolder` opens the folder and checks its settings,
:meth:`~ResultsFolder.plan` says which cases are still to do, :meth:`~ResultsFolder.record` keeps
one finished case, :meth:`~ResultsFolder.fail` lists a case that could not be computed (a later
run tries it again) and :meth:`~ResultsFolder.finish` marks the results complete. The writer holds
the folder's lock (:class:`~.files.FolderLock`) from opening to :meth:`~ResultsFolder.close`, so a
second run on the same folder is refused (:class:`~.errors.FolderInUse`) instead of computing the
same cases again into the same files.

Files (``slices.csv``, ``cases.csv`` and ``summary.json`` are a stable interface):

* ``settings.json`` - what the results depend on (model, checkpoint digest, strategy, ...); a run
  with other settings refuses the folder unless told to overwrite it;
* ``journal.jsonl`` - one line per finished case with its rows at full precision, appended and
  synced to disk before anything else: what a resumed run continues from;
* ``slices.csv`` / ``cases.csv`` - rows appended per case (synced); rewritten sorted by case and
  slice when the run finishes, so they read as an uninterrupted run's;
* ``summary.json`` - replaced atomically after each case; ``"complete": false`` until the end.
"""

from __future__ import annotations

import csv
import io
import json
import math
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import OutputError
from .files import (
    FolderLock,
    append_synced,
    check_output_file,
    writable_folder,
    write_text_atomically,
)
from .metrics import SLICE_COLUMNS

SLICE_FIELDS = (
    ("case", "slice")
    + SLICE_COLUMNS
    + ("reference_pixels", "predicted_pixels", "prompted", "prompt_only_dice")
)
CASE_FIELDS = (
    "case",
    "n_scored_slices",
    "n_segmented_slices",
    "mean_dice",
    "mean_jaccard",
    "volume_dice",
    "volume_jaccard",
    "hd95_mm",
    "mean_surface_distance_mm",
    "n_segments",
    "seconds",
    "prompt_only_dice",
    "modality",
    "modality_reason",
    "propagation_stops",
)
SETTINGS_FILE, JOURNAL_FILE, SUMMARY_FILE = "settings.json", "journal.jsonl", "summary.json"
SLICES_FILE, CASES_FILE = "slices.csv", "cases.csv"
#: Every file the folder's writer makes (and the only ones ``overwrite`` removes).
FILES = (SUMMARY_FILE, SLICES_FILE, CASES_FILE, JOURNAL_FILE, SETTINGS_FILE)


@dataclass
class CaseResult:
    """One finished case: its scored slices, its summary row and any notes about its input."""

    name: str
    slice_rows: list[dict]
    case_row: dict
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "case": self.name,
                "slices": self.slice_rows,
                "row": self.case_row,
                "notes": self.notes,
            }
        )

    @classmethod
    def from_json(cls, line: str) -> CaseResult:
        record = json.loads(line)
        return cls(record["case"], record["slices"], record["row"], record.get("notes", []))


def csv_text(rows: Iterable[dict], fields: Sequence[str], header: bool) -> str:
    """Rows as CSV text; floats with six decimals."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\r\n"
    )
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return buffer.getvalue()


def _cell(value):
    """A table cell: floats with six decimals, a list of floats (a curve) ``;``-separated."""
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, (list, tuple)):
        return ";".join(_cell(float(v)) for v in value)
    return value


def _differences(stored: Mapping, wanted: Mapping) -> str:
    keys = [k for k in dict.fromkeys(list(stored) + list(wanted)) if stored.get(k) != wanted.get(k)]
    return "; ".join(f"{k}: {stored.get(k)!r} there, {wanted.get(k)!r} now" for k in keys)


class ResultsFolder:
    """Writes one evaluation's results into ``folder``, keeping every finished case on disk.

    Opening takes the folder's lock (:class:`~.files.FolderLock`; another run holding it raises
    :class:`~.errors.FolderInUse`), checks that the folder can be written, that it holds no
    results of other settings (unless ``overwrite``: then this writer's files are removed first,
    nothing else), and repairs what an interrupted run left: a half-written last line or table
    row. The lock is given back by :meth:`close` (or leaving a ``with`` block); also, as a last
    resort, when the object is garbage-collected or the process exits. Opening that fails gives it
    back at once. The folder cannot be pickled: workers hand their cases to its one writer.
    """

    def __init__(self, folder, settings: Mapping, overwrite: bool = False):
        self.folder = writable_folder(folder)
        self.lock = FolderLock(self.folder).acquire()
        weakref.finalize(self, self.lock.release)
        try:
            self._open(settings, overwrite)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, settings: Mapping, overwrite: bool) -> None:
        self.settings = dict(settings)
        # A run with simulated clicks adds its Dice curve to both tables.
        extra = ("dice_by_clicks",) if self.settings.get("clicks") else ()
        self.slice_fields, self.case_fields = SLICE_FIELDS + extra, CASE_FIELDS + extra
        for name in FILES:
            check_output_file(self.folder / name)
        if overwrite:
            for name in FILES:
                (self.folder / name).unlink(missing_ok=True)
        self.results, journal_end = self._read_journal()
        self._check_settings()
        # The folder is ours from here on: clear what a stopped run left half-written.
        self._remove_partials()
        with open(self._path(JOURNAL_FILE), "ab") as journal:
            journal.truncate(journal_end)
        self._write_tables()
        self.planned: list[str] = []
        self.skipped: list[dict] = []
        self.failed: list[dict] = []
        self.about: dict[str, object] = {}

    def close(self) -> None:
        """Give the folder's lock back; the files stay as they are (nothing is written)."""
        self.lock.release()

    def __enter__(self) -> ResultsFolder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- opening ----------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.folder / name

    def _remove_partials(self) -> None:
        """Temporary files of atomic writes that a killed run could not clean up."""
        for name in FILES:
            for leftover in self.folder.glob(f".*.partial-{name}"):
                leftover.unlink(missing_ok=True)

    def _check_settings(self) -> None:
        """Refuse to mix these results with recorded results of other settings; else store the
        settings."""
        path = self._path(SETTINGS_FILE)
        if not path.exists():
            found = [name for name in FILES if self._path(name).exists()]
            if found:
                raise OutputError(
                    f"{self.folder}: holds results ({', '.join(found)}) without a record of their "
                    "settings: choose another output folder, or replace them (--overwrite)."
                )
        elif self.results:
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                raise OutputError(
                    f"{path}: damaged: choose another output folder, or replace the results "
                    "(--overwrite)."
                ) from None
            if stored != self.settings:
                raise OutputError(
                    f"{self.folder}: holds results made with other settings"
                    f" ({_differences(stored, self.settings)}): run with the same settings to"
                    " resume, choose another output folder, or replace them (--overwrite)."
                )
        # No case is recorded under other settings: from now on the folder holds these.
        text = json.dumps(self.settings, indent=2) + "\n"
        if not path.exists() or path.read_text(encoding="utf-8", errors="replace") != text:
            write_text_atomically(path, text)

    def _read_journal(self) -> tuple[dict[str, CaseResult], int]:
        """Recorded cases, and where the journal's last whole line ends (a stop may cut the last one
        short)."""
        path = self._path(JOURNAL_FILE)
        data = path.read_bytes() if path.exists() else b""
        results, offset = {}, 0
        for number, line in enumerate(data.splitlines(keepends=True), 1):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("cut short")
                result = CaseResult.from_json(line.decode("utf-8"))
            except (ValueError, KeyError, TypeError):
                if offset + len(line) == len(data):  # the last line: a write that was stopped
                    break
                raise OutputError(
                    f"{path}: damaged at line {number}: choose another output folder, "
                    "or start again (--overwrite)."
                ) from None
            results[result.name] = result
            offset += len(line)
        return results, offset

    # -- writing ----------------------------------------------------------------------------
    @property
    def recorded(self) -> list[str]:
        """Names of the cases already in the folder, sorted."""
        return sorted(self.results)

    def plan(
        self, cases: Sequence[str], skipped: Sequence[dict] = (), about: Mapping | None = None
    ) -> list[str]:
        """Declare the run's cases; return those still to do, in the order given.

        ``skipped`` lists bad inputs left out (``{"file", "problem"}``); ``about`` adds fields to
        the summary (model, strategy, device, ...). Recorded cases that are not in ``cases`` make
        the folder another run's: refused.
        """
        foreign = sorted(set(self.results) - set(cases))
        if foreign:
            raise OutputError(
                f"{self.folder}: holds results for cases that are not in this cohort "
                f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}): choose another "
                "output folder, or replace them (--overwrite)."
            )
        self.planned, self.skipped, self.about = list(cases), list(skipped), dict(about or {})
        return [name for name in cases if name not in self.results]

    def record(self, result: CaseResult) -> dict:
        """Keep one finished case on disk (journal first, then tables, then summary); the
        summary."""
        if result.name in self.results:
            raise ValueError(f"case {result.name!r} is already recorded")
        append_synced(self._path(JOURNAL_FILE), result.to_json() + "\n")
        self.results[result.name] = result
        append_synced(
            self._path(SLICES_FILE), csv_text(result.slice_rows, self.slice_fields, header=False)
        )
        append_synced(
            self._path(CASES_FILE), csv_text([result.case_row], self.case_fields, header=False)
        )
        return self._write_summary(complete=False)

    def fail(self, case: str, file: str, reason: str) -> dict:
        """List a case that could not be computed (``failed`` in the summary); the summary."""
        self.failed.append({"case": case, "file": file, "reason": reason})
        return self._write_summary(complete=False)

    def finish(self) -> dict:
        """Tables sorted by case and slice, and the summary marked complete (when every planned case
        is in)."""
        self._write_tables()
        return self._write_summary(complete=all(name in self.results for name in self.planned))

    def _ordered(self) -> list[CaseResult]:
        return [self.results[name] for name in sorted(self.results)]

    def _write_tables(self) -> None:
        """Both tables as the journal has them, sorted by case and slice; a table already so is left
        alone."""
        ordered = self._ordered()
        slice_rows = sorted(
            (row for r in ordered for row in r.slice_rows),
            key=lambda row: (row["case"], row["slice"]),
        )
        for name, text in (
            (SLICES_FILE, csv_text(slice_rows, self.slice_fields, header=True)),
            (CASES_FILE, csv_text([r.case_row for r in ordered], self.case_fields, header=True)),
        ):
            path = self._path(name)
            if not path.exists() or path.read_bytes() != text.encode("utf-8"):
                write_text_atomically(path, text)

    def _write_summary(self, complete: bool) -> dict:
        summary = summarize(self._ordered(), self.about)
        summary.update(
            complete=complete,
            n_cases_planned=len(self.planned),
            skipped=self.skipped,
            failed=self.failed,
            notes={r.name: r.notes for r in self._ordered() if r.notes},
            propagation_stops={
                r.name: r.case_row["propagation_stops"]
                for r in self._ordered()
                if r.case_row.get("propagation_stops")
            },
            settings=self.settings,
        )
        write_text_atomically(self._path(SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")
        return summary


def summarize(results: Sequence[CaseResult], about: Mapping) -> dict:
    """Means over scored slices pooled over cases (as the paper does); ``about`` fields in between.

    ``seconds`` is the time spent on the cases themselves (reading, segmenting, scoring), summed
    over every run that added to the folder.
    """
    slice_rows = [row for result in results for row in result.slice_rows]
    case_rows = [result.case_row for result in results]
    dice = np.array([r["dice"] for r in slice_rows], dtype=float)

    def mean(name, function=np.mean):
        return float(function([r[name] for r in slice_rows])) if slice_rows else math.nan

    seconds = float(sum(r["seconds"] for r in case_rows))
    curves = [r["dice_by_clicks"] for r in slice_rows if "dice_by_clicks" in r]
    # Mean Dice after 0, 1, ..., N simulated clicks, over the same slices as mean_dice.
    by_clicks = (
        {"dice_by_clicks": [float(v) for v in np.mean(curves, axis=0)]}
        if curves and len(curves) == len(slice_rows)
        else {}
    )
    return {
        "n_cases": len(case_rows),
        "n_scored_slices": len(slice_rows),
        "mean_dice": float(dice.mean()) if dice.size else math.nan,
        "mean_jaccard": mean("jaccard"),
        # The same mean for the prompt boxes themselves, filled: what the prompt alone gives.
        "prompt_only_dice": mean("prompt_only_dice"),
        "median_dice": float(np.median(dice)) if dice.size else math.nan,
        "mean_sensitivity": mean("sensitivity", np.nanmean),
        "mean_precision": mean("precision", np.nanmean),
        **by_clicks,
        **about,
        "seconds": seconds,
        "seconds_per_slice": seconds / max(sum(r["n_segmented_slices"] for r in case_rows), 1),
    }
