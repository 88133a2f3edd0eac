"""The harness's own evaluation of a trained model, in a process that runs no candidate code.

A mini record saves its final model where `SPEEDRUN_MODEL_OUT` says, as an ONNX graph from
token ids `(batch, T)` int64 to logits `(batch, T, vocab)`. `evaluate_model` scores that file:
the mean next-token cross-entropy on exactly the first `val_tokens` tokens of the validation
shards, in the windows the records evaluate with (non-overlapping, `T` tokens each, from the
first token), and a causality probe. That loss, not the script's printed one, says whether the
run reached the target.

Why loading the file cannot run candidate code. An ONNX model is a protobuf message: a graph of
operators named by (domain, type), and tensors of weights, parsed as data. onnxruntime runs
only its own kernels for those names; anything else would need a custom-operator library,
which only the host can register (`SessionOptions.register_custom_ops_library`), and this
module registers none. A file is refused unless every operator is a standard ONNX one (or a
function defined in the file from standard ones) and every tensor is stored inside it:
external data would make onnxruntime open other files. Compare pickle (`torch.load` without
`weights_only`), which calls whatever the file names.

Why the process imports no candidate code. The child runs as `python -I <this file>` from a
fresh empty directory, with an environment built from nothing (no API keys, no PYTHON*
variables): isolated mode puts neither the working directory nor the script's directory on
`sys.path` and skips the user's site directory, so no `sitecustomize.py`, `onnx.py` or
`train.py` that a candidate left in its workspace can be imported. It imports only numpy,
pydantic, onnx and onnxruntime, opens no sockets, and limits its own memory and file sizes.

Why each window is its own call (batch 1): a graph may mix the rows of a batch, and a row
holding the next window would hand the model the future; a lone row has nothing to mix with.
The probe then checks the rest: for every window, the tokens after a random position are
replaced and the logits up to that position must not move. A graph is a pure function (no
state between calls), so the probe sees what the evaluation saw.

Why one module of ~500 lines: the child runs this very file, and everything it executes (the
model checks, the windows, the probe, its own limits) must be in a file that imports nothing
else of the harness and that a reviewer can read as the whole of what runs there. The parent's
side is the first ~200 lines.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import math
import os
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    import onnx

#: The environment variable a mini record reads to know where to save its model.
MODEL_OUT_ENV = "SPEEDRUN_MODEL_OUT"
VOCAB = 256
#: A mini model is a few MB (record 09: 12 MB); this leaves room for much larger ones.
MAX_MODEL_BYTES = 256 * 2**20
#: Longest window; attention cost grows with its square, and the timeout bounds the rest.
MAX_CONTEXT = 4096
#: How far an earlier logit may move when later tokens change: float noise, not information. A
#: change of d in the logits changes a log-probability by at most 2d, so a leak this small is
#: worth less than 2e-4 nats per token.
CAUSAL_ATOL = 1e-4
DEFAULT_TIMEOUT_S = 600.0
#: The child's own address-space limit (onnxruntime plus the model plus one window's logits).
MAX_MEMORY_BYTES = 8 * 2**30
SCHEMA_VERSION: Literal[1] = 1

#: Operator domains of standard ONNX (the default domain has both spellings).
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})

_SHARD_MAGIC = 20240520
_SHARD_HEADER_INTS = 256
# The child's exit status when the harness's own inputs (the validation shards) are at fault.
_EXIT_DATA = 2
_MAX_OUTPUT_BYTES = 2**20
_MAX_CHILD_FILE_BYTES = 16 * 2**20


class ModelEval(BaseModel):
    """What the harness measured on a saved model; `error` set means it could not be scored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    #: Mean next-token cross-entropy (nats per token) over `tokens` targets; None if not scored.
    loss: float | None = None
    tokens: int = 0
    #: False: some earlier logit moved when later tokens changed. None: not probed.
    causal: bool | None = None
    #: Window length the tokens were scored in.
    context: int = 0
    #: Wall time of the whole evaluation, process start to exit.
    seconds: float = 0.0
    error: str | None = None
    #: Windows probed for causality, the seed of the probe, and the largest earlier-logit change seen.
    probes: int = 0
    probe_seed: int | None = None
    leak: float | None = None

    @property
    def ok(self) -> bool:
        """Scored, and causal."""
        return self.error is None and self.loss is not None and self.causal is True


class ModelRejected(Exception):
    """The model file is not something the harness will score; the message says why."""


class ValDataError(Exception):
    """The validation shards are missing or malformed: the harness's fault, not the model's."""


