"""Command line: ``samzeroshot segment``, ``samzeroshot evaluate``, ``samzeroshot compare`` and
``samzeroshot reproduce``.

Bad input ends with exit code 2 and one line on stderr that names the file and the problem, before
any time is spent on the model. Outputs never replace an input, and replace an existing output
only once they are complete. ``evaluate`` keeps every finished case on disk and resumes from them;
a results folder that another run is writing is refused the same way (exit code 2, one line);
with ``--workers N`` or ``--scheduler ADDRESS`` its cases run on a Dask cluster (:mod:`.cluster`).
``reproduce`` evaluates the paper's two data sets with its prompt and writes its table beside ours.
An internal error keeps its traceback and ends with one line saying what to report.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import __version__, files
from .errors import Cancelled, UserError
from .layouts import LAYOUT_NAMES
from .parameters import Parameters
from .reproduction import SETS

EXIT_BAD_INPUT = 2
#: The run finished, but some cases could not be computed (listed as ``failed``; run again to retry
#: them).
EXIT_CASES_FAILED = 3
EXIT_INTERRUPTED = 130


def _add_setting_options(parser, command: str) -> None:
    """The options of the settings ``command`` offers (:meth:`Parameters.options`), each with its
    default, allowed names and help taken from :class:`Parameters`; the values land on the
    parsed arguments under the settings' names, for :func:`_parameters`.

    A setting with a bool default is a flag: ``--name`` turns on one that is off by default,
    ``--no-name`` turns off one that is on. Any other setting takes a value, checked by
    :meth:`Parameters.validate` (not argparse's ``choices=``: the one-line error with exit code 2).
    """
    group = parser.add_argument_group("settings")
    for name in Parameters.options(command):
        default, choices = Parameters.default(name), Parameters.choices(name)
        option, text = name.replace("_", "-"), Parameters.help(name)
        if isinstance(default, bool):
            if default:
                text = f"turn off (on by default): {text}"
            flag, action = (
                (f"--no-{option}", "store_false") if default else (f"--{option}", "store_true")
            )
            group.add_argument(flag, dest=name, action=action, help=text)
            continue
        if choices:
            text += f": {', '.join(choices)}"
        if default is not None:
            text += f" (default {default})"
        group.add_argument(f"--{option}", dest=name, default=default, help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samzeroshot", description="Zero-shot lung segmentation with Segment Anything."
    )
    parser.add_argument("--version", action="version", version=f"samzeroshot {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{segment,evaluate,compare,reproduce}")
    _add_segment_command(commands)
    _add_evaluate_command(commands)
    _add_compare_command(commands)
    _add_reproduce_command(commands)
    return parser


def _add_segment_command(commands) -> None:
    segment = commands.add_parser(
        "segment", help="segment one volume from prompt segments; write .seg.nrrd and metrics"
    )
    segment.add_argument("--volume", required=True, help="the image (.nrrd, .nii.gz, ...)")
    segment.add_argument(
        "--prompts", required=True, help="segmentation with the prompt segments (.seg.nrrd)"
    )
    segment.add_argument("--segments", help="comma-separated segment names or IDs (default: all)")
    segment.add_argument(
        "--reference",
        help="segmentation scored against (default: the prompts, i.e. oracle prompts)",
    )
    segment.add_argument(
        "--out", required=True, help="output segmentation (.seg.nrrd); an existing file is replaced"
    )
    segment.add_argument("--metrics", help="metrics table (.tsv); an existing file is replaced")
    _add_setting_options(segment, "segment")


def _add_evaluate_command(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate on a data set: a folder of images and one of masks, or a published layout",
    )
    evaluate.add_argument("--images", help="folder of images (.png .jpg .dcm .nrrd .nii .nii.gz)")
    evaluate.add_argument(
        "--masks",
        help=(
            "folder of label masks (0 background, 255 ignore, others segments), "
            "paired with the images by file name"
        ),
    )
    evaluate.add_argument(
        "--layout",
        default="paired",
        help=(
            f"how the data set is laid out: {', '.join(LAYOUT_NAMES)} (default paired: --images "
            "and --masks; the others read the published folder given with --data)"
        ),
    )
    evaluate.add_argument(
        "--data",
        help="the data set's folder as published (with --layout montgomery or covid19-ct-seg)",
    )
    evaluate.add_argument(
        "--out",
        required=True,
        help=(
            "output folder for slices.csv, cases.csv, summary.json; "
            "a folder of an earlier run with the same settings is resumed"
        ),
    )
    evaluate.add_argument(
        "--propagate-from",
        type=_propagate_from,
        metavar="{middle,K}",
        help=(
            "keep the reference only on some slices and propagate to the rest: middle (the slice"
            " with the largest reference area) or K slices evenly spaced among those with labels"
        ),
    )
    _add_click_options(evaluate)
    _add_run_options(evaluate)
    _add_setting_options(evaluate, "evaluate")


def _propagate_from(value: str) -> str:
    """``middle`` or a whole number of annotated slices, 1 or more (as given)."""
    if value != "middle" and not (value.isdigit() and int(value) >= 1):
        raise argparse.ArgumentTypeError(
            f"{value!r}: give middle or a number of annotated slices (1 or more)"
        )
    return value


def _add_click_options(evaluate) -> None:
    from .interactive import CORRECTIONS, DEFAULT_CORRECTION

    evaluate.add_argument(
        "--clicks",
        type=int,
        default=0,
        help=(
            "simulate N correction clicks per slice and segment after the first result, each at "
            "the deepest point of the largest wrong region (dice_by_clicks in the results)"
        ),
    )
    evaluate.add_argument(
        "--correction",
        choices=CORRECTIONS,
        default=DEFAULT_CORRECTION,
        help=f"how a click is given to the model (default {DEFAULT_CORRECTION})",
    )


def _clicks(args, client) -> int:
    """``--clicks`` checked: a whole number, 0 or more, computed in this process."""
    clicks = getattr(args, "clicks", 0) or 0
    if clicks < 0:
        raise UserError(f"--clicks {clicks}: give a whole number of clicks, 0 or more")
    if clicks and client is not None:
        raise UserError("--clicks runs in this process: leave out --workers and --scheduler")
    return clicks


def _add_compare_command(commands) -> None:
    compare = commands.add_parser(
        "compare", help="compare two evaluate output folders slice by slice (B minus A)"
    )
    compare.add_argument("a", help="evaluate output folder A (the baseline)")
    compare.add_argument("b", help="evaluate output folder B")
    compare.add_argument(
        "--out", help="where compare.json goes: a .json file or a folder (default: inside folder B)"
    )


def _add_reproduce_command(commands) -> None:
    reproduce = commands.add_parser(
        "reproduce",
        help=(
            "the paper's table: its two data sets as published, its "
            "prompt (strategy paper), its numbers beside ours"
        ),
    )
    for layout, about in SETS.items():
        reproduce.add_argument(
            about["option"],
            dest=layout.replace("-", "_"),
            help=f"the {about['title'].split(': ')[1]} data set's folder as published",
        )
    reproduce.add_argument(
        "--out",
        required=True,
        help="output folder: a results folder per data set, table.md and table.json",
    )
    _add_run_options(reproduce)
    _add_setting_options(reproduce, "reproduce")


def _add_run_options(parser):
    """Options of the commands that evaluate cohorts: resuming, bad cases, where the cases run."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results in --out even when they were made with other settings",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="skip bad cases (listed in summary.json) instead of stopping",
    )
    parser.add_argument(
        "--workers",
        default="1",
        help=(
            "cases at once, each in a worker process of a Dask cluster on "
            "this machine sharing its cores (default 1: in this process, without Dask)"
        ),
    )
    parser.add_argument(
        "--scheduler",
        help=(
            "run the cases on the Dask cluster of this scheduler (e.g. "
            "tcp://10.0.0.5:8786); its workers must see the data at the same paths"
        ),
    )


