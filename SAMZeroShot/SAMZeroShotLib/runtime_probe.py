"""A native CPU runtime is tried in a child process before the host application loads it.

OpenVINO's wheel ships its own ``libtbb.so.12`` while 3D Slicer loads its own TBB through VTK:
two builds of one native library in one process can crash it, and a crash inside Slicer loses
the user's scene. So, inside Slicer, the chosen CPU runtime first runs once in a child process of
Slicer's own Python: VTK imported first (as in Slicer), then the built-in model on that runtime
encodes one slice of the shipped chest CT. A crash or an error there makes the run fall back to
ONNX Runtime (one log line says so); the verdict is kept per runtime version and host version in
``<cache>/runtime-probes.json``, so each pair is tried once.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .files import write_text_atomically

#: What a runtime that fails its trial is replaced by.
FALLBACK = {"openvino": "onnxruntime", "onnxruntime": "torch"}
VERDICTS_FILE = "runtime-probes.json"
PROBE_VOLUME = Path(__file__).resolve().parents[1] / "Resources" / "TestData" / "CTChest4.nrrd"
#: Printed by the child when the encode finished.
PASSED = "SAMZeroShot runtime probe: passed"
#: A first trial also exports the model (about 20 s on 2 cores); more means it hangs.
TIMEOUT_SECONDS = 600

_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from SAMZeroShotLib.runtime_probe import child_main; "
    "sys.exit(child_main(sys.argv[2], sys.argv[3]))"
)


def chosen_cpu_runtime(parameters) -> str | None:
    """The CPU runtime (``openvino``/``onnxruntime``) these settings would load, or None (PyTorch,
    or a setting that the run itself will refuse with its own message)."""
    from . import cpu, models, runtime_choice
    from .errors import UserError

    try:
        device = models.resolve_device(parameters.device).split(":")[0]
        architecture = models.spec_for(parameters.model, parameters.checkpoint).architecture
        choice = runtime_choice.choose(
            cpu.current().flags,
            runtime_choice.installed_runtimes(),
            device,
            architecture,
            parameters.backend,
            parameters.precision,
        )
    except UserError:
        return None
    return choice.backend if choice.backend in FALLBACK else None


def safe_parameters(parameters, host: str, log: Callable[[str], None], run=subprocess.run):
    """``parameters``, or a copy whose backend is the first runtime that passes its trial."""
    from .runtime_choice import SUPPORTED_PRECISIONS

    candidate = chosen_cpu_runtime(parameters)
    if candidate is None:
        return parameters
    safe = probed_runtime(candidate, host, log, run=run)
    if safe == candidate:
        return parameters
    precision = parameters.precision
    if precision != "auto" and precision not in SUPPORTED_PRECISIONS[safe]:
        precision = "auto"
    return dataclasses.replace(parameters, backend=safe, precision=precision)


def probed_runtime(candidate: str, host: str, log: Callable[[str], None], run=subprocess.run):
    """``candidate`` when it passes its trial (or passed it before), else the first fallback that
    does; each fallback is one log line."""
    while candidate in FALLBACK:
        verdict = verdict_for(candidate, host, run=run)
        if verdict["ok"]:
            return candidate
        fallback = FALLBACK[candidate]
        log(
            f"{candidate} failed its trial run in a separate process ({verdict['detail']}); "
            f"using {fallback} instead."
        )
        candidate = fallback
    return candidate


def verdict_key(runtime: str, host: str) -> str:
    try:
        version = importlib.metadata.version(runtime)
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    return f"{runtime} {version} in {host}"


def verdicts_path() -> Path:
    from .models import cache_dir

    return cache_dir() / VERDICTS_FILE


def verdict_for(runtime: str, host: str, run=subprocess.run) -> dict:
    """``{"ok": bool, "detail": str}`` for the runtime in this host, from the file or a trial."""
    path, key = verdicts_path(), verdict_key(runtime, host)
    verdicts = _read(path)
    if key in verdicts:
        return verdicts[key]
    verdict, keep = trial(runtime, run)
    if keep:
        verdicts = _read(path)  # another process may have written meanwhile
        verdicts[key] = verdict
        _write(path, verdicts)
    return verdict


def python_executable() -> str:
    """Slicer's own Python (PythonSlicer, on Slicer's PATH), else this interpreter."""
    import shutil

    return shutil.which("PythonSlicer") or sys.executable


def trial(runtime: str, run=subprocess.run) -> tuple[dict, bool]:
    """Run the child; ``(verdict, keep)``: a verdict that says nothing of the runtime (Python
    could not start) is not kept."""
    library_parent = str(Path(__file__).resolve().parents[1])
    command = [python_executable(), "-c", _CHILD, library_parent, runtime, str(PROBE_VOLUME)]
    try:
        done = run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"no answer in {TIMEOUT_SECONDS} s"}, True
    except OSError as error:
        return {"ok": False, "detail": f"the trial could not start: {error}"}, False
    if done.returncode == 0 and PASSED in done.stdout:
        return {"ok": True, "detail": "passed"}, True
    if done.returncode < 0:
        return {"ok": False, "detail": f"crashed with signal {-done.returncode}"}, True
    lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
    last = lines[-1][:200] if lines else f"exit code {done.returncode}"
    return {"ok": False, "detail": last}, True


def child_main(runtime: str, volume_path: str) -> int:
    """In the child: VTK first (as in Slicer), then one encode of a slice on ``runtime``."""
    import vtk  # noqa: F401 - loads VTK's native libraries (TBB among them) before the runtime

    from . import engine, models

    model = models.load_model("litemedsam", None, "cpu")
    sam = engine.SamEngine(model, precision="fp32", backend=runtime, workers=1)
    if runtime not in (sam.encoder.name, sam.decoder.name):
        raise RuntimeError(f"{runtime} was not prepared (got {sam.backend})")
    sam.encode([probe_slice(volume_path)])
    print(PASSED, flush=True)
    return 0


def probe_slice(volume_path: str):
    """The middle axial slice of the shipped chest CT as SAM's 8-bit RGB input."""
    import SimpleITK as sitk

    from . import imaging

    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(volume_path)))
    return imaging.to_rgb8(volume[volume.shape[0] // 2], imaging.resolve_window("ct-lung", volume))


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, verdicts: dict) -> None:
    """Replace the verdicts file whole (each writer renames its own complete file into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(verdicts, indent=2, sort_keys=True) + "\n")
