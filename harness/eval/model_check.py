"""The harness's own check of a run's saved model, on the tracks whose records save one.

The model file is copied out of the workspace (not following links, bounded in size) before
the evaluator reads it: the workspace is the candidate's, and a link there could otherwise
point the harness at any file on the machine.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from pydantic import BaseModel

from harness.eval.evaluator import MAX_MODEL_BYTES, ModelEval, evaluate_model

#: How far a script's printed final loss may be from the harness's measurement of its model: the
#: records agree to the printed four decimals; more than this is a different model or another loss.
PRINTED_LOSS_TOLERANCE = 0.002
#: How much worse than record i's a candidate's loss on the held-out plays may be: a genuine
#: speed-up trained to the same validation loss generalises like the record does.
HOLDOUT_MARGIN = 0.02


class ModelCheck(BaseModel):
    """Where a run saves its model (relative to its workspace) and what to score it on."""

    model_file: str
    val_glob: str
    val_tokens: int
    holdout_glob: str | None = None


def check_saved_model(workspace: Path, check: ModelCheck, *, holdout: bool = False) -> ModelEval:
    """The evaluator's verdict on the model a run saved (on the held-out shards with `holdout`)."""
    with tempfile.TemporaryDirectory(prefix="speedrun-model-") as tmp:
        copy = Path(tmp) / "model.onnx"
        problem = _copy_out(workspace / check.model_file, copy, MAX_MODEL_BYTES)
        if problem is not None:
            return ModelEval(error=problem)
        glob = check.holdout_glob if holdout and check.holdout_glob else check.val_glob
        return evaluate_model(copy, glob, check.val_tokens)


def _copy_out(src: Path, dest: Path, max_bytes: int) -> str | None:
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return f"the run saved no model at {src.name} (SPEEDRUN_MODEL_OUT)"
    except OSError as exc:
        return f"the saved model {src.name} cannot be read without following a link ({exc.strerror})"
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return f"the saved model {src.name} is not a regular file"
        if info.st_size > max_bytes:
            return f"the saved model is {info.st_size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit"
        dest.write_bytes(f.read(max_bytes + 1))
    return None
