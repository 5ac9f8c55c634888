"""Choose the propagation rules on the selection data, and report them on the rest.

Selection: ct_dev's selection blocks (dev_split.json; the whole volume is segmented, only those
slices are scored) and ct_dev2's pyrad_lung1. Report: ct_dev's held-out blocks and pyrad_lung2.
Data: ../shared/data (or --data). Built-in model in fp32 (``--precision``), ``box`` strategy
(``--strategy``: what the propagated slices are segmented with), the window ``auto`` gives.

Every slice's embedding is computed once and kept on disk (``--cache``), so a sweep over rule
values costs decoder calls only: run ``precompute`` first (best with OMP_NUM_THREADS=1 on a shared
machine), then ``sweep`` with rule settings, e.g.::

    propagation_dev.py precompute
    propagation_dev.py sweep --set selection --slices middle,3 --try min_overlap=0.3 --try ""
    propagation_dev.py sweep --set report --slices middle,2,3,5 --oracle
    propagation_dev.py sweep --set report --slices middle,3 --strategy adaptive
    propagation_dev.py sweep --set thin --slices middle,3 --oracle

``--set thin`` is pyrad_lung1 (a selection volume) resampled from 5 mm to 5/3 mm slices by linear
interpolation of the image and of each lung's mask, written under ``thin/`` in the working folder
on first use: a synthetic check of the walk over three times as many steps, not a thin-slice scan.

Each run appends one JSON line per (rules, volume, annotated slices) to ``--out`` (default
propagation_dev.jsonl): mean slice Dice over the scored slices, the volume's stops, seconds.
``summary`` prints a table of the lines there (mean over the set's volumes per rule setting),
``curve`` the Markdown table of docs/propagation.md for one rule setting.
Asserts nothing; prints what it measured.
"""

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SAMZeroShot"))

from SAMZeroShotLib import imaging, propagation  # noqa: E402
from SAMZeroShotLib.cases import Case, MaskFile, read_case  # noqa: E402
from SAMZeroShotLib.engine import EmbeddingCache  # noqa: E402
from SAMZeroShotLib.engines import EngineFactory  # noqa: E402
from SAMZeroShotLib.parameters import Parameters  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SPLIT = json.loads((ROOT / "Utilities" / "dev_split.json").read_text())
VOLUMES = {  # name: (folder, stem, scored slices: "selection" / "heldout" blocks, or all)
    "ct_dev-selection": ("ct_dev", "lidc0001", "selection"),
    "ct_dev-heldout": ("ct_dev", "lidc0001", "heldout"),
    "pyrad_lung1": ("ct_dev2", "pyrad_lung1", None),
    "pyrad_lung2": ("ct_dev2", "pyrad_lung2", None),
}
SETS = {
    "selection": ("ct_dev-selection", "pyrad_lung1"),
    "report": ("ct_dev-heldout", "pyrad_lung2"),
    "thin": ("pyrad_lung1-thin",),
}
THIN = {"pyrad_lung1-thin": ("pyrad_lung1", 3)}  # name: (ct_dev2 volume, slices per slice)


@dataclass
class DevVolume:
    name: str
    voxels: np.ndarray
    geometry: object
    reference: dict  # label -> 3D bool
    scored: list  # slices scored (with reference lung, in the set's blocks)


def thin_copy(data: Path, stem: str, factor: int, out: Path = Path("thin")) -> Path:
    """ct_dev2's ``stem`` with ``factor`` times as many slices, image and each label linearly
    interpolated (SimpleITK's label-linear interpolator for the mask), under ``out``."""
    import SimpleITK as sitk

    if (out / "masks" / f"{stem}.nii.gz").is_file():
        return out
    image = sitk.ReadImage(str(data / "ct_dev2" / "images" / f"{stem}.nii.gz"))
    mask = sitk.ReadImage(str(data / "ct_dev2" / "masks" / f"{stem}.nii.gz"))
    size, spacing = list(image.GetSize()), list(image.GetSpacing())
    new_size = [size[0], size[1], (size[2] - 1) * factor + 1]
    new_spacing = [spacing[0], spacing[1], spacing[2] / factor]

    def resampled(item, interpolator):
        return sitk.Resample(
            item, new_size, sitk.Transform(), interpolator, item.GetOrigin(), new_spacing,
            item.GetDirection(), 0, item.GetPixelID(),
        )  # fmt: skip

    thin_image, thin_mask = resampled(image, sitk.sitkLinear), resampled(mask, sitk.sitkLabelLinear)
    for kind, item in (("images", thin_image), ("masks", thin_mask)):
        (out / kind).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(item, str(out / kind / f"{stem}.nii.gz"))
    return out


