"""The runtime choice (CPU flags given as data), the accuracy guard and the on-disk cache."""
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from SAMZeroShotLib import accuracy_guard, cpu, models, runtimes
from SAMZeroShotLib.engine import SamEngine

# /proc/cpuinfo flags of the two kinds of machine seen here (abridged to what matters).
AMD_AVX2 = frozenset("fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma bmi2 avx2 sha_ni".split())
INTEL_AMX = frozenset(("fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 "
                       "avx512_fp16 amx_bf16 amx_tile amx_int8").split())
INTEL_AVX512_NO_BF16 = frozenset("fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni".split())
BOTH = {"onnxruntime", "openvino"}


def chosen(*args, **kwargs):
    choice = runtimes.choose(*args, **kwargs)
    return choice.backend, choice.precision, choice.guarded


@pytest.mark.parametrize("flags, installed, expected", [
    # AMD EPYC, AVX2 only: today's default (ONNX Runtime, float32); OpenVINO was no faster there and
    # its bf16 was emulated (40x slower).
    (AMD_AVX2, BOTH, ("onnxruntime", "fp32", False)),
    (AMD_AVX2, {"onnxruntime"}, ("onnxruntime", "fp32", False)),
    # Intel Xeon with AMX: OpenVINO, bf16 if the accuracy guard lets it.
    (INTEL_AMX, BOTH, ("openvino", "bf16", True)),
    (INTEL_AMX, {"onnxruntime"}, ("onnxruntime", "fp32", False)),  # ONNX Runtime runs float32 only
    (INTEL_AMX, set(), ("torch", "bf16", True)),
    (INTEL_AVX512_NO_BF16, BOTH, ("openvino", "fp32", False)),
    (AMD_AVX2, set(), ("torch", "fp32", False)),
    (AMD_AVX2, {"openvino"}, ("openvino", "fp32", False)),
])
def test_the_choice_follows_the_cpu_flags_and_what_is_installed(flags, installed, expected):
    assert chosen(flags, installed) == expected, runtimes.choose(flags, installed).because


def test_sam_vit_models_and_gpus_stay_with_pytorch_in_float32():
    assert chosen(INTEL_AMX, BOTH, architecture="vit_b") == ("torch", "fp32", False)
    assert chosen(INTEL_AMX, BOTH, device="cuda") == ("torch", "fp32", False)


def test_explicit_settings_override_the_choice():
    assert chosen(AMD_AVX2, BOTH, backend="openvino") == ("openvino", "fp32", False)
    # bf16 asked for is taken as asked, without the guard (even where it is emulated).
    assert chosen(AMD_AVX2, BOTH, backend="openvino", precision="bf16") == ("openvino", "bf16", False)
    assert chosen(INTEL_AMX, BOTH, precision="fp32") == ("openvino", "fp32", False)


@pytest.mark.parametrize("settings, message", [
    (dict(backend="onnxruntime", precision="bf16"), "runs fp32 only, not bf16"),
    (dict(backend="openvino", device="cuda"), "runs on the CPU only"),
    (dict(backend="magic"), "Unknown backend 'magic'"),
    (dict(precision="fp8"), "Unknown precision 'fp8'"),
])
def test_settings_that_cannot_run_are_refused_with_the_reason(settings, message):
    with pytest.raises(ValueError, match=message):
        runtimes.choose(INTEL_AMX, BOTH, **settings)


def test_a_missing_runtime_asked_for_is_named():
    with pytest.raises(ValueError, match="openvino backend is not installed"):
        runtimes.choose(INTEL_AMX, {"onnxruntime"}, backend="openvino")


def test_cpuinfo_gives_the_model_the_flags_and_a_file_safe_key():
    text = textwrap.dedent("""\
        processor\t: 0
        vendor_id\t: GenuineIntel
        model name\t: Intel(R) Xeon(R) Platinum 8480+
        flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile avx512_vnni
        processor\t: 1
        model name\t: Intel(R) Xeon(R) Platinum 8480+
        flags\t\t: fpu
        """)
    info = cpu.parse_cpuinfo(text)
    assert info.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert info.native_bf16 and info.relevant_flags == ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni")
    assert info.key() == "intel-r-xeon-r-platinum-8480_avx2_avx512f_avx512_bf16_amx_bf16_avx512_vnni"
    amd = cpu.CpuInfo("AMD EPYC 7763 64-Core Processor", AMD_AVX2)
    assert not amd.native_bf16 and amd.relevant_flags == ("avx2",)


def test_this_machines_flags_are_read():
    info = cpu.current()
    assert info.model and isinstance(info.flags, frozenset)