def _parameters(args, **fixed) -> Parameters:
    """The settings given on the command line, validated: those ``args.command`` offers as
    options, then ``fixed`` (the command's own choices); the others keep their defaults."""
    given = {name: getattr(args, name) for name in Parameters.options(args.command)}
    return Parameters(**{**given, **fixed}).validate()


def _load_engine(engines, parameters: Parameters):
    """The command's engine for ``parameters``, from its factory (loaded once, then kept)."""
    return engines.get(
        parameters, progress=_progress, log=lambda line: print(line, file=sys.stderr)
    )


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
        raise UserError(f"{path}: is a folder, not a {what} file")
    if not result.is_file():
        raise UserError(f"{path}: {what} file not found")
    return result


def _checkpoint_input(parameters: Parameters) -> dict[str, Path]:
    """The checkpoint file, if one was named, as an input that outputs must keep away from."""
    from .models import user_checkpoint

    if not parameters.checkpoint:
        return {}
    return {"checkpoint": user_checkpoint(parameters.checkpoint)}


def _check_outputs(outputs: dict[str, Path], inputs: dict[str, Path]) -> None:
    """Outputs apart from inputs and from each other, and each one writable (folders created)."""
    files.check_apart(outputs, inputs)
    for path in outputs.values():
        files.check_output_file(path)


