"""Correction designs compared: Dice after 0..N simulated clicks, per half of each dev set.

    .venv/bin/python Utilities/click_designs.py [--data ../shared/data] [--work /tmp/sam-clicks]
        [--sets ct_dev cxr_dev] [--halves selection] [--designs local box+points ...]
        [--clicks 3] [--limit 20]

Each case is segmented once with the default strategy (``auto``), then every design starts from
that same first result and gets the same simulated user (:mod:`SAMZeroShotLib.corrections`):
what ``samzeroshot evaluate --clicks N --correction DESIGN`` computes, without segmenting the
case again for each design. Embeddings are kept on disk under ``--work``, so a second run only
decodes. The halves are those of ``Utilities/dev_split.json`` (laid out by ``heldout.py``). The
curves go to ``Utilities/click_results.json`` (means only, no per-image data).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SAMZeroShot"))
sys.path.insert(0, str(ROOT / "Utilities"))

from heldout import HALVES, SPLIT, build_halves  # noqa: E402

from SAMZeroShotLib import (  # noqa: E402
    accuracy_guard,
    imaging,
    layouts,
    models,
    pipeline,
)
from SAMZeroShotLib.cases import prepare, read_case  # noqa: E402
from SAMZeroShotLib.corrections import dice_by_clicks  # noqa: E402
from SAMZeroShotLib.engine import EmbeddingCache, SamEngine  # noqa: E402
from SAMZeroShotLib.interactive import CORRECTIONS  # noqa: E402

RESULTS = ROOT / "Utilities" / "click_results.json"


def case_curves(case, engine, designs, clicks: int) -> dict[str, list[list[float]]]:
    """``{design: [curve per scored slice]}`` for one case, from one first result."""
    volume, geometry, _, reference, ignore = read_case(case, False)
    result = pipeline.segment_volume(volume, geometry, reference, engine, modality="auto")
    views = {key: geometry.view(mask) for key, mask in reference.items()}
    outputs = {key: geometry.view(mask) for key, mask in result.masks.items()}
    ignore_view, volume_view = geometry.view(ignore), geometry.view(volume.voxels)
    scored = [
        s
        for s in range(len(volume_view))
        if np.logical_or.reduce([view[s] & ~ignore_view[s] for view in views.values()]).any()
    ]
    curves = {design: [] for design in designs}
    for s in scored:
        image = imaging.to_rgb8(volume_view[s], result.window)
        references = {key: view[s] for key, view in views.items()}
        predicted = {key: view[s] for key, view in outputs.items()}
        for design in designs:
            curves[design].append(
                dice_by_clicks(
                    image, references, predicted, references, engine, clicks, ignore_view[s], design
                )
            )
    return curves


def run(
    data: Path, work: Path, sets, halves, designs, clicks: int, limit: int | None, out: Path
) -> dict:
    folders = build_halves(data, json.loads(SPLIT.read_text()), work)
    engine = SamEngine(
        models.load_model("litemedsam", device="cpu"),
        cache=EmbeddingCache(directory=work / "embeddings"),
        check=accuracy_guard.GUARD,
    )
    results = json.loads(out.read_text()) if out.is_file() else {}
    for (dataset, half), (images, masks) in folders.items():
        if dataset not in sets or half not in halves:
            continue
        cases, _ = prepare(layouts.paired(images, masks), images)
        cases = cases[:limit] if limit else cases
        started = time.perf_counter()
        pooled = {design: [] for design in designs}
        for case in cases:
            for design, rows in case_curves(case, engine, designs, clicks).items():
                pooled[design] += rows
        for design in designs:
            curve = [float(v) for v in np.mean(pooled[design], axis=0)]
            results.setdefault(dataset, {}).setdefault(half, {})[design] = {
                "dice_by_clicks": curve,
                "n_cases": len(cases),
                "n_scored_slices": len(pooled[design]),
                "subset": bool(limit),
            }
            print(
                f"{dataset} {half} {design}: "
                + ", ".join(f"{v:.4f}" for v in curve)
                + f" ({len(cases)} cases, {len(pooled[design])} slices)",
                flush=True,
            )
        print(f"{dataset} {half}: {time.perf_counter() - started:.0f} s", flush=True)
        out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/sam-clicks"))
    parser.add_argument("--sets", nargs="+", default=["ct_dev", "cxr_dev"])
    parser.add_argument("--halves", nargs="+", default=["selection"], choices=HALVES)
    parser.add_argument("--designs", nargs="+", default=list(CORRECTIONS), choices=CORRECTIONS)
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--limit", type=int, help="only the first N cases of each half")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the curves go")
    args = parser.parse_args()
    run(
        args.data,
        args.work,
        args.sets,
        args.halves,
        args.designs,
        args.clicks,
        args.limit,
        args.results,
    )


if __name__ == "__main__":
    main()
