"""The CPU's model and flags, read as plain data."""

import textwrap

from cpu_flags import AMD_AVX2

from SAMZeroShotLib import cpu


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
    assert info.native_bf16 and info.relevant_flags == (
        "avx2",
        "avx512f",
        "avx512_bf16",
        "amx_bf16",
        "avx512_vnni",
    )
    assert (
        info.key() == "intel-r-xeon-r-platinum-8480_avx2_avx512f_avx512_bf16_amx_bf16_avx512_vnni"
    )
    amd = cpu.CpuInfo("AMD EPYC 7763 64-Core Processor", AMD_AVX2)
    assert not amd.native_bf16 and amd.relevant_flags == ("avx2",)


def test_this_machines_flags_are_read():
    info = cpu.current()
    assert info.model and isinstance(info.flags, frozenset)