# -- the accuracy guard ---------------------------------------------------------------------
class FakeBf16EncoderThatDamagesMasks:
    """A fake, named as such: a reduced-precision encoder that is broken, which no real runtime
    gives on purpose. It adds seeded noise of 60 % of the embedding's spread to the real
    encoder's output."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.name = encoder.name

    def __call__(self, batch):
        features = self.encoder(batch)
        noise = torch.randn(features.shape, generator=torch.Generator().manual_seed(0))
        return features + 0.6 * features.std() * noise


def test_the_accuracy_guard_rejects_a_fake_bf16_path_that_damages_masks_and_accepts_an_exact_one(engine, litemedsam):
    reference = engine.runtime
    damaged = runtimes.Runtime(FakeBf16EncoderThatDamagesMasks(reference.encoder), reference.decoder, "bf16")
    verdict = accuracy_guard.check(litemedsam, reference, damaged, slices=3)
    assert not verdict.passed
    assert verdict.min_twin_dice < accuracy_guard.MIN_TWIN_DICE, verdict
    exact = accuracy_guard.check(litemedsam, reference, reference, slices=3)
    assert exact.passed and exact.min_twin_dice == 1.0 and exact.masks == 6
    assert exact.mean_dice_reference > 0.5  # measured 0.567 over these 3 slices, both lungs (a coarse 128 x 128 CT)


def test_the_shipped_test_data_has_both_lungs():
    voxels, ijk_to_ras, lungs = accuracy_guard.shipped_lungs()
    assert voxels.shape == (34, 128, 128)
    assert all(mask.shape == voxels.shape and mask.sum() > 1000 for mask in lungs.values())
    assert not (lungs["right lung"] & lungs["left lung"]).any()


# -- the cache ------------------------------------------------------------------------------
def test_a_cache_file_that_is_corrupt_cut_short_or_stale_is_rebuilt(tmp_path):
    path = tmp_path / "part.bin"
    builds = []

    def build():
        builds.append(1)
        return bytes(range(256)) * 64

    payload, built = runtimes.cached(path, "key 1", build)
    assert built and runtimes.cached(path, "key 1", build) == (payload, False)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the content
    path.write_bytes(bytes(data))
    assert runtimes.read_cache_file(path, "key 1") is None
    assert runtimes.cached(path, "key 1", build) == (payload, True)
    path.write_bytes(path.read_bytes()[:-10])  # cut short
    assert runtimes.cached(path, "key 1", build) == (payload, True)
    assert runtimes.cached(path, "key 2", build) == (payload, True)  # made for another key: stale
    assert runtimes.read_cache_file(path, "key 1") is None
    path.write_bytes(b"not a cache file")
    assert runtimes.cached(path, "key 2", build) == (payload, True)
    assert len(builds) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.bin"]  # no temporary file left


def _copy_exports(session_cache, folder):
    """The session's ONNX exports copied into ``folder`` (so that a test does not export again)."""
    source = session_cache / "runtimes"
    for path in source.glob("onnx-*/*.onnx"):
        target = folder / "runtimes" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)


def test_a_corrupt_compiled_model_is_rebuilt_never_used(engine, litemedsam, private_cache, tmp_path, monkeypatch):
    backend = "openvino" if "openvino" in runtimes.installed_runtimes() else "onnxruntime"
    if backend not in runtimes.installed_runtimes():
        pytest.skip("neither OpenVINO nor ONNX Runtime is installed")
    _copy_exports(private_cache, tmp_path)
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    spec = runtimes.encoder_spec(litemedsam)
    runtimes.prepare(litemedsam, backend, "fp32")
    if backend == "openvino":
        path, key = runtimes.openvino_path(litemedsam, "encoder", "fp32")
    else:
        path, key = runtimes.onnx_path(litemedsam, "encoder")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a weight changed: still loads, but computes something else
    path.write_bytes(bytes(data))
    assert runtimes.read_cache_file(path, key) is None
    lines = []
    runtime = runtimes.prepare(litemedsam, backend, "fp32", log=lines.append)
    assert runtimes.read_cache_file(path, key) is not None, "the corrupt file was not rebuilt"
    assert lines[0].startswith("Preparing the CPU runtime, once, about")
    runtimes.check_outputs(spec, (runtime.encoder(*spec.sample),), "fp32", "the rebuilt encoder")


EXPORTER = textwrap.dedent("""\
    import hashlib, os, sys, time
    sys.path.insert(0, sys.argv[1])
    from SAMZeroShotLib import models, runtimes
    model = models.load_model("litemedsam", device="cpu")
    open(os.path.join(sys.argv[2], f"ready-{os.getpid()}"), "w").close()
    while len([n for n in os.listdir(sys.argv[2]) if n.startswith("ready-")]) < 2:
        time.sleep(0.05)  # both processes start exporting together
    payload, built = runtimes.onnx_file(model, runtimes.decoder_spec(model))
    print(built, hashlib.sha256(payload).hexdigest())
    """)


def test_two_processes_exporting_at_once_leave_one_intact_file_and_no_warnings(tmp_path):
    """Two real processes export the decoder into an empty cache at the same time."""
    library = os.path.join(os.path.dirname(os.path.dirname(__file__)), "SAMZeroShot")
    environment = dict(os.environ, **{models.CACHE_ENV: str(tmp_path / "cache")})
    (tmp_path / "cache").mkdir()
    processes = [subprocess.Popen([sys.executable, "-c", EXPORTER, library, str(tmp_path)], env=environment,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [process.communicate(timeout=300) for process in processes]
    for process, (out, err) in zip(processes, results):
        assert process.returncode == 0, err
        assert "Warning" not in err, f"the export printed warnings:\n{err}"
    reports = [out.split() for out, _ in results]
    assert [built for built, _ in reports] == ["True", "True"], "the two exports did not overlap"
    files = [p for p in (tmp_path / "cache" / "runtimes").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name.endswith("-decoder.onnx"), files
    key = runtimes.onnx_path(models.load_model("litemedsam", device="cpu"), "decoder")[1]
    payload = runtimes.read_cache_file(files[0], key)
    assert payload is not None, "the cache file is not intact"
    assert hashlib.sha256(payload).hexdigest() in {digest for _, digest in reports}


def test_the_choice_is_logged_once_in_one_line(engine, litemedsam):
    lines = []
    made = SamEngine(litemedsam, log=lines.append)
    assert len(lines) == 1, lines
    info = cpu.current()
    assert lines[0].startswith(f"Runtime: {made.backend}, {made.precision} (CPU {info.model}")
    assert all(flag in lines[0] for flag in info.relevant_flags)