def load(name: str, data: Path) -> DevVolume:
    if name in THIN:
        stem, factor = THIN[name]
        folder, blocks = thin_copy(data, stem, factor), None
    else:
        folder, stem, blocks = VOLUMES[name]
        folder = data / folder
    case = Case(
        stem,
        folder / "images" / f"{stem}.nii.gz",
        (MaskFile(folder / "masks" / f"{stem}.nii.gz"),),
    )
    volume, geometry, _, reference, _ = read_case(case, False)
    union = geometry.view(np.logical_or.reduce(list(reference.values())))
    scored = [int(s) for s in np.flatnonzero(union.any(axis=(1, 2)))]
    if blocks:
        ranges = SPLIT["ct_dev"][blocks]
        scored = [s for s in scored if any(low <= s <= high for low, high in ranges)]
    return DevVolume(name, volume.voxels, geometry, reference, scored)


def engine_with_cache(cache: Path, precision: str = "fp32"):
    # fp32 by default, so that the numbers do not depend on whether the CPU has native bf16.
    engine = EngineFactory().build(Parameters(strategy="box", precision=precision), log=print)
    engine.cache = EmbeddingCache(max_bytes=3 << 30, directory=cache)
    return engine


def dice_per_slice(masks: dict, volume: DevVolume) -> dict:
    predicted = volume.geometry.view(np.logical_or.reduce(list(masks.values())))
    reference = volume.geometry.view(np.logical_or.reduce(list(volume.reference.values())))
    scores = {}
    for s in volume.scored:
        a, b = predicted[s], reference[s]
        scores[s] = 2.0 * (a & b).sum() / max(1, a.sum() + b.sum())
    return scores


def run_propagated(volume: DevVolume, engine, which: str, rules, strategy="box") -> dict:
    """Keep the reference on the annotated slices (``which``), propagate, score."""
    view = {key: volume.geometry.view(mask) for key, mask in volume.reference.items()}
    slices = propagation.annotated_slices(volume.reference, volume.geometry, which)
    annotated = {s: {key: v[s].copy() for key, v in view.items()} for s in slices}
    started, encoded = time.perf_counter(), engine.encoded_slices
    masks, stops = propagation.propagate(
        volume.voxels, volume.geometry, annotated, engine, strategy, rules=rules
    )
    seconds = time.perf_counter() - started
    scores = dice_per_slice(masks, volume)
    predicted = volume.geometry.view(np.logical_or.reduce(list(masks.values())))
    union = volume.geometry.view(np.logical_or.reduce(list(volume.reference.values())))
    beyond = predicted.any(axis=(1, 2)) & ~union.any(axis=(1, 2))
    return {
        "annotated": slices,
        "slices_beyond_the_lung": int(beyond.sum()),  # slices with a mask but no reference lung
        "mean_dice": float(np.mean(list(scores.values()))),
        # The same without the annotated slices, which keep the user's outline under
        # start_from="drawn" (scored there, they would flatter the walk).
        "mean_dice_propagated": float(
            np.mean([d for s, d in scores.items() if s not in slices] or [np.nan])
        ),
        "dice": {str(s): round(float(d), 4) for s, d in scores.items()},
        "stops": propagation.describe_stops(stops),
        "seconds": seconds,
        "encoded": engine.encoded_slices - encoded,
    }


def run_oracle(volume: DevVolume, engine) -> dict:
    """Box prompts from the reference on every slice with lung (what propagation is read
    against)."""
    from SAMZeroShotLib import strategies

    window = imaging.resolve_window("auto", volume.voxels)
    views = {key: volume.geometry.view(mask) for key, mask in volume.reference.items()}
    image_view = volume.geometry.view(volume.voxels)
    masks = {key: np.zeros(mask.shape, bool) for key, mask in volume.reference.items()}
    out = {key: volume.geometry.view(mask) for key, mask in masks.items()}
    started = time.perf_counter()
    for s in np.flatnonzero(np.logical_or.reduce([v.any(axis=(1, 2)) for v in views.values()])):
        image = imaging.to_rgb8(image_view[s], window)
        prompts = {key: v[s] for key, v in views.items() if v[s].any()}
        for key, mask in strategies.STRATEGIES["box"].segment(image, prompts, engine).items():
            out[key][s] = mask
    scores = dice_per_slice(masks, volume)
    return {
        "mean_dice": float(np.mean(list(scores.values()))),
        "dice": {str(s): round(float(d), 4) for s, d in scores.items()},
        "seconds": time.perf_counter() - started,
    }


def parse_rules(setting: str):
    """Rules from ``name=value,name=value`` (empty: the library's values)."""
    rules = propagation.Rules()
    for item in filter(None, setting.split(",")):
        name, value = item.split("=", 1)
        current = getattr(rules, name)
        rules = replace(rules, **{name: type(current)(value)})
    return rules


def precompute(args) -> None:
    """Encode every slice near the lung of every volume once (the disk cache keeps them)."""
    engine = engine_with_cache(args.cache, args.precision)
    for name in ("ct_dev-selection", "pyrad_lung1", "pyrad_lung2"):
        volume = load(name, args.data)
        window = imaging.resolve_window("auto", volume.voxels)
        view = volume.geometry.view(volume.voxels)
        union = volume.geometry.view(np.logical_or.reduce(list(volume.reference.values())))
        lung = np.flatnonzero(union.any(axis=(1, 2)))
        started, before = time.perf_counter(), engine.encoded_slices
        for s in range(max(0, lung[0] - 2), min(len(view), lung[-1] + 3)):
            engine.encode([imaging.to_rgb8(view[s], window)])
        encoded = engine.encoded_slices - before
        seconds = time.perf_counter() - started
        print(f"{name}: {encoded} slices encoded, {seconds / max(encoded, 1):.2f} s each")