# --- the parent: run the child and read its answer ------------------------------------------


def evaluate_model(
    model_path: Path,
    val_files_glob: str,
    val_tokens: int,
    *,
    context: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_model_bytes: int = MAX_MODEL_BYTES,
    threads: int = 1,
    probe_seed: int | None = None,
    python: str | None = None,
) -> ModelEval:
    """Score the ONNX model at `model_path` on the first `val_tokens` tokens of `val_files_glob`.

    `context` is the window length; None takes the model's own (its input's fixed length `T`,
    the records' `block_size`). A shorter window is zero-padded to `T`, which a causal model
    cannot see; the last window is shorter when `val_tokens` is not a multiple of it.

    Faults of the model (no file, too big, not ONNX, non-standard operators, wrong shapes,
    non-finite logits, too slow) come back in `ModelEval.error`; a `DataError` means the
    validation shards themselves are wrong. `python` runs the child (default: this interpreter).
    """
    # Imported here, not at the top: the child runs this file by path, where the harness
    # package need not be importable, and it needs nothing from it.
    from harness.errors import DataError

    if val_tokens < 1:
        raise ValueError(f"val_tokens must be positive, got {val_tokens}")
    if not glob.glob(val_files_glob):
        raise DataError(f"no validation shards match {val_files_glob}; prepare the track's data first")
    seed = probe_seed if probe_seed is not None else secrets.randbelow(2**32)
    cmd = [
        python or sys.executable,
        "-I",
        str(Path(__file__).resolve()),
        "--model",
        str(Path(model_path).absolute()),
        "--val-files",
        str(Path(val_files_glob).absolute()),
        "--val-tokens",
        str(val_tokens),
        "--max-model-bytes",
        str(max_model_bytes),
        "--threads",
        str(threads),
        "--probe-seed",
        str(seed),
    ]
    if context is not None:
        cmd += ["--context", str(context)]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="speedrun-evaluator-") as tmp:
        cwd = Path(tmp) / "cwd"
        cwd.mkdir()
        env = {
            "PATH": os.defpath,
            "HOME": str(cwd),
            "LC_ALL": "C.UTF-8",
            **{name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        }
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )
            try:
                returncode = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return ModelEval(
                    error=f"the evaluation did not finish within {timeout_s:g} s",
                    seconds=time.perf_counter() - started,
                    probe_seed=seed,
                )
            finally:
                if proc.poll() is None:
                    _kill_group(proc)
        stdout, stderr = _tail(out_path), _tail(err_path)
    seconds = time.perf_counter() - started
    if returncode == _EXIT_DATA:
        raise DataError(_last_line(stderr) or f"the validation shards {val_files_glob} cannot be read")
    lines = stdout.strip().splitlines()
    try:
        result = ModelEval.model_validate_json(lines[-1]) if returncode == 0 and lines else None
    except ValidationError:
        result = None
    if result is None:
        why = _last_line(stderr) or f"exit status {returncode}"
        return ModelEval(error=f"the evaluator failed ({why})", seconds=seconds, probe_seed=seed)
    return result.model_copy(update={"seconds": seconds})


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - _MAX_OUTPUT_BYTES))
        return f.read().decode(errors="replace")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""


# --- the child: load, check and score ---------------------------------------------------------


def read_val_tokens(pattern: str, count: int) -> npt.NDArray[np.int64]:
    """The first `count` tokens of the shards matching `pattern`, in file-name order.

    The shard layout of `harness.data.shards`, read here again so that the child needs
    nothing but numpy.
    """
    files = sorted(glob.glob(pattern))
    if not files:
        raise ValDataError(f"no validation shards match {pattern}")
    chunks: list[npt.NDArray[np.uint16]] = []
    have = 0
    for name in files:
        header = np.fromfile(name, dtype="<i4", count=_SHARD_HEADER_INTS)
        if header.size < 3 or header[0] != _SHARD_MAGIC or header[1] != 1:
            raise ValDataError(f"{name} is not a token shard (bad header)")
        n = int(header[2])
        if os.path.getsize(name) != 4 * _SHARD_HEADER_INTS + 2 * n:
            raise ValDataError(f"{name} does not hold the {n} tokens its header says; prepare the data again")
        take = min(n, count - have)
        chunks.append(np.fromfile(name, dtype="<u2", count=take, offset=4 * _SHARD_HEADER_INTS))
        have += take
        if have == count:
            break
    if have < count:
        raise ValDataError(f"the shards matching {pattern} hold {have} tokens; {count} are needed")
    return np.concatenate(chunks).astype(np.int64)


