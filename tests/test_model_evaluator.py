"""The harness's evaluator of saved models: loss, causality, refusals, and isolation from the workspace.

Most models here are small ONNX graphs built with `onnx.helper` (a bigram table: logits at t are
row x[t] of a table), scored against a direct numpy computation; one is a tiny transformer trained
by a mini record at smoke scale and exported by the record's own code. Every evaluation is a real
child process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.data.shards import write_shard
from harness.errors import DataError
from harness.eval.evaluator import CAUSAL_ATOL, ModelEval, evaluate_model
from harness.paths import PROJECT_ROOT

T = 16
V = 256
VAL_TOKENS = 1000  # not a multiple of T: the last window is shorter
TEXT = (
    b"Now is the winter of our discontent made glorious summer by this sun of York; and all the clouds "
    b"that lour'd upon our house in the deep bosom of the ocean buried.\n"
)


@pytest.fixture(scope="module")
def val_glob(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("val")
    tokens = np.frombuffer(TEXT * 20, dtype=np.uint8)
    # Two shards, so that reading across a shard boundary is exercised.
    write_shard(root / "mini_val_000000.bin", tokens[:700])
    write_shard(root / "mini_val_000001.bin", tokens[700:])
    return str(root / "mini_val_*.bin")


@pytest.fixture(scope="module")
def table() -> np.ndarray:
    """A bigram table that knows the text a little: row a puts weight on the bytes that follow a."""
    counts = np.ones((V, V), dtype=np.float64)
    data = np.frombuffer(TEXT, dtype=np.uint8)
    np.add.at(counts, (data[:-1], data[1:]), 1.0)
    return np.log(counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)


def val_tokens(n: int = VAL_TOKENS) -> np.ndarray:
    return np.frombuffer(TEXT * 20, dtype=np.uint8)[: n + 1].astype(np.int64)


def bigram_loss(table: np.ndarray, tokens: np.ndarray) -> float:
    """The direct computation: mean cross-entropy of each next byte under row x[t] of the table."""
    logits = table[tokens[:-1]].astype(np.float64)
    top = logits.max(axis=1)
    lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    return float((lse - logits[np.arange(len(tokens) - 1), tokens[1:]]).mean())


def bigram_model(
    path: Path,
    table: np.ndarray,
    *,
    length: int | str = T,
    peek: bool = False,
    op_domain: str = "",
    input_type: int = TensorProto.INT64,
) -> Path:
    """logits[b, t] = table[x[b, t]], or, with `peek`, table[x[b, t + 1]] (a look-ahead, the last position kept)."""
    nodes = []
    index = "tokens"
    if peek:
        nodes += [
            helper.make_node("Slice", ["tokens", "one", "big", "one"], ["later"]),
            helper.make_node("Slice", ["tokens", "minus_one", "big", "one"], ["last"]),
            helper.make_node("Concat", ["later", "last"], ["shifted"], axis=1),
        ]
        index = "shifted"
    nodes.append(helper.make_node("Gather", ["table", index], ["logits"], axis=0, domain=op_domain))
    graph = helper.make_graph(
        nodes,
        "bigram",
        [helper.make_tensor_value_info("tokens", input_type, ["batch", length])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", length, table.shape[1]])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one"),
            numpy_helper.from_array(np.array([2**62], dtype=np.int64), "big"),
        ],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(op_domain, 1)] if op_domain else [])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path


def evaluate(path: Path, glob: str, n: int = VAL_TOKENS, **kw: object) -> ModelEval:
    return evaluate_model(path, glob, n, timeout_s=120, **kw)


# --- the loss ------------------------------------------------------------------------------


def test_loss_matches_a_direct_computation(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    result = evaluate(bigram_model(tmp_path / "m.onnx", table), val_glob, probe_seed=7)
    assert result.error is None and result.ok
    assert result.tokens == VAL_TOKENS and result.context == T
    assert result.loss == pytest.approx(bigram_loss(table, val_tokens()), abs=1e-6)
    assert result.causal is True and result.leak == 0.0
    assert result.probes == -(-VAL_TOKENS // T) and result.probe_seed == 7
    assert result.seconds > 0


def test_fewer_tokens_or_another_loss_is_not_what_it_reports(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    """A script may print the loss of fewer or other tokens; the evaluator scores exactly the ones it is given."""
    result = evaluate(bigram_model(tmp_path / "m.onnx", table), val_glob)
    assert result.loss is not None
    assert result.loss == pytest.approx(bigram_loss(table, val_tokens()), abs=1e-6)
    fewer = bigram_loss(table, val_tokens(VAL_TOKENS // 4))
    others = bigram_loss(table, np.frombuffer(TEXT * 20, dtype=np.uint8)[VAL_TOKENS:].astype(np.int64))
    assert abs(fewer - result.loss) > 1e-3 and abs(others - result.loss) > 1e-3
    short = evaluate(tmp_path / "m.onnx", val_glob, n=VAL_TOKENS // 4)
    assert short.tokens == VAL_TOKENS // 4 and short.loss == pytest.approx(fewer, abs=1e-6)


def test_shorter_windows_are_padded_and_still_exact(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    result = evaluate(bigram_model(tmp_path / "m.onnx", table), val_glob, context=5)
    assert result.ok and result.context == 5 and result.tokens == VAL_TOKENS
    assert result.loss == pytest.approx(bigram_loss(table, val_tokens()), abs=1e-6)
    assert "do not fit" in (evaluate(tmp_path / "m.onnx", val_glob, context=T + 1).error or "")


def test_symbolic_length_needs_a_context(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    path = bigram_model(tmp_path / "m.onnx", table, length="T")
    assert "symbolic" in (evaluate(path, val_glob).error or "")
    result = evaluate(path, val_glob, context=32)
    assert result.ok and result.context == 32
    assert result.loss == pytest.approx(bigram_loss(table, val_tokens()), abs=1e-6)


# --- causality -----------------------------------------------------------------------------


def test_a_look_ahead_is_caught(tmp_path: Path, val_glob: str) -> None:
    """A model that reads the next token predicts it perfectly (but at a window's end), and is not causal."""
    sharp = np.full((V, V), -20.0, dtype=np.float32)
    np.fill_diagonal(sharp, 20.0)  # row a says "a"
    result = evaluate(bigram_model(tmp_path / "cheat.onnx", sharp, peek=True), val_glob)
    assert result.error is None
    # Wrong (loss 40) only at the last position of each of the 63 windows: what the cheat would score.
    assert result.loss is not None and result.loss <= 40 * 63 / VAL_TOKENS + 1e-3
    assert result.causal is False and not result.ok
    assert result.leak is not None and result.leak > CAUSAL_ATOL


def test_non_causal_transformer_is_caught(tmp_path: Path, val_glob: str) -> None:
    """Attention without the causal mask, exported the way the records export theirs; its loss is still exact."""
    torch = pytest.importorskip("torch")

    class Bidirectional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(V, 16)
            self.qkv = torch.nn.Linear(16, 48, bias=False)

        def forward(self, idx):
            x = self.emb(idx)
            q, k, v = (t.unsqueeze(1) for t in self.qkv(x).split(16, dim=2))  # one head
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=False).squeeze(1)
            return (x + y) @ self.emb.weight.T

    torch.manual_seed(0)
    model = Bidirectional().eval()
    path = tmp_path / "bidirectional.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(2, T, dtype=torch.long),),
        str(path),
        input_names=["tokens"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
        dynamo=True,
        optimize=False,
        verbose=False,
    )
    result = evaluate(path, val_glob)
    assert result.error is None and result.causal is False and not result.ok
    # The direct computation, in the same windows with the same zero padding after the last one.
    with torch.no_grad():
        tokens = torch.from_numpy(val_tokens())
        x = torch.zeros(-(-VAL_TOKENS // T) * T, dtype=torch.long)
        x[:VAL_TOKENS] = tokens[:-1]
        logits = model(x.view(-1, T)).reshape(-1, V)[:VAL_TOKENS].double()
        assert result.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, tokens[1:]).item(), abs=1e-5)


