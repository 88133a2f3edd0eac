"""Which machine this is: reference times of the mini track are only valid where measured."""

from __future__ import annotations

import hashlib
import os
import platform
from functools import cache

from pydantic import BaseModel


class MachineInfo(BaseModel):
    hostname: str
    cpu: str
    cores: int
    arch: str
    python: str
    torch: str
    gpus: list[str]

    @property
    def fingerprint(self) -> str:
        """Stable across reboots and hostnames; changes with the hardware or the software stack."""
        key = f"{self.cpu}|{self.cores}|{self.arch}|{self.python}|{self.torch}|{','.join(self.gpus)}"
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def describe(self) -> str:
        gpu = f", {len(self.gpus)}x {self.gpus[0]}" if self.gpus else ""
        return f"{self.cores}-core {self.arch} ({self.cpu}){gpu}, Python {self.python}, torch {self.torch}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@cache
def this_machine() -> MachineInfo:
    try:
        import torch

        torch_version = str(torch.__version__)
        gpus = (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available()
            else []
        )
    except ImportError:
        torch_version, gpus = "none", []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return MachineInfo(
        hostname=platform.node(),
        cpu=_cpu_model(),
        cores=cores,
        arch=platform.machine(),
        python=platform.python_version(),
        torch=torch_version,
        gpus=gpus,
    )
