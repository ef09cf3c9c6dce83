"""The machine a run ran on and the library versions it ran with: what, besides code, params and
data, moves a run's speed and its numbers (bf16 against float32, say).

Computed once a process (this_machine), read without importing TensorFlow (package metadata, not
the packages), and never failing: a value that cannot be read is "unknown".
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass

from pipeline.model.runtime import BF16_CPU_FLAGS, cpu_flags

UNKNOWN = "unknown"
# The libraries a run's numbers or speed depend on, by their distribution names.
LIBRARIES = ("tensorflow", "keras", "mlflow", "dvc", "numpy")


@dataclass(frozen=True)
class Machine:
    cpu: str  # /proc/cpuinfo's model name
    cores: int | None  # the cores this process may run on
    bf16: bool | None  # the CPU computes bf16 natively (train.precision: auto trains in bf16)
    gpus: str  # the GPUs' names, or "none"
    os: str
    python: str
    versions: dict[str, str]  # LIBRARIES' versions

    @property
    def kind(self) -> str:
        """What an epoch's speed and a run's arithmetic depend on, in one line: machines of one
        kind (not one host) train alike."""
        bf16 = UNKNOWN if self.bf16 is None else "yes" if self.bf16 else "no"
        return f"{self.cpu} x{self.cores or UNKNOWN}, bf16 {bf16}, GPU {self.gpus}"

    @property
    def libraries(self) -> str:
        """The library versions in one line (two runs compare by it)."""
        return ", ".join(f"{name} {version}" for name, version in self.versions.items())


def cpu_model(cpuinfo: str) -> str:
    """The first CPU of /proc/cpuinfo's text: its model name, with its family and model numbers (a
    virtual machine may name only "AMD EPYC", which Zen 3 and Zen 5 share)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, colon, value = line.partition(":")
        if not colon:
            continue
        if key.strip() in fields:  # the second CPU's lines begin
            break
        fields[key.strip()] = value.strip()
    name = fields.get("model name") or UNKNOWN
    if name == UNKNOWN or not fields.get("cpu family") or not fields.get("model"):
        return name
    return f"{name} (family {fields['cpu family']}, model {fields['model']})"


def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))  # a container or taskset may allow fewer than os.cpu_count()
    except (AttributeError, OSError):
        return os.cpu_count()


def gpu_names(listing: str, visible: str | None) -> str:
    """The GPUs `nvidia-smi --query-gpu=name --format=csv,noheader` listed that CUDA_VISIBLE_DEVICES
    (`visible`, None: unset) leaves visible, or "none"."""
    names = [line.strip() for line in listing.splitlines() if line.strip()]
    if visible is not None:
        wanted = [part.strip() for part in visible.split(",") if part.strip()]
        if not wanted or wanted[0].startswith("-"):
            return "none"
        if all(part.isdigit() for part in wanted):
            names = [names[int(part)] for part in wanted if int(part) < len(names)]
    return ", ".join(names) or "none"


def _nvidia_listing() -> str:
    if not shutil.which("nvidia-smi"):
        return ""
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def library_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
    except Exception:  # a broken install's metadata: the run goes on without the version
        return UNKNOWN


@functools.cache
def this_machine() -> Machine:
    cpuinfo = _read_cpuinfo()
    model = cpu_model(cpuinfo) if cpuinfo else (platform.processor() or UNKNOWN)
    return Machine(cpu=model, cores=usable_cores(), bf16=bool(cpu_flags() & BF16_CPU_FLAGS) if cpuinfo else None,
                   gpus=gpu_names(_nvidia_listing(), os.environ.get("CUDA_VISIBLE_DEVICES")),
                   os=platform.platform() or UNKNOWN, python=platform.python_version(),
                   versions={name: library_version(name) for name in LIBRARIES})
