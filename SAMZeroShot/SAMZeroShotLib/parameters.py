"""The user's choices for one run, defined once: each setting's name, default, allowed names, help
and where it is used.

Everything else is derived from :class:`Parameters` and its fields' metadata (see
:func:`_setting`): the command line's options (:mod:`.cli`), the Slicer module's parameter node
fields and their mapping (SAMZeroShot.py), the self-test's settings (the defaults), the key of the
kept engine (:meth:`Parameters.engine_key`) and what a results folder depends on
(:meth:`Parameters.results_settings`). A setting added here is offered and recorded everywhere it
says, with no second list to update. Imports nothing heavy (no torch), so the Slicer module can
declare its parameter node before the dependencies are installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

from .errors import SettingError
from .imaging import SLICE_AXIS_NAMES, WINDOW_NAMES
from .modality import MODALITY_NAMES
from .models import DEVICE_NAMES, MODEL_NAMES
from .strategies import STRATEGIES

STRATEGY_NAMES = ("auto",) + tuple(STRATEGIES)
# auto: bf16 where the CPU multiplies bf16 natively and it passes the accuracy guard, else fp32;
# bf16/fp16: reduced precision of the model's parts (fp16: PyTorch autocast, for GPUs).
PRECISION_NAMES = ("auto", "fp32", "bf16", "fp16")
# auto: OpenVINO on CPUs with AVX-512, else ONNX Runtime, else PyTorch (see runtime_choice.choose).
BACKEND_NAMES = ("auto", "torch", "onnxruntime", "openvino")

#: The command-line commands that run the model (``compare`` has no settings).
COMMANDS = ("segment", "evaluate", "reproduce")
#: ``node=`` of :func:`_setting`: the parameter node field is the setting's name in camelCase.
CAMEL_CASE = "camelCase"


def camel_case(name: str) -> str:
    """``fill_nonfinite`` -> ``fillNonfinite`` (the parameter node's spelling of a setting)."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _checkpoint_digest(parameters: Parameters) -> str | None:
    from .models import checkpoint_sha256

    return checkpoint_sha256(parameters.model, parameters.checkpoint)


def _resolved_strategy(parameters: Parameters) -> str:
    from .strategies import resolve

    return resolve(parameters.strategy, parameters.model)[0]


def _setting(
    default,
    help: str,
    choices: tuple[str, ...] | None = None,
    *,
    node: str | None = CAMEL_CASE,
    path: bool = False,
    commands: tuple[str, ...] = COMMANDS,
    engine: bool = False,
    results: bool | tuple[str, Callable[[Parameters], object]] = False,
    summary: bool = False,
):
    """A setting: its default, help text and, for named choices, the names it accepts; then where
    it is used.

    ``node``: its Slicer parameter node field (:data:`CAMEL_CASE`: its name in camelCase; None: not
    kept in the node). ``path``: a file path (the node keeps a ``pathlib.Path``, empty for None).
    ``commands``: the commands offering it as an option (a bool default makes it a flag:
    ``--name`` when off by default, ``--no-name`` when on). ``engine``: another value needs another
    engine (model, weights, runtime). ``results``: an evaluation's results depend on it, recorded
    under its name as given (True) or as ``(key, value_of(parameters))``. ``summary``: its recorded
    value is also shown in the results' summary.
    """
    return field(
        default=default,
        metadata={
            "help": help,
            "choices": choices,
            "node": node,
            "path": path,
            "commands": commands,
            "engine": engine,
            "results": results,
            "summary": summary,
        },
    )


@dataclass
class Parameters:
    """Settings of a segmentation run (the defaults are what users get)."""

    model: str = _setting(
        "litemedsam",
        "the SAM model (litemedsam is built in)",
        MODEL_NAMES,
        engine=True,
        results=True,
        summary=True,
    )
    checkpoint: str | None = _setting(
        None,
        "a local weights file (SAM-compatible) instead of the built-in or downloaded one",
        node="checkpointPath",
        path=True,
        engine=True,
        results=("checkpoint_sha256", _checkpoint_digest),
    )
    strategy: str = _setting(
        "auto",
        "how prompts are made on a slice",
        STRATEGY_NAMES,
        commands=("segment", "evaluate"),  # reproduce: the paper's
        results=("strategy", _resolved_strategy),
        summary=True,
    )
    window: str = _setting(
        "auto",
        "intensity window",
        WINDOW_NAMES,
        commands=("segment", "evaluate"),  # reproduce: the data sets' own
        results=True,
        summary=True,
    )
    modality: str = _setting(
        "auto",
        "CT or radiograph (auto: what the file says, else the image content)",
        MODALITY_NAMES,
        commands=("segment", "evaluate"),  # reproduce: the data sets' own
        results=True,
        summary=True,
    )
    device: str = _setting("auto", "where the model runs", DEVICE_NAMES, engine=True)
    precision: str = _setting(
        "auto", "numeric precision of the model", PRECISION_NAMES, engine=True, results=True
    )
    backend: str = _setting("auto", "what runs the model on the CPU", BACKEND_NAMES, engine=True)
    embedding_cache: bool = _setting(True, "keep slice embeddings to skip the encoder on re-runs")
    propagate: bool = _setting(
        False,
        "prompts on a few slices only: carry them to the neighbouring slices",
        commands=("segment",),  # evaluate: --propagate-from, recorded by the evaluation
    )
    slice_axis: str = _setting(
        "auto", "slice orientation", SLICE_AXIS_NAMES, node=None, commands=()
    )  # for scripts only
    fill_nonfinite: bool = _setting(
        False,
        "replace NaN or infinite voxels by their slice's minimum "
        "(without it such a volume is refused)",
        results=True,
    )

    @classmethod
    def _meta(cls, name: str, key: str):
        return cls.__dataclass_fields__[name].metadata[key]

    @classmethod
    def default(cls, name: str):
        """The default value of setting ``name``."""
        return cls.__dataclass_fields__[name].default

    @classmethod
    def choices(cls, name: str) -> tuple[str, ...] | None:
        """The names setting ``name`` accepts, or None when it is not a named choice."""
        return cls._meta(name, "choices")

    @classmethod
    def help(cls, name: str) -> str:
        """The one-line help of setting ``name`` (the command line's and the docs')."""
        return cls._meta(name, "help")

    @classmethod
    def is_path(cls, name: str) -> bool:
        """Whether setting ``name`` is a file path (None: no file)."""
        return cls._meta(name, "path")

    @classmethod
    def choice_names(cls) -> tuple[str, ...]:
        """The settings that are named choices, in declaration order."""
        return tuple(f.name for f in fields(cls) if f.metadata["choices"])

    @classmethod
    def node_fields(cls) -> dict[str, str]:
        """Parameter node field -> setting, for the settings the Slicer module keeps in its node,
        in declaration order."""
        return {
            camel_case(f.name) if f.metadata["node"] == CAMEL_CASE else f.metadata["node"]: f.name
            for f in fields(cls)
            if f.metadata["node"] is not None
        }

    @classmethod
    def options(cls, command: str) -> tuple[str, ...]:
        """The settings command ``command`` offers as options, in declaration order."""
        return tuple(f.name for f in fields(cls) if command in f.metadata["commands"])

    def engine_key(self, **resolved) -> tuple:
        """``((name, value), ...)`` of the settings that make the engine: equal keys can share one
        engine. ``resolved`` replaces values that name the same engine differently (the device
        ``auto`` by the one it resolves to)."""
        return tuple(
            (f.name, resolved.get(f.name, getattr(self, f.name)))
            for f in fields(self)
            if f.metadata["engine"]
        )

    def _recorded(self, summary_only: bool = False) -> dict:
        recorded = {}
        for f in fields(self):
            how = f.metadata["results"]
            if not how or (summary_only and not f.metadata["summary"]):
                continue
            key, value_of = (f.name, lambda p, n=f.name: getattr(p, n)) if how is True else how
            recorded[key] = value_of(self)
        return recorded

    def results_settings(self) -> dict:
        """What an evaluation's results depend on among the settings, by recorded name: results
        made with other values are not mixed with these."""
        return self._recorded()

    def summary_settings(self) -> dict:
        """The recorded settings (as :meth:`results_settings` records them) that a results summary
        shows."""
        return self._recorded(summary_only=True)

    def validate(self) -> Parameters:
        """Raise SettingError naming the first setting that is not one of its allowed names."""
        for name in self.choice_names():
            value, allowed = getattr(self, name), self.choices(name)
            if name == "model" and value in ("vit_b", "vit_l", "vit_h") and self.checkpoint:
                continue  # any SAM-compatible file with its architecture's name
            if name == "device" and str(value).startswith("cuda:"):
                continue  # a numbered GPU
            if value not in allowed:
                raise SettingError(
                    f"Unknown {name.replace('_', ' ')} {value!r}: choose one of"
                    f" {', '.join(allowed)}."
                )
        return self