def sweep(args) -> None:
    """Each rule setting of ``--try`` on each volume of the set, from each number of slices."""
    engine = engine_with_cache(args.cache, args.precision)
    volumes = [load(name, args.data) for name in SETS[args.set]]
    with open(args.out, "a") as out:
        for volume in volumes:
            if args.oracle:
                row = {"volume": volume.name, "set": args.set, "oracle": run_oracle(volume, engine)}
                out.write(json.dumps(row) + "\n")
                print(volume.name, "oracle box", f"{row['oracle']['mean_dice']:.4f}", flush=True)
        for setting in args.try_ or [""]:
            rules = parse_rules(setting)
            for volume in volumes:
                for which in args.slices.split(","):
                    result = run_propagated(volume, engine, which, rules, args.strategy)
                    row = {
                        "volume": volume.name,
                        "set": args.set,
                        "slices": which,
                        "strategy": args.strategy,
                    }
                    out.write(json.dumps({**row, "rules": asdict(rules), **result}) + "\n")
                    out.flush()
                    print(
                        f"{volume.name} from {which}: {result['mean_dice']:.4f}"
                        f" (not annotated {result['mean_dice_propagated']:.4f})"
                        f" ({result['seconds']:.0f} s, {result['encoded']} encoded,"
                        f" {result['slices_beyond_the_lung']} beyond) {setting}",
                        flush=True,
                    )


def summary(args) -> None:
    """Mean over each set's volumes, per rule setting and number of annotated slices."""
    rows = [json.loads(line) for line in args.out.read_text().splitlines()]
    table: dict = {}
    for row in rows:
        if "rules" not in row:
            continue
        rules = json.dumps(row["rules"], sort_keys=True)
        key = (row["set"], row.get("strategy", "box"), rules, row["slices"])
        table.setdefault(key, {})[row["volume"]] = row["mean_dice"]
    for (set_name, strategy, rules, which), by_volume in sorted(table.items()):
        values = " ".join(f"{v}={d:.4f}" for v, d in sorted(by_volume.items()))
        mean = np.mean(list(by_volume.values()))
        print(f"{set_name} {strategy} {which:>6} mean {mean:.4f} | {values} | {rules}")


def curve(args) -> None:
    """A Markdown table for one rule setting (``--try``, default the library's): mean Dice per
    volume from each number of annotated slices, beside box on every slice, and seconds."""
    wanted = json.dumps(asdict(parse_rules((args.try_ or [""])[0])), sort_keys=True)
    rows = [json.loads(line) for line in args.out.read_text().splitlines()]
    oracle = {row["volume"]: row["oracle"]["mean_dice"] for row in rows if "oracle" in row}
    found: dict = {}
    for row in rows:
        if (
            "rules" in row
            and row.get("strategy", "box") == args.strategy
            and json.dumps(row["rules"], sort_keys=True) == wanted
        ):
            found.setdefault(row["volume"], {})[row["slices"]] = row
    counts = sorted({k for by in found.values() for k in by}, key=lambda k: (k != "middle", k))
    print("| volume | set | box, every slice | " + " | ".join(counts) + " | seconds |")
    print("|---" * (len(counts) + 4) + "|")
    for volume, by in found.items():
        dice = " | ".join(f"{by[k]['mean_dice']:.4f}" if k in by else "" for k in counts)
        seconds = "/".join(f"{by[k]['seconds']:.0f}" for k in counts if k in by)
        set_name = next(name for name, volumes in SETS.items() if volume in volumes)
        box = oracle.get(volume, float("nan"))
        print(f"| {volume} | {set_name} | {box:.4f} | {dice} | {seconds} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("precompute", "sweep", "summary", "curve"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=Path("propagation_dev_embeddings"))
    parser.add_argument("--out", type=Path, default=Path("propagation_dev.jsonl"))
    parser.add_argument("--set", choices=tuple(SETS), default="selection")
    parser.add_argument("--slices", default="middle,3", help="annotated slices, comma-separated")
    parser.add_argument(
        "--try",
        dest="try_",
        action="append",
        default=[],
        help="a rule setting to try: name=value,name=value of propagation.Rules (repeatable)",
    )
    parser.add_argument("--precision", default="fp32", help="the model's precision (fp32, bf16)")
    parser.add_argument("--strategy", default="box", help="what the propagated slices use")
    parser.add_argument("--oracle", action="store_true", help="also box on every slice")
    args = parser.parse_args(argv)
    commands = {"precompute": precompute, "sweep": sweep, "summary": summary, "curve": curve}
    commands[args.command](args)


if __name__ == "__main__":
    main()
