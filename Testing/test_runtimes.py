"""The runtime choice (CPU flags given as data), the on-disk cache of exports and compiled models,
and the CPU runtime's encoder against PyTorch's."""

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from cpu_flags import AMD_AVX2, INTEL_AMX, INTEL_AVX512_NO_BF16

from SAMZeroShotLib import cpu, exports, imaging, models, runtime_choice, runtime_files, runtimes
from SAMZeroShotLib.engine import SamEngine
from SAMZeroShotLib.torch_parts import TorchEncoder

BOTH = {"onnxruntime", "openvino"}


def chosen(*args, **kwargs):
    choice = runtime_choice.choose(*args, **kwargs)
    return choice.backend, choice.precision, choice.guarded


@pytest.mark.parametrize(
    "flags, installed, expected",
    [
        # AMD EPYC, AVX2 only: today's default (ONNX Runtime, float32); OpenVINO was no faster there
        # and its bf16 was emulated (40x slower).
        (AMD_AVX2, BOTH, ("onnxruntime", "fp32", False)),
        (AMD_AVX2, {"onnxruntime"}, ("onnxruntime", "fp32", False)),
        # Intel Xeon with AMX: OpenVINO, bf16 if the accuracy guard lets it.
        (INTEL_AMX, BOTH, ("openvino", "bf16", True)),
        (
            INTEL_AMX,
            {"onnxruntime"},
            ("onnxruntime", "fp32", False),
        ),  # ONNX Runtime runs float32 only
        (INTEL_AMX, set(), ("torch", "bf16", True)),
        (INTEL_AVX512_NO_BF16, BOTH, ("openvino", "fp32", False)),
        (AMD_AVX2, set(), ("torch", "fp32", False)),
        (AMD_AVX2, {"openvino"}, ("openvino", "fp32", False)),
    ],
)
def test_the_choice_follows_the_cpu_flags_and_what_is_installed(flags, installed, expected):
    assert chosen(flags, installed) == expected, runtime_choice.choose(flags, installed).because


def test_sam_vit_models_and_gpus_stay_with_pytorch_in_float32():
    assert chosen(INTEL_AMX, BOTH, architecture="vit_b") == ("torch", "fp32", False)
    assert chosen(INTEL_AMX, BOTH, device="cuda") == ("torch", "fp32", False)


def test_explicit_settings_override_the_choice():
    assert chosen(AMD_AVX2, BOTH, backend="openvino") == ("openvino", "fp32", False)
    # bf16 asked for is taken as asked, without the guard (even where it is emulated).
    assert chosen(AMD_AVX2, BOTH, backend="openvino", precision="bf16") == (
        "openvino",
        "bf16",
        False,
    )
    assert chosen(INTEL_AMX, BOTH, precision="fp32") == ("openvino", "fp32", False)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(backend="onnxruntime", precision="bf16"), "runs fp32 only, not bf16"),
        (dict(backend="openvino", device="cuda"), "runs on the CPU only"),
        (dict(backend="magic"), "Unknown backend 'magic'"),
        (dict(precision="fp8"), "Unknown precision 'fp8'"),
    ],
)
def test_settings_that_cannot_run_are_refused_with_the_reason(settings, message):
    with pytest.raises(ValueError, match=message):
        runtime_choice.choose(INTEL_AMX, BOTH, **settings)


def test_a_missing_runtime_asked_for_is_named():
    with pytest.raises(ValueError, match="openvino backend is not installed"):
        runtime_choice.choose(INTEL_AMX, {"onnxruntime"}, backend="openvino")


