"""The `speedrun` command: parses flags, calls the library, renders the results.

Each command lives in its own module of this package; this one only assembles them.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from harness.cli._common import state
from harness.cli.calibrate import calibrate_cmd
from harness.cli.containers import containers_app, doctor_command
from harness.cli.data import data_app
from harness.cli.eval import eval_cmd
from harness.cli.records import records_app
from harness.cli.results import leaderboard_cmd, parse_log_cmd, report_cmd
from harness.cli.scaffolds import scaffolds_app
from harness.cli.tasks import tasks_app
from harness.cli.view import view_cmd

app = typer.Typer(
    name="speedrun",
    help="Benchmark LLM agents on reproducing training-speedrun records.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(tasks_app, name="tasks")
app.add_typer(data_app, name="data")
app.add_typer(scaffolds_app, name="scaffolds")
app.add_typer(records_app, name="records")
app.add_typer(containers_app, name="containers")
app.command("doctor", help="Check the Docker engine, GPU runtime, images, data and keys.")(doctor_command)
app.command("eval")(eval_cmd)
app.command("calibrate")(calibrate_cmd)
app.command("parse-log")(parse_log_cmd)
app.command("leaderboard")(leaderboard_cmd)
app.command("report")(report_cmd)
app.command("view")(view_cmd)


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False) -> None:
    state["debug"] = debug
    # `kill`, `scancel` and container stops send SIGTERM: treat it like Ctrl-C so running
    # candidates are killed, their containers removed and the journal left resumable.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
