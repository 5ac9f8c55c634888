"""Held-out accuracy: strategies chosen on one half of each dev set, reported on the other.

    .venv/bin/python Utilities/heldout.py [--data ../shared/data] [--work /tmp/samzeroshot-heldout]

The split is fixed in ``Utilities/dev_split.json`` (see ``make_split`` for how it was made):

* cxr_dev, 100 radiographs: by case, with all images from one source (the same patient or
  publication, ``index.csv``'s url) in the same half, so that no patient is in both halves.
* ct_dev2, two CT volumes with threshold-derived references: by volume (pyrad_lung1 for
  selection, pyrad_lung2 held out).
* ct_dev, one CT volume: its axial slices in blocks of 10 (25 mm), alternating. Neighbouring
  2.5 mm slices are nearly the same image, so odd/even slices would put near-copies in both
  halves; 10-slice blocks keep the shared border to one slice pair per block. The even blocks
  (slices 0-9, 20-29, ...) are held out: they hold both ends of the lung, the hardest slices.

Every strategy runs in this one process on one engine, with an embedding cache on disk, so a
view shared by several strategies (or a second run) is encoded once. Each (set, half, strategy)
is a standard ``samzeroshot evaluate`` folder under ``--work``/results; each is compared with
``box`` on the same half (``compare.json`` inside it). The summary is written to
``Utilities/heldout_results.json`` (means and comparisons only, no per-image data).
"""

import argparse
import csv
import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SAMZeroShot"))

from SAMZeroShotLib import (  # noqa: E402
    accuracy_guard,
    compare,
    evaluation,
    layouts,
    models,
    results,
    strategies,
)
from SAMZeroShotLib.cases import IGNORE_LABEL, prepare  # noqa: E402
from SAMZeroShotLib.engine import EmbeddingCache, SamEngine  # noqa: E402
from SAMZeroShotLib.parameters import Parameters  # noqa: E402

SPLIT = ROOT / "Utilities" / "dev_split.json"
RESULTS = ROOT / "Utilities" / "heldout_results.json"
HALVES = ("selection", "heldout")
CT_BLOCK = 10
BASELINE = "box"
# Cheap first: views shared with later strategies are then already in the cache.
DEFAULT_STRATEGIES = (
    "box",
    "prompt-only",
    "paper",
    "zoom",
    "flip4",
    "flip4-xray",
    "crop",
    "box+crop",
    "flip4+crop",
    "flip-v",
    "adaptive",
    "adaptive@0.85",
    "adaptive@0.88",
    "adaptive@0.92",
    "adaptive@0.94",
    "zoom@0.25",
    "zoom@0.5",
    "refine",
)
#: Other values of a parameter, tried on the selection halves only (to choose it): of one dev set
#: or, where None, of all.
TUNING = {
    **{
        f"adaptive@{score}": (
            None,
            replace(strategies.STRATEGIES["adaptive"], name=f"adaptive@{score}", min_score=score),
        )
        for score in strategies.ADAPTIVE_MIN_SCORES_TRIED
        if score != strategies.CHOSEN_FROM_DATA["adaptive_min_score"]
    },
    "zoom@0.25": ("ct_dev", replace(strategies.STRATEGIES["zoom"], name="zoom@0.25", zoom=0.25)),
    "zoom@0.5": ("ct_dev", replace(strategies.STRATEGIES["zoom"], name="zoom@0.5", zoom=0.5)),
}
strategies.STRATEGIES.update({name: strategy for name, (_, strategy) in TUNING.items()})


