"""make bench: the paper's naive slice loop against what users run, on the same slices.

Built-in model, a fixed set of slices with lung from the dev CT (../shared/data/ct_dev when
present, else slicerio's CTChest4). All runs happen in this process, interleaved, several
repetitions; each time reported is the best of the repetitions. Prints one JSON line; asserts
nothing (a benchmark, not a test).

(a) naive: one SamPredictor.set_image and one predict per segment per slice, PyTorch fp32,
    default threads (the paper's loop).
(b) box: pipeline.segment_volume with the engine users get (backend and precision chosen for this
    CPU, slice workers, a fresh embedding cache each repetition) and ``box`` prompts: `speedup`.
(c) default: the same with the strategy ``auto`` resolves to for the built-in model (what users
    get): `default_speedup`, `default_s_per_slice`, and its encodes per slice.
(d) cached: after (b), the ``paper`` strategy reusing (b)'s embedding cache.
(e) whole volume: the default on every lung slice of the volume, in a fresh process-like setting
    (model load and engine preparation included, cache files of earlier runs kept as a user's
    second run would find them): `whole_volume_s`; --no-whole-volume skips it.
--backend/--precision measure another choice; --cost-table adds seconds and encodes per slice
and mean Dice of every strategy on the bench slices.

Masks are checked against (a): per slice, the Dice of the union of lungs against the reference,
minus (a)'s; `max_dice_diff` is the largest absolute difference for box, `mean_dice_diff` the
difference of the mean Dice, `mean_abs_dice_diff` the mean absolute difference. Stage times are
seconds per slice in the encoder and decoder calls and in everything else, summed over the slice
workers. The runtime's choice is logged on stderr.
"""

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SAMZeroShot"))

from SAMZeroShotLib import (  # noqa: E402
    accuracy_guard,
    cases,
    cpu,
    imaging,
    metrics,
    models,
    pipeline,
    strategies,
    volumes,
)
from SAMZeroShotLib.engine import EmbeddingCache, SamEngine  # noqa: E402
from SAMZeroShotLib.prompts import box_prompt  # noqa: E402

DEV_CT = ROOT.parent / "shared" / "data" / "ct_dev"


def load_data():
    """(name, volume, {label: mask})."""
    if (DEV_CT / "images").is_dir():
        image = sorted((DEV_CT / "images").iterdir())[0]
        mask = DEV_CT / "masks" / image.name
        volume = volumes.read_volume(image)
        labels = cases.read_labels(mask, volume.voxels.shape)
        return f"ct_dev/{image.name}", volume, {v: labels == v for v in (1, 2)}
    import slicerio

    from SAMZeroShotLib import headless, mrml_io

    scene, app = headless.new_scene()
    data = Path(os.path.dirname(slicerio.__file__)) / "data"
    volume = headless.load_volume(app, data / "CTChest4.nrrd")
    segmentation = headless.load_segmentation(app, data / "Segmentation.seg.nrrd")
    ids = mrml_io.resolve_segment_ids(segmentation, ["right lung", "left lung"])
    masks = mrml_io.segment_masks(segmentation, ids, volume)
    return "slicerio/CTChest4.nrrd", volumes.volume_from_node(volume), masks


def naive(model, images, slice_masks):
    """The paper's loop: set_image and predict, one slice at a time."""
    from segment_anything import SamPredictor

    predictor = SamPredictor(model)
    results = []
    for image, masks in zip(images, slice_masks, strict=True):
        predictor.set_image(image)
        union = np.zeros(image.shape[:2], bool)
        for mask in (mask for mask in masks.values() if mask.any()):
            predicted, _, _ = predictor.predict(box=box_prompt(mask), multimask_output=False)
            union |= predicted[0]
        results.append(union)
    return results


