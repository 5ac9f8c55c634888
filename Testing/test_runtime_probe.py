"""runtime_probe: the chosen CPU runtime is tried in a child process before it is trusted."""

import json
import subprocess

import pytest

from SAMZeroShotLib import runtime_probe
from SAMZeroShotLib.parameters import Parameters


class FakeChild:
    """Plays the child process. OpenVINO's trial ends with ``returncode`` (-11: a crash by
    SIGSEGV, 1: an error, 0: a pass); ONNX Runtime's passes."""

    def __init__(self, returncode, stderr=""):
        self.returncode, self.stderr = returncode, stderr
        self.commands = []

    def __call__(self, command, **options):
        self.commands.append(command)
        returncode = self.returncode if command[-2] == "openvino" else 0
        stdout = runtime_probe.PASSED if returncode == 0 else ""
        return subprocess.CompletedProcess(command, returncode, stdout, self.stderr)


@pytest.fixture
def openvino_chosen(monkeypatch, tmp_path):
    """Settings whose backend is the chosen runtime (the CPU's own choice is not what is tested),
    with a verdicts file of the test's own (the session's holds the real verdicts)."""
    monkeypatch.setattr(runtime_probe, "verdicts_path", lambda: tmp_path / "runtime-probes.json")
    monkeypatch.setattr(
        runtime_probe,
        "chosen_cpu_runtime",
        lambda parameters: (
            parameters.backend if parameters.backend in runtime_probe.FALLBACK else None
        ),
    )
    return lambda backend="openvino", precision="auto": Parameters(
        backend=backend, precision=precision
    )


def test_a_runtime_that_crashes_its_trial_falls_back_to_onnx_runtime_with_one_log_line(
    openvino_chosen,
):
    crash = FakeChild(-11)
    lines = []
    safe = runtime_probe.safe_parameters(
        openvino_chosen("openvino", "bf16"), "Slicer 5.12.3", lines.append, run=crash
    )
    assert safe.backend == "onnxruntime" and safe.precision == "auto"  # ONNX Runtime: fp32 only
    assert len(lines) == 1 and "openvino failed its trial" in lines[0] and "signal 11" in lines[0]
    assert [command[-2] for command in crash.commands] == ["openvino", "onnxruntime"]
    assert crash.commands[0][-1].endswith("CTChest4.nrrd")
    # The verdict is kept per runtime version and host version: the next run does not try again.
    verdicts = json.loads(runtime_probe.verdicts_path().read_text())
    [key] = [k for k in verdicts if k.startswith("openvino ")]
    assert key.endswith("in Slicer 5.12.3") and verdicts[key]["ok"] is False
    # Written whole and renamed into place: no partial file is left beside it.
    assert [p.name for p in runtime_probe.verdicts_path().parent.iterdir()] == [
        "runtime-probes.json"
    ]
    again = []
    runtime_probe.safe_parameters(openvino_chosen(), "Slicer 5.12.3", again.append, run=crash)
    assert len(crash.commands) == 2 and len(again) == 1
    # Another Slicer version is tried afresh.
    passes = FakeChild(0)
    other = runtime_probe.safe_parameters(openvino_chosen(), "Slicer 5.10.0", [].append, run=passes)
    assert other.backend == "openvino" and len(passes.commands) == 1


def test_an_error_in_the_trial_is_reported_by_its_last_line(openvino_chosen):
    failing = FakeChild(1, "Traceback ...\nRuntimeError: Cannot load libtbb.so.12\n")
    lines = []
    safe = runtime_probe.safe_parameters(
        openvino_chosen(), "Slicer main", lines.append, run=failing
    )
    assert safe.backend == "onnxruntime"
    assert "Cannot load libtbb.so.12" in lines[0]


def test_pytorch_is_not_tried(monkeypatch):
    monkeypatch.setattr(runtime_probe, "chosen_cpu_runtime", lambda parameters: None)
    never = FakeChild(0)
    parameters = Parameters(backend="torch")
    assert runtime_probe.safe_parameters(parameters, "Slicer 5.12", [].append, run=never) is (
        parameters
    )
    assert never.commands == []


def test_the_real_trial_of_the_runtime_chosen_here_passes(default_whole_volume_run):
    """The child process for real: VTK, then the built-in model on this machine's CPU runtime."""
    chosen = runtime_probe.chosen_cpu_runtime(Parameters())
    if chosen is None:
        pytest.skip("no CPU runtime (ONNX Runtime or OpenVINO) is chosen on this machine")
    verdict, keep = runtime_probe.trial(chosen)
    assert verdict == {"ok": True, "detail": "passed"} and keep