# --- refusals ------------------------------------------------------------------------------


def test_missing_model(tmp_path: Path, val_glob: str) -> None:
    result = evaluate(tmp_path / "none.onnx", val_glob)
    assert result.error and "no model file" in result.error and "SPEEDRUN_MODEL_OUT" in result.error
    assert result.loss is None and not result.ok


def test_too_big_model(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    path = bigram_model(tmp_path / "m.onnx", table)
    result = evaluate(path, val_glob, max_model_bytes=path.stat().st_size - 1)
    assert result.error and "over the" in result.error and "limit" in result.error


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_model(tmp_path: Path, val_glob: str, table: np.ndarray, damage: str) -> None:
    path = bigram_model(tmp_path / "m.onnx", table)
    data = path.read_bytes()
    path.write_bytes({"garbage": os.urandom(4096), "truncated": data[: len(data) // 2], "empty": b""}[damage])
    result = evaluate(path, val_glob)
    assert result.error and result.loss is None
    assert re.search(r"not an ONNX model|not a valid ONNX graph|inputs and .* outputs|input is", result.error)


def test_links_and_fifos_are_refused(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    real = bigram_model(tmp_path / "real.onnx", table)
    (tmp_path / "link.onnx").symlink_to(real)
    assert "plain file" in (evaluate(tmp_path / "link.onnx", val_glob).error or "")
    os.mkfifo(tmp_path / "fifo.onnx")  # opening it for reading would block until a writer comes
    assert "not a plain file" in (evaluate(tmp_path / "fifo.onnx", val_glob).error or "")


def test_custom_operator_is_refused(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    result = evaluate(bigram_model(tmp_path / "m.onnx", table, op_domain="com.evil"), val_glob)
    assert result.error and "com.evil::Gather is not a standard ONNX operator" in result.error


def test_external_data_is_refused(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    """Weights "stored" in another file would make onnxruntime open it (the held-out shard, say)."""
    model = onnx.load(bigram_model(tmp_path / "m.onnx", table))
    weights = model.graph.initializer[0]
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    weights.external_data.add(key="location", value="../../holdout/mini_holdout_000000.bin")
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    result = evaluate(tmp_path / "m.onnx", val_glob)
    assert result.error and "keeps its data in another file" in result.error


def test_training_graphs_are_refused(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    model = onnx.load(bigram_model(tmp_path / "m.onnx", table))
    model.training_info.add()
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    assert "training graphs" in (evaluate(tmp_path / "m.onnx", val_glob).error or "")


def test_wrong_shapes_are_refused(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    floats = evaluate(bigram_model(tmp_path / "f.onnx", table, input_type=TensorProto.FLOAT), val_glob)
    assert floats.error and "int64 token ids" in floats.error
    narrow = evaluate(bigram_model(tmp_path / "n.onnx", table[:, :100].copy()), val_glob)
    assert narrow.error and "expected (batch, T, 256) logits" in narrow.error


def test_non_finite_logits_are_refused(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    bad = table.copy()
    bad[ord("e")] = np.nan
    result = evaluate(bigram_model(tmp_path / "m.onnx", bad), val_glob)
    assert result.error and "non-finite logits" in result.error


def test_a_slow_evaluation_is_stopped(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    result = evaluate_model(bigram_model(tmp_path / "m.onnx", table), val_glob, VAL_TOKENS, timeout_s=0.05)
    assert result.error == "the evaluation did not finish within 0.05 s"


def test_bad_validation_data_is_the_harness_fault(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    path = bigram_model(tmp_path / "m.onnx", table)
    with pytest.raises(DataError, match="no validation shards match"):
        evaluate(path, str(tmp_path / "nothing_*.bin"))
    with pytest.raises(DataError, match=r"hold 3260 tokens; 5001 are needed"):
        evaluate(path, val_glob, n=5000)


# --- isolation -----------------------------------------------------------------------------

MALICE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported {name}")
raise SystemExit("candidate code ran")
"""


def test_candidate_files_in_the_workspace_cannot_run(
    tmp_path: Path, val_glob: str, table: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workspace full of modules that the child would import if its sys.path held the workspace."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    markers = tmp_path / "markers"
    markers.mkdir()
    for name in ("train", "sitecustomize", "usercustomize", "onnx", "onnxruntime", "numpy", "pydantic", "harness"):
        (workspace / f"{name}.py").write_text(MALICE.format(marker=str(markers / name), name=name))
    bigram_model(workspace / "model.onnx", table)
    # Everything that would pull the workspace into a normal interpreter's path, and a key to steal.
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("PYTHONPATH", str(workspace))
    monkeypatch.setenv("PYTHONSTARTUP", str(workspace / "train.py"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")

    log = tmp_path / "child.txt"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\n{{ pwd; echo "ARGS $*"; env; }} > {log}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    result = evaluate(Path("model.onnx"), val_glob, python=str(wrapper))
    assert result.ok, result.error
    assert result.loss == pytest.approx(bigram_loss(table, val_tokens()), abs=1e-6)
    assert list(markers.iterdir()) == []

    seen = log.read_text().splitlines()
    cwd, args, env = seen[0], seen[1], dict(line.split("=", 1) for line in seen[2:] if "=" in line)
    assert Path(cwd) != workspace and workspace not in Path(cwd).parents
    assert args.split()[1] == "-I" and str(workspace / "model.onnx") in args
    assert not {"OPENAI_API_KEY", "PYTHONPATH", "PYTHONSTARTUP"} & set(env)
    given = {"PATH", "HOME", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"}
    assert set(env) - given <= {"PWD", "OLDPWD", "SHLVL", "_"}  # what the wrapper's shell adds


def test_module_entry_point(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    """`python -m harness.eval.evaluator` is the child's protocol: one JSON line."""
    path = bigram_model(tmp_path / "m.onnx", table)
    args = ["--model", str(path), "--val-files", val_glob, "--val-tokens", str(VAL_TOKENS)]
    proc = subprocess.run(
        [sys.executable, "-m", "harness.eval.evaluator", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = ModelEval.model_validate_json(proc.stdout.strip().splitlines()[-1])
    assert result.ok and result.loss == pytest.approx(bigram_loss(table, val_tokens()), abs=1e-6)