def _write_failed(error: OSError, folder, kept: str) -> UserError:
    return UserError(f"{folder}: could not be written ({error.strerror or error}); {kept}")


def _segment_files(args, parameters: Parameters) -> tuple[dict[str, Path], dict[str, Path]]:
    """``(inputs, outputs)`` of ``segment`` by what they are, checked before anything is read."""
    inputs = {
        "volume": _existing(args.volume, "volume"),
        "prompt segmentation": _existing(args.prompts, "prompt segmentation"),
    }
    if args.reference:
        inputs["reference segmentation"] = _existing(args.reference, "reference segmentation")
    inputs.update(_checkpoint_input(parameters))
    for name in ("prompt segmentation", "reference segmentation"):
        if name in inputs and files.same_file(inputs[name], inputs["volume"]):
            raise UserError(
                f"{inputs[name]}: the {name} is the volume itself: give the segmentation file"
            )
    outputs = {"output segmentation": Path(args.out)}
    if not outputs["output segmentation"].name.endswith(".seg.nrrd"):
        raise UserError(f"{args.out}: the output segmentation must be a .seg.nrrd file")
    if args.metrics:
        outputs["metrics table"] = Path(args.metrics)
    _check_outputs(outputs, inputs)
    return inputs, outputs


def _replace(path: Path, write) -> None:
    """Write ``path`` through ``write(temporary path)``, replacing an earlier file only when
    complete."""
    try:
        with files.replaced_atomically(path) as partial:
            write(partial)
    except OSError as error:
        raise UserError(
            f"{path}: could not be written ({error.strerror or error}); "
            "an earlier file of that name is left as it was"
        ) from None


class _SliceProgress:
    """The slice loop's ``progress(fraction, message)`` shown as slices done (a bar, or a line per
    slice)."""

    def __init__(self, inputs, propagate: bool):
        from . import progress

        views = [inputs.geometry.view(mask) for mask in inputs.prompt_masks.values()]
        # The loop reports its fraction of the slices with prompts, or of every slice when it
        # propagates.
        self.total = (
            len(views[0])
            if propagate
            else int(np.logical_or.reduce([v.any(axis=(1, 2)) for v in views]).sum())
        )
        self.view = progress.on_stderr(self.total, unit="slice")

    def __call__(self, fraction: float, message: str) -> None:
        done = min(self.total, int(round(fraction * self.total)))
        if done > self.view.done:
            steps = done - self.view.done
            self.view.advance("", slices=steps, items=steps)


def run_segment(args) -> int:
    from . import headless, mrml_io, segment_nodes, volumes

    parameters = _parameters(args)
    inputs, outputs = _segment_files(args, parameters)
    scene, app = headless.new_scene()
    volume_node = headless.load_volume(app, inputs["volume"])
    # The node holds the voxels as Slicer reads them; the modality is what the file records.
    volume = replace(
        volumes.volume_from_node(volume_node), modality=volumes.recorded_modality(inputs["volume"])
    )
    prompts = headless.load_segmentation(app, inputs["prompt segmentation"])
    reference = (
        headless.load_segmentation(app, inputs["reference segmentation"])
        if args.reference
        else None
    )
    segments = [s.strip() for s in args.segments.split(",")] if args.segments else None
    checked = segment_nodes.read_inputs(
        volume_node, prompts, segments, reference, parameters, log=_log, volume=volume
    )
    _load_engine(args.engines, parameters)
    slices = _SliceProgress(checked, parameters.propagate)
    try:
        segmentation, table = segment_nodes.process(
            volume_node,
            prompts,
            segments,
            reference,
            parameters,
            progress=slices,
            log=slices.view.note,
            inputs=checked,
            engines=args.engines,
        )
    finally:
        slices.view.close()
    _replace(
        outputs["output segmentation"],
        lambda partial: headless.write_segmentation(segmentation, partial),
    )
    print(f"segmentation: {outputs['output segmentation']}")
    if args.metrics:
        _replace(outputs["metrics table"], lambda partial: headless.write_table_tsv(table, partial))
        print(f"metrics: {outputs['metrics table']}")
    print(table.GetAttribute(mrml_io.SUMMARY_ATTRIBUTE))
    return 0