# -- the cache ------------------------------------------------------------------------------
def test_a_cache_file_that_is_corrupt_cut_short_or_stale_is_rebuilt(tmp_path):
    path = tmp_path / "part.bin"
    builds = []

    def build():
        builds.append(1)
        return bytes(range(256)) * 64

    payload, built = runtime_files.cached(path, "key 1", build)
    assert built and runtime_files.cached(path, "key 1", build) == (payload, False)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the content
    path.write_bytes(bytes(data))
    assert runtime_files.read_cache_file(path, "key 1") is None
    assert runtime_files.cached(path, "key 1", build) == (payload, True)
    path.write_bytes(path.read_bytes()[:-10])  # cut short
    assert runtime_files.cached(path, "key 1", build) == (payload, True)
    # A file made for another key is stale.
    assert runtime_files.cached(path, "key 2", build) == (payload, True)
    assert runtime_files.read_cache_file(path, "key 1") is None
    path.write_bytes(b"not a cache file")
    assert runtime_files.cached(path, "key 2", build) == (payload, True)
    assert len(builds) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.bin"]  # no temporary file left


def _copy_exports(session_cache, folder):
    """The session's ONNX exports copied into ``folder`` (so that a test does not export again)."""
    source = session_cache / "runtimes"
    for path in source.glob("onnx-*/*.onnx"):
        target = folder / "runtimes" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)


def test_a_corrupt_compiled_model_is_rebuilt_never_used(
    engine, litemedsam, private_cache, tmp_path, monkeypatch
):
    backend = "openvino" if "openvino" in runtime_choice.installed_runtimes() else "onnxruntime"
    if backend not in runtime_choice.installed_runtimes():
        pytest.skip("neither OpenVINO nor ONNX Runtime is installed")
    _copy_exports(private_cache, tmp_path)
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    spec = exports.encoder_spec(litemedsam)
    runtimes.prepare(litemedsam, backend, "fp32")
    if backend == "openvino":
        path, key = exports.openvino_path(litemedsam, "encoder", "fp32")
    else:
        path, key = exports.onnx_path(litemedsam, "encoder")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a weight changed: still loads, but computes something else
    path.write_bytes(bytes(data))
    assert runtime_files.read_cache_file(path, key) is None
    lines = []
    runtime = runtimes.prepare(litemedsam, backend, "fp32", log=lines.append)
    assert runtime_files.read_cache_file(path, key) is not None, "the corrupt file was not rebuilt"
    assert lines[0].startswith("Preparing the CPU runtime, once, about")
    exports.check_outputs(spec, (runtime.encoder(*spec.sample),), "fp32", "the rebuilt encoder")


EXPORTER = textwrap.dedent("""\
    import hashlib, os, sys, time
    sys.path.insert(0, sys.argv[1])
    from SAMZeroShotLib import exports, models, runtime_files
    model = models.load_model("litemedsam", device="cpu")
    open(os.path.join(sys.argv[2], f"ready-{os.getpid()}"), "w").close()
    while len([n for n in os.listdir(sys.argv[2]) if n.startswith("ready-")]) < 2:
        time.sleep(0.05)  # both processes start exporting together
    payload, built = exports.onnx_file(model, exports.decoder_spec(model))
    print(built, hashlib.sha256(payload).hexdigest())
    """)


