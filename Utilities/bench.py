"""make bench: the paper's naive slice loop against the project's default pipeline.

Built-in model, `box` prompts, a fixed set of slices with lung from the dev CT
(../shared/data/ct_dev when present, else slicerio's CTChest4). Both run in this process,
interleaved, several repetitions. Prints one JSON line; asserts nothing (a benchmark, not a test).

(a) naive: one SamPredictor.set_image and one predict per segment per slice, PyTorch fp32,
    default threads.
(b) default: pipeline.segment_volume with the engine users get (backend and precision chosen for
    this CPU, slice workers, a fresh embedding cache each repetition so nothing is reused between
    repetitions); --backend/--precision measure another choice.
Also: after each run of (b), a re-run on the same volume with other prompts (the `paper` strategy)
reusing that run's embedding cache. Each time reported is the best of the repetitions.

Masks are checked against (a): per slice, the Dice of (b)'s union of lungs against the reference
minus (a)'s; `max_dice_diff` is the largest absolute difference, `mean_dice_diff` the difference of
the mean Dice, `mean_abs_dice_diff` the mean absolute difference. Stage times are seconds per slice
spent in the encoder and decoder calls and in everything else (windowing, prompts, resizing masks,
placing them), summed over the slice workers: with 2 workers they add up to twice the wall time.
The runtime's choice is logged on stderr.
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SAMZeroShot"))

from SAMZeroShotLib import cpu, evaluation, imaging, metrics, models, pipeline  # noqa: E402
from SAMZeroShotLib.engine import EmbeddingCache, SamEngine  # noqa: E402
from SAMZeroShotLib.prompts import box_prompt  # noqa: E402

DEV_CT = ROOT.parent / "shared" / "data" / "ct_dev"


def load_data():
    """(name, voxels, ijk_to_ras, {label: mask})."""
    if (DEV_CT / "images").is_dir():
        image = sorted((DEV_CT / "images").iterdir())[0]
        mask = DEV_CT / "masks" / image.name
        voxels, matrix = evaluation.read_image(image)
        labels = evaluation.read_labels(mask, voxels.shape)
        return f"ct_dev/{image.name}", voxels, matrix, {v: labels == v for v in (1, 2)}
    import slicerio

    from SAMZeroShotLib import headless, mrml_io

    scene, app = headless.new_scene()
    data = Path(os.path.dirname(slicerio.__file__)) / "data"
    volume = headless.load_volume(app, data / "CTChest4.nrrd")
    segmentation = headless.load_segmentation(app, data / "Segmentation.seg.nrrd")
    ids = mrml_io.resolve_segment_ids(segmentation, ["right lung", "left lung"])
    masks = mrml_io.segment_masks(segmentation, ids, volume)
    return "slicerio/CTChest4.nrrd", mrml_io.volume_array(volume), mrml_io.ijk_to_ras(volume), masks


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


def main(argv=None):
    import torch

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--backend", default="auto", help="auto, torch, onnxruntime or openvino")
    parser.add_argument("--precision", default="auto", help="auto, fp32 or bf16")
    args = parser.parse_args(argv)

    name, voxels, matrix, masks = load_data()
    geometry = imaging.slice_geometry(matrix, voxels.shape)
    union = geometry.view(np.logical_or.reduce(list(masks.values())))
    with_lung = np.flatnonzero(union.any(axis=(1, 2)))
    chosen = with_lung[
        np.linspace(0, len(with_lung) - 1, min(args.slices, len(with_lung))).round().astype(int)
    ]
    kept = pipeline.keep_slices(masks, geometry, chosen)
    window = imaging.resolve_window("auto", voxels)
    images = [imaging.to_rgb8(geometry.view(voxels)[s], window) for s in chosen]
    slice_masks = [{k: geometry.view(m)[s] for k, m in masks.items()} for s in chosen]
    reference = [union[s] for s in chosen]

    model = models.load_model("litemedsam", device="cpu")
    started = time.perf_counter()
    engine = SamEngine(
        model,
        backend=args.backend,
        precision=args.precision,
        log=lambda line: print(line, file=sys.stderr),
    )  # by default, what users get
    engine_setup = time.perf_counter() - started

    timings = {"naive": [], "default": [], "cached": []}
    stages = {"default": [], "cached": []}  # per run: (encode, decode) seconds summed over workers
    dice = {}
    for _repetition in range(args.repetitions):
        started = time.perf_counter()
        naive_masks = naive(model, images, slice_masks)
        timings["naive"].append(time.perf_counter() - started)

        engine.cache = EmbeddingCache()
        for run, strategy in (("default", "box"), ("cached", "paper")):
            engine.seconds = {"encode": 0.0, "decode": 0.0}
            started = time.perf_counter()
            outcome = pipeline.segment_volume(
                voxels, geometry, kept, engine, strategy=strategy, window=window
            )
            timings[run].append(time.perf_counter() - started)
            stages[run].append((engine.seconds["encode"], engine.seconds["decode"]))
            if run == "default":
                result = outcome

        default_masks = [
            p for p in geometry.view(np.logical_or.reduce(list(result.masks.values())))[chosen]
        ]
        dice["naive"] = np.array(
            [metrics.overlap(p, r)["dice"] for p, r in zip(naive_masks, reference, strict=True)]
        )
        dice["default"] = np.array(
            [metrics.overlap(p, r)["dice"] for p, r in zip(default_masks, reference, strict=True)]
        )

    n = len(chosen)
    best = {key: min(values) for key, values in timings.items()}
    gflop = encoder_gflop(model)
    difference = dice["default"] - dice["naive"]
    info = cpu.current()
    print(
        json.dumps(
            {
                "data": name,
                "slices": int(n),
                "repetitions": args.repetitions,
                "cpu_model": info.model,
                "cpu_flags": list(info.relevant_flags),
                "backend": engine.backend,
                "precision": engine.precision,
                "naive_slices_per_s": round(n / best["naive"], 3),
                "default_slices_per_s": round(n / best["default"], 3),
                "speedup": round(best["naive"] / best["default"], 2),
                "max_dice_diff": round(float(np.max(np.abs(difference))), 5),
                "mean_dice_diff": round(abs(float(difference.mean())), 5),
                "mean_abs_dice_diff": round(float(np.abs(difference).mean()), 5),
                "mean_dice_naive": round(float(dice["naive"].mean()), 4),
                "mean_dice_default": round(float(dice["default"].mean()), 4),
                "cached_rerun_s": round(best["cached"], 2),
                "first_run_s": round(best["default"], 2),
                "cached_speedup": round(best["default"] / best["cached"], 1),
                "stage_s_per_slice": stage_times(
                    timings["default"], stages["default"], n, engine.workers
                ),
                "cached_stage_s_per_slice": stage_times(
                    timings["cached"], stages["cached"], n, engine.workers
                ),
                "naive_runs_s": [round(t, 2) for t in timings["naive"]],
                "default_runs_s": [round(t, 2) for t in timings["default"]],
                "cached_runs_s": [round(t, 2) for t in timings["cached"]],
                "engine_setup_s": round(engine_setup, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "encoder_gflop_per_slice": round(gflop, 1),
                "naive_gflop_per_s": round(gflop * n / best["naive"], 1),
                "default_gflop_per_s": round(gflop * n / best["default"], 1),
                "threads": torch.get_num_threads(),
                "workers": engine.workers,
                "cpu_count": os.cpu_count(),
                "naive_precision": "fp32",
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
