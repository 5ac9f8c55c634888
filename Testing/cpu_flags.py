"""CPU flag sets of the kinds of machine seen here, as ``/proc/cpuinfo`` lists them (abridged to
what matters), for tests of choices made from the flags."""


def _flags(listing: str) -> frozenset:
    return frozenset(listing.split())


AMD_AVX2 = _flags("fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma bmi2 avx2 sha_ni")
INTEL_AMX = _flags(
    "fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 "
    "avx512_fp16 amx_bf16 amx_tile amx_int8"
)
INTEL_AVX512_NO_BF16 = _flags(
    "fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni"
)