def test_two_processes_exporting_at_once_leave_one_intact_file_and_no_warnings(tmp_path):
    """Two real processes export the decoder into an empty cache at the same time."""
    library = os.path.join(os.path.dirname(os.path.dirname(__file__)), "SAMZeroShot")
    environment = dict(os.environ, **{models.CACHE_ENV: str(tmp_path / "cache")})
    (tmp_path / "cache").mkdir()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", EXPORTER, library, str(tmp_path)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [process.communicate(timeout=300) for process in processes]
    for process, (_out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
        assert "Warning" not in err, f"the export printed warnings:\n{err}"
    reports = [out.split() for out, _ in results]
    assert [built for built, _ in reports] == ["True", "True"], "the two exports did not overlap"
    files = [p for p in (tmp_path / "cache" / "runtimes").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name.endswith("-decoder.onnx"), files
    key = exports.onnx_path(models.load_model("litemedsam", device="cpu"), "decoder")[1]
    payload = runtime_files.read_cache_file(files[0], key)
    assert payload is not None, "the cache file is not intact"
    assert hashlib.sha256(payload).hexdigest() in {digest for _, digest in reports}


def test_the_choice_is_logged_once_in_one_line(engine, litemedsam):
    lines = []
    made = SamEngine(litemedsam, log=lines.append)
    assert len(lines) == 1, lines
    info = cpu.current()
    assert lines[0].startswith(f"Runtime: {made.backend}, {made.precision} (CPU {info.model}")
    assert all(flag in lines[0] for flag in info.relevant_flags)


def test_the_cpu_runtime_encoder_reproduces_pytorch(engine, chest, litemedsam):
    voxels, geometry, masks = chest
    if engine.encoder.name == "torch":
        pytest.skip("neither ONNX Runtime nor OpenVINO is installed")
    image = imaging.to_rgb8(geometry.view(voxels)[20], imaging.WINDOW_PRESETS["ct-lung"])
    tensor, _ = engine._prepare(image)
    expected = TorchEncoder(litemedsam, "fp32")(tensor)
    got = engine.encoder(tensor)
    if engine.precision == "fp32":
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-3)
    else:  # bf16: measured 4-6 % relative difference on real slices
        assert float((got - expected).norm() / expected.norm()) < 0.1


def test_reduced_precision_is_for_the_encoder_only():
    # The decoder in bf16 cost one guard mask 0.069 of Dice against the reference, in fp32 0.048.
    for backend in ("openvino", "onnxruntime", "torch"):
        (_, encoder), (_, decoder) = runtimes.part_runtimes(backend, "bf16")
        assert (encoder, decoder) == ("bf16", "fp32"), backend


class StandInCheck:
    """A precision check standing in for the accuracy guard: gives the verdict it was made with,
    and records what it was asked to judge."""

    def __init__(self, passed: bool, rule: str = "stand-in rule"):
        self.passed, self.rule, self.judged = passed, rule, []

    def check(self, model, reference, candidate):
        self.judged.append((reference.precision, candidate.precision))
        return StandInVerdict(self.passed)

    def verdict(self, stored):
        return StandInVerdict(**stored)


class StandInVerdict:
    def __init__(self, passed: bool):
        self.passed = passed

    def summary(self) -> str:
        return "stand-in verdict"

    def as_dict(self) -> dict:
        return {"passed": self.passed}


def test_bf16_chosen_automatically_is_kept_only_with_a_check_that_passes(
    litemedsam, tmp_path, monkeypatch
):
    monkeypatch.setattr(cpu, "current", lambda: cpu.CpuInfo("CPU with AMX", INTEL_AMX))
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))  # the verdicts are kept here
    lines = []
    unchecked = runtimes.prepare(litemedsam, "torch", "auto", log=lines.append)
    assert unchecked.precision == "fp32"
    assert "bf16 not used: no accuracy check was given" in lines[-1]
    passing = StandInCheck(passed=True)
    assert runtimes.prepare(litemedsam, "torch", "auto", check=passing).precision == "bf16"
    assert passing.judged == [("fp32", "bf16")]
    again = runtimes.prepare(litemedsam, "torch", "auto", log=lines.append, check=passing)
    assert again.precision == "bf16" and len(passing.judged) == 1, "the verdict was not kept"
    assert "bf16 passed the accuracy check (stand-in verdict)" in lines[-1]
    failing = StandInCheck(passed=False, rule="another rule")  # another rule: judged anew
    assert runtimes.prepare(litemedsam, "torch", "auto", check=failing).precision == "fp32"
    assert failing.judged == [("fp32", "bf16")]
    # Asked for explicitly: used as asked, checked by nobody.
    assert runtimes.prepare(litemedsam, "torch", "bf16", check=failing).precision == "bf16"
    assert len(failing.judged) == 1
