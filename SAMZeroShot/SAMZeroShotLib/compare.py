"""Two ``evaluate`` results side by side: is B better than A, and how sure is that?

Slices are paired by ``(case, slice)``. The difference is B's mean Dice minus A's (means over
the same scored slices, as in ``summary.json``). Its 95 % interval comes from a bootstrap over
independent units: whole cases, since the slices of one volume are not independent of one
another. A single case (one CT volume) has only one such unit, so its scored slices are cut into
blocks of consecutive slices and the blocks are resampled instead; the result names its
``unit``. The seed is fixed, so the same folders always give the same interval.

B is called better (or worse) only when the interval excludes 0.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CompareError
from .files import write_text_atomically

RESAMPLES = 10000
SEED = 0
CONFIDENCE = 0.95
#: Slices per bootstrap block when there is one case: neighbouring slices (2.5 mm apart on the
#: dev CT) look alike, so a block must span several; 5 gives about ten blocks on half a volume.
BLOCK_SLICES = 5


@dataclass
class Result:
    """One ``evaluate`` folder: its summary and the Dice of each scored ``(case, slice)``."""

    folder: Path
    summary: dict
    dice: dict[tuple[str, int], float]


def read_result(folder) -> Result:
    folder = Path(folder)
    table = folder / "slices.csv"
    if not table.is_file():
        raise CompareError(f"{folder}: no slices.csv (not a samzeroshot evaluate output folder)")
    try:
        with open(table, newline="") as handle:
            dice = {
                (row["case"], int(row["slice"])): float(row["dice"])
                for row in csv.DictReader(handle)
            }
    except (KeyError, ValueError) as error:
        raise CompareError(f"{table}: unreadable ({error})") from None
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return Result(folder, summary, dice)


def _listed(names) -> str:
    names = sorted(names)
    return ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")


def check_paired(a: Result, b: Result) -> list[tuple[str, int]]:
    """The shared ``(case, slice)`` keys; raises :class:`CompareError` unless both scored the
    same."""
    cases_a, cases_b = {key[0] for key in a.dice}, {key[0] for key in b.dice}
    if cases_a != cases_b:
        parts = [
            f"only in {result.folder}: {_listed(only)}"
            for result, only in ((a, cases_a - cases_b), (b, cases_b - cases_a))
            if only
        ]
        raise CompareError(
            f"the folders scored different cases ({'; '.join(parts)}): evaluate both on the same"
            " images and masks"
        )
    if set(a.dice) != set(b.dice):
        differing = {key[0] for key in set(a.dice) ^ set(b.dice)}
        raise CompareError(
            f"the folders scored different slices of {_listed(differing)}: evaluate both with the"
            " same masks and options"
        )
    if not a.dice:
        raise CompareError(f"{a.folder}: no scored slices")
    return sorted(a.dice)


def units_of(
    keys: list[tuple[str, int]], block_slices: int = BLOCK_SLICES
) -> tuple[str, list[list[tuple[str, int]]]]:
    """``(unit name, groups of keys)``: one group per case, or blocks of slices for one case.

    Blocks hold up to ``block_slices`` scored slices with consecutive numbers; a gap in the
    numbering (slices not scored, or held out) starts a new block.
    """
    cases = sorted({case for case, _ in keys})
    if len(cases) > 1:
        return "case", [[key for key in keys if key[0] == case] for case in cases]
    blocks: list[list[tuple[str, int]]] = []
    for key in sorted(keys, key=lambda k: k[1]):
        if blocks and len(blocks[-1]) < block_slices and key[1] == blocks[-1][-1][1] + 1:
            blocks[-1].append(key)
        else:
            blocks.append([key])
    return f"block of up to {block_slices} consecutive slices (one case)", blocks


def bootstrap_interval(
    sums: np.ndarray,
    counts: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile interval of the pooled mean ``sum(sums) / sum(counts)`` over resampled units."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(resamples, len(sums)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def compare(
    folder_a,
    folder_b,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    block_slices: int = BLOCK_SLICES,
) -> dict:
    """The comparison of two ``evaluate`` folders as a JSON-ready dict (B minus A)."""
    a, b = read_result(folder_a), read_result(folder_b)
    keys = check_paired(a, b)
    unit, groups = units_of(keys, block_slices)
    differences = [np.array([b.dice[key] - a.dice[key] for key in group]) for group in groups]
    sums = np.array([d.sum() for d in differences])
    counts = np.array([len(d) for d in differences], dtype=float)
    low, high = bootstrap_interval(sums, counts, resamples, seed)
    means = sums / counts
    mean_a = float(np.mean([a.dice[key] for key in keys]))
    mean_b = float(np.mean([b.dice[key] for key in keys]))
    verdict = "B better" if low > 0 else "A better" if high < 0 else "no difference shown"
    return {
        "a": {"folder": str(a.folder), "strategy": a.summary.get("strategy"), "mean_dice": mean_a},
        "b": {"folder": str(b.folder), "strategy": b.summary.get("strategy"), "mean_dice": mean_b},
        "n_cases": len({case for case, _ in keys}),
        "n_slices": len(keys),
        "difference": float(sums.sum() / counts.sum()),
        "interval": [low, high],
        "confidence": CONFIDENCE,
        "unit": unit,
        "n_units": len(groups),
        "resamples": resamples,
        "seed": seed,
        "wins": {
            "a": int((means < 0).sum()),
            "b": int((means > 0).sum()),
            "ties": int((means == 0).sum()),
        },
        "verdict": verdict,
    }


def report(result: dict) -> str:
    """A few lines for people."""
    a, b = result["a"], result["b"]
    low, high = result["interval"]
    wins = result["wins"]
    return "\n".join(
        [
            f"A {a['folder']} ({a['strategy']}): mean Dice {a['mean_dice']:.4f}",
            f"B {b['folder']} ({b['strategy']}): mean Dice {b['mean_dice']:.4f}",
            (
                f"B - A: {result['difference']:+.4f}, 95 % interval [{low:+.4f}, {high:+.4f}] over"
                f" {result['n_slices']} slices of {result['n_cases']} cases (bootstrap over"
                f" {result['n_units']} units: {result['unit']})"
            ),
            (
                f"wins per unit: A {wins['a']}, B {wins['b']}, ties {wins['ties']};"
                f" {result['verdict']}"
            ),
        ]
    )


def output_path(folder_b, out=None) -> Path:
    """Where ``compare.json`` goes: ``out`` (a .json file, or a folder), else inside folder B."""
    if out is None:
        return Path(folder_b) / "compare.json"
    out = Path(out)
    return out if out.suffix == ".json" else out / "compare.json"


def write(result: dict, path: Path) -> None:
    """Write ``result`` as JSON to ``path``, replacing an earlier file only once complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(result, indent=2) + "\n")
