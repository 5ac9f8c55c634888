"""Command line: ``samzeroshot segment``, ``samzeroshot evaluate`` and ``samzeroshot compare``.

Bad input ends with exit code 2 and one line on stderr that names the file and the problem.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .parameters import Parameters

EXIT_BAD_INPUT = 2

#: Settings of :class:`Parameters` offered as ``--name`` options by both commands, in this order.
MODEL_OPTIONS = ("model", "checkpoint", "strategy", "window", "modality", "device", "precision")


class BadInput(Exception):
    """Reported as one line, exit code 2."""


def _add_model_options(parser):
    """The model options, with defaults, names and help taken from :class:`Parameters`."""
    group = parser.add_argument_group("model options")
    for name in MODEL_OPTIONS:
        default, choices = Parameters.default(name), Parameters.choices(name)
        text = Parameters.help(name)
        if choices:
            text += f": {', '.join(choices)}"
        if default is not None:
            text += f" (default {default})"
        # No argparse choices=: Parameters.validate() gives the one-line error with exit code 2.
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, default=default, help=text)
    group.add_argument("--no-embedding-cache", action="store_true", help="do not keep slice embeddings in memory")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samzeroshot", description="Zero-shot lung segmentation with Segment Anything.")
    commands = parser.add_subparsers(dest="command", metavar="{segment,evaluate,compare}")

    segment = commands.add_parser("segment", help="segment one volume from prompt segments; write .seg.nrrd and metrics")
    segment.add_argument("--volume", required=True, help="the image (.nrrd, .nii.gz, ...)")
    segment.add_argument("--prompts", required=True, help="segmentation with the prompt segments (.seg.nrrd)")
    segment.add_argument("--segments", help="comma-separated segment names or IDs (default: all)")
    segment.add_argument("--reference", help="segmentation scored against (default: the prompts, i.e. oracle prompts)")
    segment.add_argument("--out", required=True, help="output segmentation (.seg.nrrd)")
    segment.add_argument("--metrics", help="metrics table (.tsv)")
    segment.add_argument("--propagate", action="store_true", help="carry prompts from annotated slices to the others")
    _add_model_options(segment)

    evaluate = commands.add_parser("evaluate", help="evaluate on a folder of images and masks (paired by file name)")
    evaluate.add_argument("--images", required=True, help="folder of images (.png .jpg .dcm .nrrd .nii .nii.gz)")
    evaluate.add_argument("--masks", required=True, help="folder of label masks (0 background, 255 ignore, others segments)")
    evaluate.add_argument("--out", required=True, help="output folder for slices.csv, cases.csv, summary.json")
    evaluate.add_argument("--keep-going", action="store_true", help="skip bad cases (listed in summary.json) instead of stopping")
    evaluate.add_argument("--propagate-from", choices=("middle",),
                          help="prompt only the slice with the largest reference area and propagate to the rest")
    _add_model_options(evaluate)

    compare = commands.add_parser("compare", help="compare two evaluate output folders slice by slice (B minus A)")
    compare.add_argument("a", help="evaluate output folder A (the baseline)")
    compare.add_argument("b", help="evaluate output folder B")
    compare.add_argument("--out", help="where compare.json goes: a .json file or a folder (default: inside folder B)")
    return parser


def _parameters(args, propagate=False) -> Parameters:
    try:
        return Parameters(**{name: getattr(args, name) for name in MODEL_OPTIONS},
                          embedding_cache=not args.no_embedding_cache, propagate=propagate).validate()
    except ValueError as error:
        raise BadInput(str(error)) from None


def _load_engine(parameters: Parameters):
    from . import logic
    from .models import CheckpointError

    try:
        return logic.get_engine(parameters, progress=_progress)
    except (CheckpointError, ValueError) as error:
        raise BadInput(str(error)) from None


_last_reported = [-1.0]


def _progress(fraction: float, message: str) -> None:
    """One updating line on a terminal; a line per 10 % when stderr is a file or pipe."""
    if sys.stderr.isatty():
        print(f"\r{100 * fraction:5.1f}%  {message[:70]:<70}", end="", file=sys.stderr, flush=True)
        if fraction >= 1.0:
            print(file=sys.stderr)
    elif fraction >= 1.0 or fraction - _last_reported[0] >= 0.1 or fraction < _last_reported[0]:
        print(f"{100 * fraction:5.1f}%  {message}", file=sys.stderr, flush=True)
    _last_reported[0] = fraction


def _existing(path: str, what: str) -> Path:
    result = Path(path)
    if not result.is_file():
        raise BadInput(f"{path}: {what} file not found")
    return result


def run_segment(args) -> int:
    from . import evaluation, logic, mrml_io

    parameters = _parameters(args, propagate=args.propagate)
    volume_path = _existing(args.volume, "volume")
    prompts_path = _existing(args.prompts, "prompt segmentation")
    reference_path = _existing(args.reference, "reference segmentation") if args.reference else None
    out = Path(args.out)
    if not out.name.endswith(".seg.nrrd"):
        raise BadInput(f"{args.out}: the output segmentation must be a .seg.nrrd file")
    scene, app = mrml_io.new_scene()
    try:
        volume = mrml_io.load_volume(app, volume_path)
        recorded = evaluation.declared_modality(volume_path)
        if recorded:  # as Slicer's DICOM loader keeps it
            mrml_io.record_modality(volume, recorded)
        prompts = mrml_io.load_segmentation(app, prompts_path)
        reference = mrml_io.load_segmentation(app, reference_path) if reference_path else None
        segments = [s.strip() for s in args.segments.split(",")] if args.segments else None
        mrml_io.resolve_segment_ids(prompts, segments)
    except mrml_io.InputError as error:
        raise BadInput(str(error)) from None
    _load_engine(parameters)
    try:
        segmentation, table = logic.process(volume, prompts, segments, reference, parameters,
                                            progress=_progress, log=lambda line: print(line, file=sys.stderr))
    except mrml_io.InputError as error:
        raise BadInput(str(error)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    mrml_io.write_segmentation(segmentation, out)
    print(f"segmentation: {out}")
    if args.metrics:
        mrml_io.write_table_tsv(table, Path(args.metrics))
        print(f"metrics: {args.metrics}")
    print(table.GetAttribute(mrml_io.SUMMARY_ATTRIBUTE))
    return 0


def run_evaluate(args) -> int:
    from . import evaluation

    parameters = _parameters(args)
    try:
        prepared = evaluation.prepare(args.images, args.masks, keep_going=args.keep_going)
    except evaluation.CaseError as error:
        raise BadInput(str(error)) from None
    engine = _load_engine(parameters)
    try:
        summary = evaluation.evaluate(args.images, args.masks, args.out, engine, strategy=parameters.strategy,
                                      window=parameters.window, modality=parameters.modality, keep_going=args.keep_going,
                                      propagate_from=args.propagate_from, progress=_progress, prepared=prepared)
    except evaluation.CaseError as error:
        raise BadInput(str(error)) from None
    for skipped in summary["skipped"]:
        print(f"skipped {skipped['file']}: {skipped['problem']}", file=sys.stderr)
    print(f"{summary['n_cases']} cases, {summary['n_scored_slices']} scored slices: mean Dice "
          f"{summary['mean_dice']:.4f}, mean Jaccard {summary['mean_jaccard']:.4f} "
          f"({summary['model']}, {summary['strategy']}, {summary['seconds']:.0f} s) -> {args.out}/summary.json")
    return 0


def run_compare(args) -> int:
    from . import compare

    try:
        result = compare.compare(args.a, args.b)
    except compare.CompareError as error:
        raise BadInput(str(error)) from None
    path = compare.output_path(args.b, args.out)
    compare.write(result, path)
    print(compare.report(result))
    print(f"-> {path}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return {"segment": run_segment, "evaluate": run_evaluate, "compare": run_compare}[args.command](args)
    except BadInput as error:
        print(f"samzeroshot {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"samzeroshot {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
