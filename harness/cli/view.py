"""`speedrun view`: the runs under a results root as web pages, written or served live."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli._common import console, fail, parse_kv
from harness.errors import SpeedrunError


def view_cmd(
    results_dir: Annotated[Path, typer.Argument(help="Results root.")] = Path("results"),
    out: Annotated[Path | None, typer.Option(help="Where to write the site (default: RESULTS_DIR/view).")] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve the pages on 127.0.0.1; live runs refresh as nodes finish.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
    judge_model: Annotated[
        str | None,
        typer.Option(help="An LLM that rates each run's best node (opinions beside the run, never FSR)."),
    ] = None,
    judge_arg: Annotated[list[str] | None, typer.Option(help="Judge model setting key=value (base_url=...).")] = None,
    judge: Annotated[
        str,
        typer.Option(
            help="What the judge rates: idea (the hinted idea implemented?), rules (a rule broken?), or both."
        ),
    ] = "idea",
) -> None:
    """Show each run's search tree, and per node its diffs, log, loss curve, transcript and cost."""
    from harness.llm_judge import KINDS, judge_results
    from harness.view.server import ViewServer
    from harness.view.site import build_site

    try:
        if not results_dir.is_dir():
            raise SpeedrunError(f"{results_dir}: no such results directory")
        kinds = KINDS if judge == "both" else tuple(k for k in KINDS if k == judge)
        if not kinds:
            raise SpeedrunError(f"--judge must be idea, rules or both, not {judge!r}")
        if judge_model:
            verdicts = judge_results(results_dir, judge_model, parse_kv(judge_arg or [], "--judge-arg"), kinds)
            what = " and ".join(kinds)
            console.print(f"judged {len(verdicts)} best node(s) with {judge_model} ({what})")
            for v in verdicts:
                if v.kind == "rules":
                    console.print(f"  node {v.node}: rules {v.rules or 'no verdict'}", markup=False)
        if serve:
            server = ViewServer(results_dir, port)
            console.print(f"serving {results_dir} at {server.url} (Ctrl-C stops)")
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
            finally:
                server.stop()
            return
        index = build_site(results_dir, out)
    except (SpeedrunError, OSError) as exc:
        fail(exc)
    console.print(f"wrote {index}")
