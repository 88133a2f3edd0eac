"""The environment a candidate sees: built from an allow-list, so no key or secret leaks in."""

from __future__ import annotations

import os
import re

#: Variables that set a run's thread count; calibrations are kept per OMP_NUM_THREADS, so these
#: also reach sandboxed runs, which inherit nothing else from the host.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: Variables passed through from the harness's environment when present. Nothing else is.
PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
    "CUDA_VISIBLE_DEVICES",
    *THREAD_VARS,
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "NCCL_DEBUG",
    "TORCHINDUCTOR_CACHE_DIR",
    "TRITON_CACHE_DIR",
)

#: Names that look like credentials are dropped even when a track or user asks for them.
#: Whole name parts only, so that NANOGPT_VAL_TOKENS (a count) is not taken for a token.
SECRET = re.compile(r"(^|_)(API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|AUTH|COOKIE)($|_)", re.IGNORECASE)


def is_secret(name: str) -> bool:
    return bool(SECRET.search(name))


def candidate_env(documented: dict[str, str], *, inherit: bool = True) -> dict[str, str]:
    """The child's environment: the allow-listed host variables plus the documented ones.

    `inherit=False` is for sandboxes (containers), which bring their own PATH and HOME.
    """
    env: dict[str, str] = {}
    if inherit:
        env.update({k: os.environ[k] for k in PASSTHROUGH if k in os.environ})
    env.update(documented)
    env["PYTHONUNBUFFERED"] = "1"
    return {k: v for k, v in env.items() if not is_secret(k)}