@contextlib.contextmanager
def _stop_after_current_case(command: str):
    """Yield ``cancel()``: true once Ctrl-C was pressed; a second Ctrl-C stops at once."""
    requested = []

    def on_interrupt(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        print(
            ("\n" if sys.stderr.isatty() else "")
            + f"samzeroshot {command}: stopping after the current case "
            "(Ctrl-C again stops at once); finished cases are kept",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class Cohort:
    """A data set checked and its results folder opened, ready to run."""

    cases: list
    problems: list
    folder: object  # results.ResultsFolder
    out: Path
    clicks: int = 0  # simulated correction clicks (evaluate --clicks)
    correction: str | None = None


def _data_set(
    layout: str, data: str | None, images: str | None, masks: str | None, data_option: str
):
    """A layout's ``(cases, problems)``, its source for the settings and the folders it reads."""
    from . import layouts

    paired = layout == "paired"
    if layout not in LAYOUT_NAMES:
        raise UserError(f"Unknown layout {layout!r}: choose one of {', '.join(LAYOUT_NAMES)}.")
    if paired and (data or not (images and masks)):
        raise UserError(
            "give --images and --masks (or a published data set with --layout NAME --data DIR)"
        )
    if not paired and (not data or images or masks):
        raise UserError(
            f"--layout {layout} reads the data set's folder as published: give --data DIR "
            "(not --images/--masks)"
        )
    found = layouts.find(layout, data, images, masks)
    folders = (
        {"the --images folder": images, "the --masks folder": masks}
        if paired
        else {f"the {data_option} folder": data}
    )
    for case in found[0]:
        for path in [case.image_path] + case.mask_paths:
            folders.setdefault(f"a folder of the data set ({path.parent})", path.parent)
    return found, layouts.source(layout, data, images, masks), folders


def _check_results_folder(outs: tuple[Path, ...], input_folders: dict[str, object]) -> None:
    """The results folder(s) must be writable folders of their own, not one of the input folders."""
    for given in outs:
        for what, folder in input_folders.items():
            if folder is not None and files.same_file(given, folder):
                raise UserError(f"{given}: --out is {what}: give the results a folder of their own")
    files.writable_folder(outs[0])


def _open_results(out: Path, overwrite: bool, parameters: Parameters, cases, settings: dict):
    """The results folder, checked against the inputs and its stored settings before any model
    work."""
    from . import results

    inputs = {f"image {case.image_path.name}": case.image_path for case in cases}
    inputs.update({f"mask {path.name}": path for case in cases for path in case.mask_paths})
    inputs.update(_checkpoint_input(parameters))
    _check_outputs({name: out / name for name in results.FILES}, inputs)
    try:
        return results.ResultsFolder(out, settings, overwrite=overwrite)
    except OSError as error:
        raise _write_failed(error, out, "make room or choose another output folder") from None


def _open_cohort(
    args,
    parameters: Parameters,
    out: Path,
    layout: str,
    data=None,
    images=None,
    masks=None,
    propagate_from: str | None = None,
    data_option: str = "--data",
    clicks: int = 0,
    correction: str | None = None,
) -> Cohort:
    """Find and read a data set's cases, and open its results folder: every check before the
    model."""
    from . import cases as cohort_cases
    from . import evaluation

    found, source, input_folders = _data_set(layout, data, images, masks, data_option)
    # reproduce's --out holds a results folder per data set: neither may be an input folder.
    _check_results_folder(
        (out, out.parent) if args.command == "reproduce" else (out,), input_folders
    )
    cases, problems = cohort_cases.prepare(
        found, data or images, keep_going=args.keep_going, fill_nonfinite=parameters.fill_nonfinite
    )
    settings = evaluation.run_settings(parameters, source, propagate_from, clicks, correction)
    folder = _open_results(out, args.overwrite, parameters, cases, settings)
    return Cohort(cases, problems, folder, out, clicks, correction)


def _workers(args) -> int:
    """``--workers`` as a number (1: this process), checked against ``--scheduler``."""
    try:
        workers = int(args.workers)
    except ValueError:
        workers = 0
    if workers < 1:
        raise UserError(
            f"--workers {args.workers}: give a whole number of worker processes, 1 or more"
        )
    if args.scheduler and workers != 1:
        raise UserError(
            "give --workers or --scheduler, not both (a scheduler's cluster has its own workers)"
        )
    return workers


@contextlib.contextmanager
def _compute(args, parameters: Parameters):
    """Yield where the cases run: ``None`` (this process, with the engine loaded) or a Dask client.

    For a cluster the client only checks (and downloads once) the weights; each worker loads the
    model itself, so this process spends no time or memory on it.
    """
    workers = _workers(args)
    if workers == 1 and not args.scheduler:
        _load_engine(args.engines, parameters)
        yield None
        return
    from . import cluster

    with cluster.connect(workers, args.scheduler) as client:
        cluster.prepare_weights(parameters, progress=_progress)
        yield client


def _run_cohort(
    cohort: Cohort, parameters: Parameters, client, propagate_from, cancel, engines
) -> dict:
    """Evaluate a cohort in this process (with an engine of ``engines``) or on the cluster of
    ``client``; its summary."""
    from . import evaluation, progress

    if client is None:
        return evaluation.evaluate(
            cohort.cases,
            cohort.folder,
            engines.get(parameters),
            parameters,
            propagate_from=propagate_from,
            skipped=cohort.problems,
            progress=progress.on_stderr,
            cancel=cancel,
            clicks=cohort.clicks,
            correction=cohort.correction,
        )
    from . import cluster

    return cluster.evaluate(
        cohort.cases,
        cohort.folder,
        client,
        parameters,
        propagate_from=propagate_from,
        skipped=cohort.problems,
        progress=progress.on_stderr,
        cancel=cancel,
    )


def _run_guarded(
    command: str, cohort: Cohort, parameters: Parameters, client, propagate_from, cancel, engines
) -> dict | None:
    """:func:`_run_cohort`, its errors as one line; ``None`` when stopped by Ctrl-C (and said
    so)."""
    try:
        return _run_cohort(cohort, parameters, client, propagate_from, cancel, engines)
    except Cancelled:
        print(
            f"samzeroshot {command}: stopped: {len(cohort.folder.results)} of {len(cohort.cases)}"
            f" cases are in {cohort.out}; run the same command again to finish the rest",
            file=sys.stderr,
        )
        return None
    except OSError as error:
        raise _write_failed(
            error,
            cohort.out,
            f"the {len(cohort.folder.results)} finished cases are kept; "
            "make room and run the same command again to finish",
        ) from None


def _report(summary: dict, out: Path) -> int:
    """Print what a cohort gave; the exit code (:data:`EXIT_CASES_FAILED` when a case failed)."""
    for skipped in summary["skipped"]:
        print(f"skipped {skipped['file']}: {skipped['problem']}", file=sys.stderr)
    for failed in summary["failed"]:
        print(f"failed {failed['file']}: {failed['reason']}", file=sys.stderr)
    if "dice_by_clicks" in summary:
        curve = ", ".join(f"{d:.4f}" for d in summary["dice_by_clicks"])
        print(f"mean Dice after 0, 1, ... clicks: {curve}")
    print(
        f"{summary['n_cases']} cases, {summary['n_scored_slices']} scored slices: mean Dice"
        f" {summary['mean_dice']:.4f}, mean Jaccard {summary['mean_jaccard']:.4f}"
        f" ({summary['model']}, {summary['strategy']}, {summary['seconds']:.0f} s) ->"
        f" {out}/summary.json"
    )
    return EXIT_CASES_FAILED if summary["failed"] else 0


def run_evaluate(args) -> int:
    parameters = _parameters(args)
    clicks = _clicks(args, None if _workers(args) == 1 and not args.scheduler else True)
    cohort = _open_cohort(
        args,
        parameters,
        Path(args.out),
        args.layout,
        args.data,
        args.images,
        args.masks,
        args.propagate_from,
        clicks=clicks,
        correction=args.correction if clicks else None,
    )
    with (
        cohort.folder,  # its lock is given back however the run ends
        _compute(args, parameters) as client,
        _stop_after_current_case(args.command) as cancel,
    ):
        summary = _run_guarded(
            args.command, cohort, parameters, client, args.propagate_from, cancel, args.engines
        )
    return EXIT_INTERRUPTED if summary is None else _report(summary, cohort.out)


def run_reproduce(args) -> int:
    from . import reproduction

    parameters = _parameters(args, strategy=reproduction.STRATEGY)
    given = {layout: getattr(args, layout.replace("-", "_")) for layout in SETS}
    given = {layout: folder for layout, folder in given.items() if folder}
    if not given:
        raise UserError(
            "give the data sets' folders:"
            f" {' and/or '.join(s['option'] + ' DIR' for s in SETS.values())}"
        )
    out, cohorts = Path(args.out), {}
    with contextlib.ExitStack() as held:  # each results folder's lock, given back at the end
        for layout, folder in given.items():
            cohorts[layout] = _open_cohort(
                args,
                parameters,
                out / layout,
                layout,
                data=folder,
                data_option=SETS[layout]["option"],
            )
            held.enter_context(cohorts[layout].folder)
        print(
            f"samzeroshot reproduce: the paper's prompt (strategy {reproduction.STRATEGY}) with "
            f"model {parameters.model}, on {', '.join(given)}",
            file=sys.stderr,
        )
        summaries, code = _run_cohorts(args, parameters, cohorts)
        if summaries is None:
            return EXIT_INTERRUPTED
        try:
            paths = reproduction.write(out, summaries)
        except OSError as error:
            raise _write_failed(error, out, "the results folders are kept") from None
    print(Path(paths["markdown"]).read_text(encoding="utf-8"))
    print(f"table: {paths['markdown']}, {paths['json']}")
    return code


def _run_cohorts(args, parameters: Parameters, cohorts: dict) -> tuple[dict | None, int]:
    """Each cohort of ``reproduce`` run and reported: the summaries by layout (``None`` when
    stopped by Ctrl-C) and the exit code."""
    summaries, code = {}, 0
    with _compute(args, parameters) as client, _stop_after_current_case(args.command) as cancel:
        for layout, cohort in cohorts.items():
            summary = _run_guarded(
                args.command, cohort, parameters, client, None, cancel, args.engines
            )
            if summary is None:
                return None, EXIT_INTERRUPTED
            summaries[layout] = summary
            code = max(code, _report(summary, cohort.out))
    return summaries, code


def run_compare(args) -> int:
    from . import compare

    result = compare.compare(args.a, args.b)
    path = compare.output_path(args.b, args.out)
    try:
        compare.write(result, path)
    except OSError as error:
        raise _write_failed(error, path, "an earlier file of that name is left as it was") from None
    print(compare.report(result))
    print(f"-> {path}")
    return 0


def main(argv=None, engines=None) -> int:
    """Run the ``samzeroshot`` command line ``argv`` (default: the process's); its exit code.

    ``engines``: the :class:`~.engines.EngineFactory` the command takes its engine from (a caller
    running several commands shares its engines between them); None: one of the command's own.
    """
    from .engines import EngineFactory

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    args.engines = engines if engines is not None else EngineFactory()
    try:
        return {
            "segment": run_segment,
            "evaluate": run_evaluate,
            "compare": run_compare,
            "reproduce": run_reproduce,
        }[args.command](args)
    except UserError as error:
        print(f"samzeroshot {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"samzeroshot {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # a fault of ours, not of the input: the traceback is what we need to fix it
        traceback.print_exc()
        print(
            f"samzeroshot {args.command}: internal error: please report it to the SAMZeroShot"
            f" developers with the version (samzeroshot {__version__}, Python"
            f" {sys.version.split()[0]}), the command line and the text above",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
