"""The CPU model and the instruction-set features that decide inference speed.

Read from the OS, not a library: ``/proc/cpuinfo`` on Linux and ``sysctl`` on macOS carry exactly
the flags we need, cost nothing to install, and stay current with new CPUs (py-cpuinfo, the usual
library, has not had a release since 2022 and reads the same files on Linux anyway).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

# Flags that matter for inference kernels, by the names Linux uses, mapped to what users call them.
_X86 = {"avx2": "avx2", "fma": "fma", "f16c": "f16c", "avx512f": "avx512", "avx512_vnni": "avx512_vnni",
        "avx_vnni": "avx_vnni", "avx512_bf16": "avx512_bf16", "avx512_fp16": "avx512_fp16",
        "amx_tile": "amx", "amx_int8": "amx_int8", "amx_bf16": "amx_bf16"}
_ARM = {"asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "bf16": "bf16", "sve": "sve", "fphp": "fp16"}


@dataclass(frozen=True)
class CPUInfo:
    model: str
    arch: str
    cores: int
    features: tuple[str, ...]

    @property
    def has_vnni(self) -> bool:
        """INT8 dot products without the u8s8 int16 saturation of plain AVX2 (vpmaddubsw)."""
        return bool({"avx512_vnni", "avx_vnni", "amx_int8", "dotprod", "i8mm"} & set(self.features))

    @property
    def has_bf16(self) -> bool:
        return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(self.features))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        d["vnni"] = self.has_vnni
        d["bf16"] = self.has_bf16
        return d


@functools.lru_cache(maxsize=1)
def cpu_info() -> CPUInfo:
    arch = platform.machine()
    model, flags = _read_linux() if os.path.exists("/proc/cpuinfo") else _read_macos()
    table = _ARM if arch in ("aarch64", "arm64") else _X86
    features = tuple(sorted({name for flag, name in table.items() if flag in flags}))
    return CPUInfo(model=model or platform.processor() or "unknown", arch=arch,
                   cores=os.cpu_count() or 1, features=features)


def _read_linux() -> tuple[str, set[str]]:
    model, flags = "", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "CPU part") and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    return model, flags


def _read_macos() -> tuple[str, set[str]]:
    def sysctl(name: str) -> str:
        try:
            return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    flags = set()
    for key, flag in (("hw.optional.arm.FEAT_DotProd", "asimddp"), ("hw.optional.arm.FEAT_I8MM", "i8mm"),
                      ("hw.optional.arm.FEAT_BF16", "bf16"), ("hw.optional.neon", "asimd")):
        if sysctl(key) == "1":
            flags.add(flag)
    return sysctl("machdep.cpu.brand_string"), flags