def encoder_gflop(model) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = model.image_encoder.img_size
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.image_encoder(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def stage_times(walls, stages, slices: int, workers: int) -> dict:
    """Seconds per slice in the encoder, the decoder and the rest, for the fastest run."""
    best = int(np.argmin(walls))
    encode, decode = stages[best]
    rest = walls[best] * workers - encode - decode
    return {
        "encode": round(encode / slices, 3),
        "decode": round(decode / slices, 3),
        "bookkeeping": round(rest / slices, 3),
    }


def union_dice(outcome, geometry, chosen, reference) -> np.ndarray:
    """Per bench slice, the Dice of the predicted union of lungs against the reference union."""
    predicted = geometry.view(np.logical_or.reduce(list(outcome.masks.values())))[chosen]
    return np.array(
        [metrics.overlap(p, r)["dice"] for p, r in zip(predicted, reference, strict=True)]
    )


def timed_run(engine, bench, strategy: str) -> tuple[float, tuple[float, float], int, object]:
    """(wall s, (encode s, decode s), slices encoded, outcome) of one pipeline run."""
    engine.seconds = {"encode": 0.0, "decode": 0.0}
    encoded = engine.encoded_slices
    started = time.perf_counter()
    outcome = pipeline.segment_volume(
        bench["volume"],
        bench["geometry"],
        bench["kept"],
        engine,
        strategy=strategy,
        window=bench["window"],
    )
    wall = time.perf_counter() - started
    stages = (engine.seconds["encode"], engine.seconds["decode"])
    return wall, stages, engine.encoded_slices - encoded, outcome


def whole_volume(args, volume, masks) -> dict:
    """The default strategy on every lung slice, model load and engine preparation included."""
    started = time.perf_counter()
    model = models.load_model("litemedsam", device="cpu")
    engine = SamEngine(
        model,
        backend=args.backend,
        precision=args.precision,
        log=lambda _: None,
        check=accuracy_guard.GUARD,
    )
    geometry = imaging.slice_geometry(volume.ijk_to_ras, volume.voxels.shape)
    outcome = pipeline.segment_volume(volume, geometry, masks, engine, strategy="auto")
    seconds = time.perf_counter() - started
    slices = len(outcome.slices)
    return {
        "whole_volume_s": round(seconds, 1),
        "whole_volume_slices": slices,
        "whole_volume_s_per_slice": round(seconds / max(slices, 1), 3),
        "whole_volume_encodes_per_slice": round(engine.encoded_slices / max(slices, 1), 2),
    }


def cost_table(engine, bench, reference) -> dict:
    """Seconds and encodes per slice and mean union Dice of every strategy on the bench slices."""
    n = len(bench["chosen"])
    table = {}
    tried = {
        f"adaptive@{score}": replace(
            strategies.STRATEGIES["adaptive"], name=f"adaptive@{score}", min_score=score
        )
        for score in strategies.ADAPTIVE_MIN_SCORES_TRIED
    }
    for name, strategy in {**strategies.STRATEGIES, **tried}.items():
        if name == "prompt-only":
            continue
        engine.cache = EmbeddingCache()
        wall, _, encoded, outcome = timed_run(engine, bench, strategy)
        dice = union_dice(outcome, bench["geometry"], bench["chosen"], reference)
        table[name] = {
            "s_per_slice": round(wall / n, 3),
            "encodes_per_slice": round(encoded / n, 2),
            "mean_dice": round(float(dice.mean()), 4),
        }
    return table


def bench_slices(args, volume, masks) -> dict:
    voxels = volume.voxels
    geometry = imaging.slice_geometry(volume.ijk_to_ras, voxels.shape)
    union = geometry.view(np.logical_or.reduce(list(masks.values())))
    with_lung = np.flatnonzero(union.any(axis=(1, 2)))
    chosen = with_lung[
        np.linspace(0, len(with_lung) - 1, min(args.slices, len(with_lung))).round().astype(int)
    ]
    window = imaging.resolve_window("auto", voxels)
    return {
        "volume": volume,
        "geometry": geometry,
        "chosen": chosen,
        "kept": pipeline.keep_slices(masks, geometry, chosen),
        "window": window,
        "images": [imaging.to_rgb8(geometry.view(voxels)[s], window) for s in chosen],
        "slice_masks": [{k: geometry.view(m)[s] for k, m in masks.items()} for s in chosen],
        "reference": [union[s] for s in chosen],
    }


def repeat_runs(args, model, engine, bench, default: str) -> tuple[dict, dict, dict, dict]:
    """Timings, stage times, encodes and per-slice Dice of naive, box, default and cached."""
    runs = {"box": "box", "default": default, "cached": "paper"}
    timings = {"naive": [], **{run: [] for run in runs}}
    stages = {run: [] for run in runs}
    encodes, dice = {}, {}
    for _repetition in range(args.repetitions):
        started = time.perf_counter()
        naive_masks = naive(model, bench["images"], bench["slice_masks"])
        timings["naive"].append(time.perf_counter() - started)
        dice["naive"] = np.array(
            [
                metrics.overlap(p, r)["dice"]
                for p, r in zip(naive_masks, bench["reference"], strict=True)
            ]
        )
        for run, strategy in runs.items():
            if run != "cached":  # the cached run reuses the box run's embeddings
                engine.cache = EmbeddingCache()
            wall, stage, encoded, outcome = timed_run(engine, bench, strategy)
            timings[run].append(wall)
            stages[run].append(stage)
            encodes[run] = encoded / len(bench["chosen"])
            dice[run] = union_dice(outcome, bench["geometry"], bench["chosen"], bench["reference"])
    return timings, stages, encodes, dice


def main(argv=None):
    import torch

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--backend", default="auto", help="auto, torch, onnxruntime or openvino")
    parser.add_argument("--precision", default="auto", help="auto, fp32 or bf16")
    parser.add_argument("--no-whole-volume", action="store_true", help="skip the whole-volume run")
    parser.add_argument("--cost-table", action="store_true", help="time every strategy too")
    args = parser.parse_args(argv)

    name, volume, masks = load_data()
    bench = bench_slices(args, volume, masks)
    started = time.perf_counter()
    model = models.load_model("litemedsam", device="cpu")
    model_load = time.perf_counter() - started
    started = time.perf_counter()
    engine = SamEngine(
        model,
        backend=args.backend,
        precision=args.precision,
        log=lambda line: print(line, file=sys.stderr),
        check=accuracy_guard.GUARD,
    )  # by default, what users get
    engine_setup = time.perf_counter() - started
    default, _ = strategies.resolve("auto", model.spec.name)
    timings, stages, encodes, dice = repeat_runs(args, model, engine, bench, default)

    n = len(bench["chosen"])
    best = {key: min(values) for key, values in timings.items()}
    gflop = encoder_gflop(model)
    difference = dice["box"] - dice["naive"]
    info = cpu.current()
    result = {
        "data": name,
        "slices": int(n),
        "repetitions": args.repetitions,
        "cpu_model": info.model,
        "cpu_flags": list(info.relevant_flags),
        "backend": engine.backend,
        "precision": engine.precision,
        "naive_slices_per_s": round(n / best["naive"], 3),
        "default_slices_per_s": round(n / best["box"], 3),
        "speedup": round(best["naive"] / best["box"], 2),
        "default_strategy": default,
        "default_speedup": round(best["naive"] / best["default"], 2),
        "default_s_per_slice": round(best["default"] / n, 3),
        "box_s_per_slice": round(best["box"] / n, 3),
        "naive_s_per_slice": round(best["naive"] / n, 3),
        "default_vs_box_time": round(best["default"] / best["box"], 2),
        "encodes_per_slice": {
            "naive": 1.0,
            "box": round(encodes["box"], 2),
            "default": round(encodes["default"], 2),
        },
        "max_dice_diff": round(float(np.max(np.abs(difference))), 5),
        "mean_dice_diff": round(abs(float(difference.mean())), 5),
        "mean_abs_dice_diff": round(float(np.abs(difference).mean()), 5),
        "mean_dice_naive": round(float(dice["naive"].mean()), 4),
        "mean_dice_box": round(float(dice["box"].mean()), 4),
        "mean_dice_default": round(float(dice["default"].mean()), 4),
        "cached_rerun_s": round(best["cached"], 2),
        "first_run_s": round(best["box"], 2),
        "cached_speedup": round(best["box"] / best["cached"], 1),
        "stage_s_per_slice": stage_times(timings["box"], stages["box"], n, engine.workers),
        "default_stage_s_per_slice": stage_times(
            timings["default"], stages["default"], n, engine.workers
        ),
        "cached_stage_s_per_slice": stage_times(
            timings["cached"], stages["cached"], n, engine.workers
        ),
        "naive_runs_s": [round(t, 2) for t in timings["naive"]],
        "box_runs_s": [round(t, 2) for t in timings["box"]],
        "default_runs_s": [round(t, 2) for t in timings["default"]],
        "cached_runs_s": [round(t, 2) for t in timings["cached"]],
        "model_load_s": round(model_load, 2),
        "engine_setup_s": round(engine_setup, 2),
        "encoder_gflop_per_slice": round(gflop, 1),
        "naive_gflop_per_s": round(gflop * n / best["naive"], 1),
        "default_gflop_per_s": round(gflop * n / best["box"], 1),
        "threads": torch.get_num_threads(),
        "workers": engine.workers,
        "cpu_count": os.cpu_count(),
        "naive_precision": "fp32",
    }
    if args.cost_table:
        result["cost_table"] = cost_table(engine, bench, bench["reference"])
    if not args.no_whole_volume:
        del engine
        result.update(whole_volume(args, volume, masks))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