def make_split(data: Path) -> dict:
    """The split as first written to dev_split.json (kept to show how it was made)."""
    with open(data / "cxr_dev" / "index.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    groups = {}
    for row in rows:
        groups.setdefault(row["url"] or row["id"], []).append(row["id"])
    halves = {half: [] for half in HALVES}
    # Sources in the order of a hash of their name; each goes to the half with fewer cases so far.
    for source in sorted(groups, key=lambda name: hashlib.sha256(name.encode()).hexdigest()):
        half = min(HALVES, key=lambda h: (len(halves[h]), HALVES.index(h)))
        halves[half] += groups[source]
    n_slices = 133
    blocks = {half: [] for half in HALVES}
    for start in range(0, n_slices, CT_BLOCK):
        half = "heldout" if (start // CT_BLOCK) % 2 == 0 else "selection"
        blocks[half].append([start, min(start + CT_BLOCK, n_slices) - 1])
    return {
        "cxr_dev": {
            "rule": (
                "by source (index.csv url): sources ordered by the SHA-256 of their url, each "
                "given to the half with fewer cases so far; ties to selection"
            ),
            **{half: sorted(halves[half]) for half in HALVES},
        },
        "ct_dev": {
            "rule": (
                f"axial slices (array index k of lidc0001) in blocks of {CT_BLOCK}; even blocks "
                "held out (both ends of the lung), odd blocks for selection"
            ),
            **{half: blocks[half] for half in HALVES},
        },
    }


def build_halves(data: Path, split: dict, work: Path) -> dict:
    """``{(set, half): (images folder, masks folder)}`` laid out for ``evaluate`` under ``work``."""
    import SimpleITK as sitk

    folders = {}
    for half in HALVES:
        images, masks = work / "cxr_dev" / half / "images", work / "cxr_dev" / half / "masks"
        for folder in (images, masks):
            folder.mkdir(parents=True, exist_ok=True)
        for case in split["cxr_dev"][half]:
            for source, folder, ext in (
                (data / "cxr_dev" / "images", images, ".jpg"),
                (data / "cxr_dev" / "masks", masks, ".png"),
            ):
                link = folder / f"{case}{ext}"
                if not link.exists():
                    link.symlink_to((source / f"{case}{ext}").resolve())
        folders[("cxr_dev", half)] = (images, masks)

        images, masks = work / "ct_dev" / half / "images", work / "ct_dev" / half / "masks"
        for folder in (images, masks):
            folder.mkdir(parents=True, exist_ok=True)
        for image in sorted((data / "ct_dev" / "images").iterdir()):
            link = images / image.name
            if not link.exists():
                link.symlink_to(image.resolve())
            mask = masks / image.name
            if not mask.exists():
                labels = sitk.ReadImage(str(data / "ct_dev" / "masks" / image.name))
                array = sitk.GetArrayFromImage(labels)
                keep = np.zeros(len(array), bool)
                for first, last in split["ct_dev"][half]:
                    keep[first : last + 1] = True
                array[~keep] = IGNORE_LABEL  # the other half's slices: left out entirely
                out = sitk.GetImageFromArray(array)
                out.CopyInformation(labels)
                sitk.WriteImage(out, str(mask))
        folders[("ct_dev", half)] = (images, masks)

        images, masks = work / "ct_dev2" / half / "images", work / "ct_dev2" / half / "masks"
        for folder in (images, masks):
            folder.mkdir(parents=True, exist_ok=True)
        for volume in split["ct_dev2"][half]:
            for source, folder in (
                (data / "ct_dev2" / "images", images),
                (data / "ct_dev2" / "masks", masks),
            ):
                link = folder / f"{volume}.nii.gz"
                if not link.exists():
                    link.symlink_to((source / f"{volume}.nii.gz").resolve())
        folders[("ct_dev2", half)] = (images, masks)
    return folders


def evaluate_folder(images: Path, masks: Path, out: Path, engine, strategy: str) -> dict:
    """``samzeroshot evaluate --images images --masks masks --out out --strategy strategy`` on
    ``engine``."""
    parameters = Parameters(strategy=strategy)
    cases, skipped = prepare(layouts.paired(images, masks), images)
    settings = evaluation.run_settings(
        parameters, layouts.source("paired", images=images, masks=masks)
    )
    with results.ResultsFolder(out, settings) as folder:
        return evaluation.evaluate(cases, folder, engine, parameters, skipped=skipped)


def run(data: Path, work: Path, names, halves, precision: str = "fp32") -> dict:
    split = json.loads(SPLIT.read_text())
    folders = build_halves(data, split, work)
    model = models.load_model("litemedsam", device="cpu")
    engine = SamEngine(
        model,
        precision=precision,
        cache=EmbeddingCache(directory=work / "embeddings"),
        log=print,
        check=accuracy_guard.GUARD,
    )
    results_root = work / ("results" if precision == "fp32" else f"results-{precision}")
    everything = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    # Strategies are chosen in float32; another precision's numbers go beside, for compare.
    results = everything if precision == "fp32" else everything.setdefault(precision, {})
    for name in names:
        for (dataset, half), (images, masks) in folders.items():
            if half not in halves or (
                name in TUNING and (half != "selection" or TUNING[name][0] not in (None, dataset))
            ):
                continue
            out = results_root / dataset / half / name
            if not (out / "summary.json").is_file():
                evaluate_folder(images, masks, out, engine, name)
            summary = json.loads((out / "summary.json").read_text())
            entry = {
                key: summary[key]
                for key in (
                    "n_cases",
                    "n_scored_slices",
                    "mean_dice",
                    "mean_jaccard",
                    "prompt_only_dice",
                    "seconds_per_slice",
                )
            }
            with open(out / "cases.csv", newline="") as handle:
                entry["modalities"] = sorted({row["modality"] for row in csv.DictReader(handle)})
            entry["precision"] = engine.precision
            baseline = results_root / dataset / half / BASELINE
            if name != BASELINE and (baseline / "summary.json").is_file():
                versus = compare.compare(baseline, out)
                compare.write(versus, compare.output_path(out))
                entry["vs_box"] = {
                    key: versus[key]
                    for key in ("difference", "interval", "unit", "n_units", "wins", "verdict")
                }
            results.setdefault(dataset, {}).setdefault(half, {})[name] = entry
            print(
                f"{dataset} {half} {name}: mean Dice {entry['mean_dice']:.4f}"
                + (
                    f", vs box {entry['vs_box']['difference']:+.4f}"
                    f" [{entry['vs_box']['interval'][0]:+.4f},"
                    f" {entry['vs_box']['interval'][1]:+.4f}]"
                    if "vs_box" in entry
                    else ""
                ),
                flush=True,
            )
            RESULTS.write_text(json.dumps(everything, indent=1, sort_keys=True) + "\n")
    return results


def _versus(entry) -> str:
    versus = entry.get("vs_box")
    if not versus:
        return ""
    low, high = versus["interval"]
    mark = " **better**" if low > 0 else " worse" if high < 0 else ""
    return f"{versus['difference']:+.4f} [{low:+.4f}, {high:+.4f}]{mark}"


def table(results: dict, names) -> str:
    """The README's table: mean Dice per half and, on the held-out halves, the difference from
    box."""
    sets = ("ct_dev", "ct_dev2", "cxr_dev")
    lines = [
        "| strategy | "
        + " | ".join(f"{name} selection | {name} held-out | held-out vs box" for name in sets)
        + " |",
        "|---|" + "---|" * 3 * len(sets),
    ]
    for name in names:
        cells = []
        for dataset in sets:
            halves = results.get(dataset, {})
            selection, heldout = (
                halves.get("selection", {}).get(name),
                halves.get("heldout", {}).get(name),
            )
            cells += [
                f"{selection['mean_dice']:.4f}" if selection else "",
                f"{heldout['mean_dice']:.4f}" if heldout else "",
                _versus(heldout) if heldout else "",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/samzeroshot-heldout"))
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=list(DEFAULT_STRATEGIES),
        choices=sorted(strategies.STRATEGIES),
    )
    parser.add_argument("--halves", nargs="+", default=list(HALVES), choices=HALVES)
    parser.add_argument("--precision", default="fp32", help="the engine's precision (auto: chosen)")
    parser.add_argument(
        "--make-split", action="store_true", help="write dev_split.json anew (done once)"
    )
    parser.add_argument(
        "--table", action="store_true", help="print the README table from heldout_results.json"
    )
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(RESULTS.read_text()), args.strategies))
        return
    if args.make_split:
        SPLIT.write_text(json.dumps(make_split(args.data), indent=1) + "\n")
        return
    run(args.data, args.work, args.strategies, args.halves, args.precision)


if __name__ == "__main__":
    main()
