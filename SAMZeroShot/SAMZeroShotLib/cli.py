"""Command line: ``samzeroshot segment``, ``samzeroshot evaluate`` and ``samzeroshot compare``.

Bad input ends with exit code 2 and one line on stderr that names the file and the problem, before
any time is spent on the model. Outputs never replace an input, and replace an existing output
only once they are complete. ``evaluate`` keeps every finished case on disk and resumes from them.
An internal error keeps its traceback and ends with one line saying what to report.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import traceback
from pathlib import Path
from typing import Dict, Tuple

from . import __version__, files
from .parameters import Parameters

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

#: Settings of :class:`Parameters` offered as ``--name`` options by both commands, in this order.
MODEL_OPTIONS = ("model", "checkpoint", "strategy", "window", "modality", "device", "precision", "backend")


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
    group.add_argument("--fill-nonfinite", action="store_true", help=Parameters.help("fill_nonfinite"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samzeroshot", description="Zero-shot lung segmentation with Segment Anything.")
    parser.add_argument("--version", action="version", version=f"samzeroshot {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{segment,evaluate,compare}")

    segment = commands.add_parser("segment", help="segment one volume from prompt segments; write .seg.nrrd and metrics")
    segment.add_argument("--volume", required=True, help="the image (.nrrd, .nii.gz, ...)")
    segment.add_argument("--prompts", required=True, help="segmentation with the prompt segments (.seg.nrrd)")
    segment.add_argument("--segments", help="comma-separated segment names or IDs (default: all)")
    segment.add_argument("--reference", help="segmentation scored against (default: the prompts, i.e. oracle prompts)")
    segment.add_argument("--out", required=True, help="output segmentation (.seg.nrrd); an existing file is replaced")
    segment.add_argument("--metrics", help="metrics table (.tsv); an existing file is replaced")
    segment.add_argument("--propagate", action="store_true", help="carry prompts from annotated slices to the others")
    _add_model_options(segment)

    evaluate = commands.add_parser("evaluate", help="evaluate on a folder of images and masks (paired by file name)")
    evaluate.add_argument("--images", required=True, help="folder of images (.png .jpg .dcm .nrrd .nii .nii.gz)")
    evaluate.add_argument("--masks", required=True, help="folder of label masks (0 background, 255 ignore, others segments)")
    evaluate.add_argument("--out", required=True, help="output folder for slices.csv, cases.csv, summary.json; "
                          "a folder of an earlier run with the same settings is resumed")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace the results in --out even when they were made with other settings")
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
                          embedding_cache=not args.no_embedding_cache, propagate=propagate,
                          fill_nonfinite=args.fill_nonfinite).validate()
    except ValueError as error:
        raise BadInput(str(error)) from None


def _load_engine(parameters: Parameters):
    from . import logic
    from .models import CheckpointError

    try:
        return logic.get_engine(parameters, progress=_progress, log=lambda line: print(line, file=sys.stderr))
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


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _existing(path: str, what: str) -> Path:
    result = Path(path)
    if result.is_dir():
        raise BadInput(f"{path}: is a folder, not a {what} file")
    if not result.is_file():
        raise BadInput(f"{path}: {what} file not found")
    return result


def _checkpoint_input(parameters: Parameters) -> Dict[str, Path]:
    """The checkpoint file, if one was named, as an input that outputs must keep away from."""
    from .models import CheckpointError, user_checkpoint

    if not parameters.checkpoint:
        return {}
    try:
        return {"checkpoint": user_checkpoint(parameters.checkpoint)}
    except CheckpointError as error:
        raise BadInput(str(error)) from None


def _check_outputs(outputs: Dict[str, Path], inputs: Dict[str, Path]) -> None:
    """Outputs apart from inputs and from each other, and each one writable (folders created)."""
    try:
        files.check_apart(outputs, inputs)
        for path in outputs.values():
            files.check_output_file(path)
    except files.OutputError as error:
        raise BadInput(str(error)) from None


def _write_failed(error: OSError, folder, kept: str) -> BadInput:
    return BadInput(f"{folder}: could not be written ({error.strerror or error}); {kept}")


def _segment_files(args, parameters: Parameters) -> Tuple[Dict[str, Path], Dict[str, Path]]:
    """``(inputs, outputs)`` of ``segment`` by what they are, checked before anything is read."""
    inputs = {"volume": _existing(args.volume, "volume"),
              "prompt segmentation": _existing(args.prompts, "prompt segmentation")}
    if args.reference:
        inputs["reference segmentation"] = _existing(args.reference, "reference segmentation")
    inputs.update(_checkpoint_input(parameters))
    for name in ("prompt segmentation", "reference segmentation"):
        if name in inputs and files.same_file(inputs[name], inputs["volume"]):
            raise BadInput(f"{inputs[name]}: the {name} is the volume itself: give the segmentation file")
    outputs = {"output segmentation": Path(args.out)}
    if not outputs["output segmentation"].name.endswith(".seg.nrrd"):
        raise BadInput(f"{args.out}: the output segmentation must be a .seg.nrrd file")
    if args.metrics:
        outputs["metrics table"] = Path(args.metrics)
    _check_outputs(outputs, inputs)
    return inputs, outputs


def _replace(path: Path, write) -> None:
    """Write ``path`` through ``write(temporary path)``, replacing an earlier file only when complete."""
    try:
        with files.replaced_atomically(path) as partial:
            write(partial)
    except OSError as error:
        raise BadInput(f"{path}: could not be written ({error.strerror or error}); "
                       "an earlier file of that name is left as it was") from None


def run_segment(args) -> int:
    from . import evaluation, logic, mrml_io

    parameters = _parameters(args, propagate=args.propagate)
    inputs, outputs = _segment_files(args, parameters)
    scene, app = mrml_io.new_scene()
    try:
        volume = mrml_io.load_volume(app, inputs["volume"])
        recorded = evaluation.declared_modality(inputs["volume"])
        if recorded:  # as Slicer's DICOM loader keeps it
            mrml_io.record_modality(volume, recorded)
        prompts = mrml_io.load_segmentation(app, inputs["prompt segmentation"])
        reference = mrml_io.load_segmentation(app, inputs["reference segmentation"]) if args.reference else None
        segments = [s.strip() for s in args.segments.split(",")] if args.segments else None
        checked = logic.read_inputs(volume, prompts, segments, reference, parameters, log=_log)
    except mrml_io.InputError as error:
        raise BadInput(str(error)) from None
    _load_engine(parameters)
    segmentation, table = logic.process(volume, prompts, segments, reference, parameters,
                                        progress=_progress, log=_log, inputs=checked)
    _replace(outputs["output segmentation"], lambda partial: mrml_io.write_segmentation(segmentation, partial))
    print(f"segmentation: {outputs['output segmentation']}")
    if args.metrics:
        _replace(outputs["metrics table"], lambda partial: mrml_io.write_table_tsv(table, partial))
        print(f"metrics: {outputs['metrics table']}")
    print(table.GetAttribute(mrml_io.SUMMARY_ATTRIBUTE))
    return 0


@contextlib.contextmanager
def _stop_after_current_case():
    """Yield ``cancel()``: true once Ctrl-C was pressed; a second Ctrl-C stops at once."""
    requested = []

    def on_interrupt(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        print(("\n" if sys.stderr.isatty() else "") + "samzeroshot evaluate: stopping after the current case "
              "(Ctrl-C again stops at once); finished cases are kept", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def _open_results(args, parameters: Parameters, prepared):
    """The results folder, checked against the inputs and its stored settings before any model work."""
    from . import evaluation, results

    cases, _ = prepared
    inputs = {f"image {case.image_path.name}": case.image_path for case in cases}
    inputs.update({f"mask {case.mask_path.name}": case.mask_path for case in cases})
    inputs.update(_checkpoint_input(parameters))
    out = Path(args.out)
    _check_outputs({name: out / name for name in results.FILES}, inputs)
    try:
        settings = evaluation.run_settings(parameters, args.images, args.masks, args.propagate_from)
        return results.ResultsFolder(out, settings, overwrite=args.overwrite)
    except files.OutputError as error:
        raise BadInput(str(error)) from None
    except OSError as error:
        raise _write_failed(error, out, "make room or choose another output folder") from None


def _check_results_folder(args) -> None:
    """``--out`` must be a writable folder of its own, not one of the input folders."""
    for option, folder in (("--images", args.images), ("--masks", args.masks)):
        if files.same_file(args.out, folder):
            raise BadInput(f"{args.out}: --out is the {option} folder: give the results a folder of their own")
    try:
        files.writable_folder(args.out)
    except files.OutputError as error:
        raise BadInput(str(error)) from None


def run_evaluate(args) -> int:
    from . import evaluation
    from .pipeline import Cancelled

    parameters = _parameters(args)
    _check_results_folder(args)
    try:
        prepared = evaluation.prepare(args.images, args.masks, keep_going=args.keep_going,
                                      fill_nonfinite=parameters.fill_nonfinite)
    except evaluation.CaseError as error:
        raise BadInput(str(error)) from None
    folder = _open_results(args, parameters, prepared)
    engine = _load_engine(parameters)
    cases, problems = prepared
    try:
        with _stop_after_current_case() as cancel:
            summary = evaluation.evaluate(cases, folder, engine, parameters, propagate_from=args.propagate_from,
                                          skipped=problems, progress=_progress, cancel=cancel, log=_log)
    except evaluation.CaseError as error:
        raise BadInput(str(error)) from None
    except Cancelled:
        print(f"samzeroshot evaluate: stopped: {len(folder.results)} of {len(cases)} cases are in {args.out}; "
              "run the same command again to finish the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:
        raise _write_failed(error, args.out, f"the {len(folder.results)} finished cases are kept; "
                                             "make room and run the same command again to finish") from None
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
        return EXIT_INTERRUPTED
    except Exception:  # a fault of ours, not of the input: the traceback is what we need to fix it
        traceback.print_exc()
        print(f"samzeroshot {args.command}: internal error: please report it to the SAMZeroShot developers with "
              f"the version (samzeroshot {__version__}, Python {sys.version.split()[0]}), the command line and "
              "the text above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
