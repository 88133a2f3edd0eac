"""`--gpus`, read once: all, a count, or device ids; and its split into disjoint run slots.

One value reaches every executor: `local` turns it into CUDA_VISIBLE_DEVICES, `docker` into
device requests, `slurm` into a per-job GPU count (Slurm then picks the devices and sets
CUDA_VISIBLE_DEVICES itself). With `--max-parallel N` the GPUs are cut into N equal sets, so
that concurrent runs never share a GPU and every run trains with the same number of processes.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from harness.errors import ConfigError

#: Training processes when `--gpus` names no number: the benchmark's node has eight GPUs.
#: Not the GPUs this machine happens to have, because the records fix their global batch as
#: per-GPU batch x world size, so a different process count trains a different run.
DEFAULT_GPUS = 8
_IDS = re.compile(r"[\w-]+(,[\w-]+)*")
_HELP = "use all, a count, or device ids like 0,1"


class GpuSpec(BaseModel):
    """The GPUs of one run: all of the machine's (`count` and `ids` unset), a count, or devices."""

    model_config = ConfigDict(frozen=True)

    count: int | None = None
    ids: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str | None) -> GpuSpec | None:
        """`all`, `N`, `0,1` or `device=0,1`; None for no value or `none` (no GPU)."""
        text = (value or "").strip()
        if text in ("", "none"):
            return None
        if text == "all":
            return cls()
        if text.isdigit():
            if int(text) < 1:
                raise ConfigError(f"--gpus {value!r} names no GPU; {_HELP}")
            return cls(count=int(text))
        ids = text.removeprefix("device=").strip("\"'")
        if not _IDS.fullmatch(ids):
            raise ConfigError(f"cannot read --gpus {value!r}; {_HELP}")
        return cls(ids=tuple(ids.split(",")))

    @property
    def is_all(self) -> bool:
        return self.count is None and not self.ids

    @property
    def size(self) -> int | None:
        """How many GPUs, where the value says (None for `all`)."""
        return len(self.ids) if self.ids else self.count

    def processes(self) -> int:
        """Training processes (torchrun's --nproc_per_node): one per GPU; `all` is the benchmark's 8."""
        return self.size or DEFAULT_GPUS

    def visible_devices(self) -> str | None:
        """CUDA_VISIBLE_DEVICES for a process on this machine, where the value names devices."""
        return ",".join(self.ids) if self.ids else None

    def device_requests(self) -> list[dict[str, Any]]:
        """The docker SDK's `device_requests` (what `docker run --gpus` sends)."""
        request: dict[str, Any] = {"driver": "nvidia", "capabilities": [["gpu"]]}
        if self.ids:
            request["device_ids"] = list(self.ids)
        else:
            request["count"] = -1 if self.count is None else self.count
        return [request]

    def split(self, slots: int, *, by: Literal["ids", "count"], available: int | None = None) -> list[GpuSpec]:
        """Cut into `slots` disjoint equal sets.

        `by="ids"` names devices (for runs on this machine: CUDA_VISIBLE_DEVICES, device
        requests); a count `N` stands for devices 0..N-1 and `all` for the `available` ones.
        `by="count"` gives each slot a count (a scheduler picks the devices: Slurm's gres).
        """
        if slots < 1:
            raise ConfigError(f"--max-parallel must be at least 1, got {slots}")
        if slots == 1:
            return [self]
        ids = list(self.ids)
        if not ids:
            total = self.count if self.count is not None else available
            if not total:
                raise ConfigError(
                    f"--gpus all cannot be split between {slots} runs: no GPU count is known here; "
                    "give one (--gpus 8) or the devices (--gpus 0,1,2,3)"
                )
            ids = [str(i) for i in range(total)]
        if len(ids) % slots:
            raise ConfigError(
                f"{len(ids)} GPUs do not split evenly between --max-parallel {slots} runs; every run must "
                "train with the same number of processes, so choose a divisor"
            )
        share = len(ids) // slots
        if by == "count":
            return [GpuSpec(count=share) for _ in range(slots)]
        return [GpuSpec(ids=tuple(ids[k * share : (k + 1) * share])) for k in range(slots)]

    def __str__(self) -> str:
        """The `--gpus` spelling, which RunSpec.gpus carries to the executors."""
        if self.ids:
            return ",".join(self.ids)
        return "all" if self.count is None else str(self.count)


def gpu_slots(
    gpus: str | None, slots: int, *, by: Literal["ids", "count"], available: int | None = None
) -> list[str | None]:
    """`--gpus` for each of `slots` concurrent runs (None everywhere when no GPUs are asked for)."""
    spec = GpuSpec.parse(gpus)
    if spec is None:
        return [None] * slots
    return [str(share) for share in spec.split(slots, by=by, available=available)]