def _read_model(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing links, devices and FIFOs (which could block or never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ModelRejected(f"no model file at {path}: the script saved none (${MODEL_OUT_ENV})") from None
    except OSError as e:
        raise ModelRejected(f"cannot open the model file {path} ({e.strerror}); it must be a plain file") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ModelRejected(f"the model file {path} is not a plain file")
        if info.st_size > max_bytes:
            raise ModelRejected(f"the model file is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ModelRejected(f"the model file grew past the {max_bytes:,}-byte limit while being read")
    return data


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """`graph` and every subgraph inside it (If/Loop/Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else []:
                yield from _graphs(sub)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _check_contents(model: onnx.ModelProto) -> None:
    """Standard operators only, and no tensor whose bytes live in another file."""
    import onnx

    if len(model.training_info):  # graphs for on-device training: nothing an inference model needs
        raise ModelRejected("the model carries training graphs (training_info); export the inference graph only")
    local = {(f.domain, f.name) for f in model.functions}
    node_lists = [g.node for g in _graphs(model.graph)] + [f.node for f in model.functions]
    tensors: list[onnx.TensorProto] = []
    for graph in _graphs(model.graph):
        tensors += graph.initializer
        tensors += [t for s in graph.sparse_initializer for t in (s.values, s.indices)]
    for nodes in node_lists:
        for node in nodes:
            if node.domain not in STANDARD_DOMAINS and (node.domain, node.op_type) not in local:
                raise ModelRejected(
                    f"operator {node.domain}::{node.op_type} is not a standard ONNX operator; "
                    "export with the default exporter and no custom operators"
                )
            for attr in node.attribute:
                tensors += [attr.t] if attr.HasField("t") else []
                tensors += attr.tensors
                tensors += [
                    t for s in [attr.sparse_tensor] if attr.HasField("sparse_tensor") for t in (s.values, s.indices)
                ]
                tensors += [t for s in attr.sparse_tensors for t in (s.values, s.indices)]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise ModelRejected(
                f"tensor {tensor.name or '(unnamed)'} keeps its data in another file; "
                "save the model as one file (external_data=False)"
            )


def _io(model: onnx.ModelProto) -> tuple[str, int | None]:
    """The input's name and fixed length (None if the length is symbolic), after checking both ends."""
    import onnx

    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ModelRejected(
            f"the model has {len(inputs)} inputs and {len(model.graph.output)} outputs; "
            "it must map token ids (batch, T) to logits (batch, T, vocab)"
        )
    tensor = inputs[0].type.tensor_type
    dims = tensor.shape.dim
    if tensor.elem_type != onnx.TensorProto.INT64 or len(dims) != 2:
        raise ModelRejected(
            f"the model's input is {onnx.TensorProto.DataType.Name(tensor.elem_type).lower()} of rank {len(dims)}; "
            "it must be int64 token ids of shape (batch, T)"
        )
    length = dims[1].dim_value if dims[1].HasField("dim_value") else None
    return inputs[0].name, length


def _session(data: bytes, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # Threads that spin between calls would take a core from whatever runs beside the evaluation.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def _logits(session: Any, name: str, tokens: npt.NDArray[np.int64], vocab: int) -> npt.NDArray[np.float64]:
    try:
        outputs = session.run(None, {name: tokens})
    except Exception as e:  # onnxruntime raises its own exception types for any fault of the graph
        raise ModelRejected(f"the model failed on a window of {tokens.shape[1]} tokens ({_first_line(e)})") from None
    logits = np.asarray(outputs[0])
    if logits.shape[:2] != tokens.shape or logits.ndim != 3 or logits.shape[2] < vocab:
        raise ModelRejected(
            f"the model returned shape {tuple(logits.shape)} for input {tuple(tokens.shape)}; "
            f"expected (batch, T, {vocab}) logits"
        )
    if not np.issubdtype(logits.dtype, np.floating):
        raise ModelRejected(f"the model returned {logits.dtype} logits; expected floating point")
    window: npt.NDArray[np.float64] = logits[0].astype(np.float64)
    return window


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def _nll(logits: npt.NDArray[np.float64], targets: npt.NDArray[np.int64]) -> float:
    """Summed cross-entropy of `targets` under `logits` (positions x classes), in float64."""
    top = logits.max(axis=-1)
    lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=-1))
    return float((lse - logits[np.arange(len(targets)), targets]).sum())


def score(
    data: bytes,
    tokens: npt.NDArray[np.int64],
    *,
    context: int | None,
    threads: int,
    probe_seed: int,
    vocab: int = VOCAB,
) -> ModelEval:
    """Check and score an ONNX model held in `data` on `tokens` (one more than the targets)."""
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf's DecodeError, or onnx's own
        raise ModelRejected(f"the model file is not an ONNX model ({_first_line(e)})") from None
    _check_contents(model)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ModelRejected(f"the model is not a valid ONNX graph ({_first_line(e)})") from None
    name, length = _io(model)
    window = context if context is not None else length
    if window is None:
        raise ModelRejected("the model's input length is symbolic; export it with a fixed T (the context)")
    if not 1 <= window <= MAX_CONTEXT:
        raise ModelRejected(f"a context of {window} tokens is outside 1..{MAX_CONTEXT}")
    if length is not None and window > length:
        raise ModelRejected(f"windows of {window} tokens do not fit the model's input of {length}")
    width = length or window
    try:
        session = _session(data, threads)
    except Exception as e:  # onnxruntime's own exception types
        raise ModelRejected(f"onnxruntime cannot load the model ({_first_line(e)})") from None

    rng = np.random.default_rng(probe_seed)
    targets = len(tokens) - 1
    total, leak, probes = 0.0, 0.0, 0
    for start in range(0, targets, window):
        n = min(window, targets - start)
        x = np.zeros((1, width), dtype=np.int64)  # padding after n: a causal model cannot see it
        x[0, :n] = tokens[start : start + n]
        logits = _logits(session, name, x, vocab)
        if not np.isfinite(logits[:n]).all():
            raise ModelRejected(f"the model returned non-finite logits in the window at token {start}")
        total += _nll(logits[:n], tokens[start + 1 : start + n + 1])
        if width > 1:
            # Change every token after a random position p (the one right after it for sure).
            p = int(rng.integers(0, width - 1))
            changed = x.copy()
            changed[0, p + 1 :] = rng.integers(0, vocab, size=width - p - 1)
            changed[0, p + 1] = (x[0, p + 1] + rng.integers(1, vocab)) % vocab
            moved = np.abs(_logits(session, name, changed, vocab)[: p + 1] - logits[: p + 1])
            leak = max(leak, float(np.nan_to_num(moved, nan=np.inf).max()))
            probes += 1
    return ModelEval(
        loss=total / targets,
        tokens=targets,
        causal=leak <= CAUSAL_ATOL,
        context=window,
        probes=probes,
        probe_seed=probe_seed,
        leak=leak if math.isfinite(leak) else None,
    )


def _limit_resources() -> None:
    """Bound this process's memory and the size of any file it writes (its stdout, stderr)."""
    try:
        import resource
    except ImportError:  # Windows: the parent's timeout is the only bound
        return
    for limit, value in ((resource.RLIMIT_AS, MAX_MEMORY_BYTES), (resource.RLIMIT_FSIZE, _MAX_CHILD_FILE_BYTES)):
        _, hard = resource.getrlimit(limit)
        if hard == resource.RLIM_INFINITY or value < hard:
            resource.setrlimit(limit, (value, hard if hard != resource.RLIM_INFINITY else value))


def main(argv: list[str] | None = None) -> int:
    """The child's entry point: one JSON `ModelEval` on stdout (status 0), or status 2 for bad shards.

    A process protocol between the harness and itself, not a user command, hence argparse: the
    child keeps its imports to the standard library, numpy, pydantic and the ONNX packages.
    """
    parser = argparse.ArgumentParser(description="Score a saved ONNX model (run by the harness).")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--val-files", required=True)
    parser.add_argument("--val-tokens", type=int, required=True)
    parser.add_argument("--context", type=int)
    parser.add_argument("--max-model-bytes", type=int, default=MAX_MODEL_BYTES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--probe-seed", type=int, default=0)
    args = parser.parse_args(argv)
    _limit_resources()
    try:
        tokens = read_val_tokens(args.val_files, args.val_tokens + 1)  # +1: the last target
    except ValDataError as e:
        print(e, file=sys.stderr)
        return _EXIT_DATA
    try:
        data = _read_model(args.model, args.max_model_bytes)
        result = score(data, tokens, context=args.context, threads=args.threads, probe_seed=args.probe_seed)
    except ModelRejected as e:
        result = ModelEval(error=str(e), context=args.context or 0, probe_seed=args.probe_seed)
    except MemoryError:
        result = ModelEval(error="the model needs more memory than the evaluator allows", probe_seed=args.probe_seed)
    sys.stdout.write(result.model_dump_json() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
