"""The `speedrun` command: parses flags, calls the library, renders the results."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from harness.cli_containers import containers_app, doctor_command
from harness.cli_records import records_app
from harness.errors import SpeedrunError

app = typer.Typer(
    name="speedrun",
    help="Benchmark LLM agents on reproducing training-speedrun records.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tasks_app = typer.Typer(help="List and show benchmark tasks.", no_args_is_help=True)
data_app = typer.Typer(help="Prepare training data.", no_args_is_help=True)
scaffolds_app = typer.Typer(help="Search scaffolds.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(data_app, name="data")
app.add_typer(scaffolds_app, name="scaffolds")
app.add_typer(records_app, name="records")
app.add_typer(containers_app, name="containers")
app.command("doctor", help="Check the Docker engine, GPU runtime, images, data and keys.")(doctor_command)

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False) -> None:
    _state["debug"] = debug
    # `kill`, `scancel` and container stops send SIGTERM: treat it like Ctrl-C so running
    # candidates are killed, their containers removed and the journal left resumable.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def fail(exc: BaseException) -> NoReturn:
    if _state["debug"]:
        raise exc
    err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
    raise typer.Exit(2)


def _kv(pairs: list[str], flag: str) -> dict[str, Any]:
    """`key=value` flags; values are parsed as JSON when they can be (numbers, booleans)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpeedrunError(f"{flag} wants key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


# ---- tasks --------------------------------------------------------------------------------------


@tasks_app.command("list")
def tasks_list(
    track: Annotated[str | None, typer.Option(help="Only this track (mini, nanogpt).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the tasks of every track (or one)."""
    from harness.registry import all_tasks, load_track

    try:
        tasks = all_tasks(track)
        rows: list[dict[str, Any]] = []
        for t in tasks:
            tr = load_track(t.track)
            rows.append(
                {
                    "id": t.id,
                    "track": t.track,
                    "title": t.title,
                    "from_record": t.from_record,
                    "to_record": t.to_record,
                    "hints": t.hints.levels,
                    "target_val_loss": t.target_val_loss,
                    "available": tr.record(t.from_record).available and tr.record(t.to_record).available,
                }
            )
    except SpeedrunError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"tasks ({len(rows)})")
    for col in ("id", "title", "records", "hints", "target", "ready"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["id"],
            r["title"],
            f"{r['from_record']} → {r['to_record']}",
            ", ".join(r["hints"]) or "-",
            f"{r['target_val_loss']}",
            "yes" if r["available"] else "[yellow]fetch[/yellow]",
        )
    console.print(table)


@tasks_app.command("show")
def tasks_show(task_id: str, hints: Annotated[bool, typer.Option(help="Print the hints in full.")] = True) -> None:
    """Show one task: its records, reference times, rules and hints."""
    from harness.registry import get_task, load_track

    try:
        task = get_task(task_id)
        track = load_track(task.track)
        a, b = track.record(task.from_record), track.record(task.to_record)
    except SpeedrunError as exc:
        fail(exc)
    console.print(f"[bold]{task.id}[/bold]: {task.title}")
    console.print(
        f"track {track.name} · target val_loss {task.target_val_loss} · hints: {', '.join(task.hints.levels) or 'none'}"
    )
    for label, rec in (("from", a), ("to", b)):
        ref = rec.reference
        ref_s = (
            f"{ref.time_ms / 1000:.1f} s, {ref.steps} steps, val_loss {ref.val_loss} ({ref.source or ref.machine})"
            if ref
            else "not measured"
        )
        console.print(f"  {label:4} {rec.id}: {rec.title} — reference {ref_s}", highlight=False)
    console.print("[bold]rules[/bold]")
    for rule in task.rules:
        console.print(f"  - {rule}", highlight=False)
    if hints:
        for level in task.hints.levels:
            console.rule(level)
            console.print(getattr(task.hints, level), markup=False, highlight=False)


# ---- parse-log ------------------------------------------------------------------------------------


@app.command("parse-log")
def parse_log_cmd(
    file: Path,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Read a training log the way the scorer does."""
    from harness.logparse import parse_log_file

    if not file.is_file():
        fail(SpeedrunError(f"{file}: no such file"))
    parsed = parse_log_file(file)
    out = {
        "format": parsed.format,
        "val_loss": parsed.val_loss,
        "train_time_ms": parsed.train_time_ms,
        "step": parsed.step,
        "total_steps": parsed.total_steps,
        "finished": parsed.finished,
        "train_loss": parsed.train_loss,
        "step_avg_ms": parsed.step_avg_ms,
        "diverged": parsed.diverged,
        "val_points": len(parsed.val_history),
        "notes": parsed.notes,
    }
    if as_json:
        print(json.dumps(out, indent=2))
        return
    table = Table(show_header=False, title=str(file))
    for key, value in out.items():
        table.add_row(key, "-" if value is None else str(value))
    console.print(table)


# ---- data ---------------------------------------------------------------------------------------------


@data_app.command("prepare")
def data_prepare(
    track: Annotated[str, typer.Argument(help="mini or nanogpt")],
    data_dir: Annotated[Path | None, typer.Option(help="Where the shards go (default: the cache).")] = None,
    train_shards: Annotated[
        int | None,
        typer.Option(help="nanogpt: FineWeb training shards of 100M tokens (default 65: enough for every record)."),
    ] = None,
) -> None:
    """Download (or find) and verify a track's data."""
    try:
        if track == "mini":
            from harness.data.mini import prepare_mini

            mini = prepare_mini(data_dir, progress=lambda m: console.print(f"[dim]{m}[/dim]", highlight=False))
            console.print(
                f"[green]ready[/green]: {mini.data_dir} ({mini.train_tokens:,} train tokens; "
                f"validation plays: {', '.join(mini.plays_val)})"
            )
        elif track == "nanogpt":
            from harness.data.fineweb import prepare_fineweb

            prepared = prepare_fineweb(
                data_dir,
                train_shards=train_shards,
                progress=lambda m: console.print(f"[dim]{m}[/dim]", highlight=False),
            )
            console.print(f"[green]ready[/green]: {prepared.data_dir}")
        else:
            raise SpeedrunError(f"unknown track {track!r}; use mini or nanogpt")
    except SpeedrunError as exc:
        fail(exc)


# ---- eval ------------------------------------------------------------------------------------------------


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Option(help="oracle, null, replay, openai/<model>, anthropic/<model>.")],
    track: Annotated[str, typer.Option(help="Track whose task(s) to run.")] = "mini",
    task: Annotated[list[str] | None, typer.Option(help="Task id(s); default: the track's last task.")] = None,
    tasks: Annotated[str | None, typer.Option(help="A range of task ids, `mini-0..mini-3`, or `all`.")] = None,
    scaffold: Annotated[str, typer.Option(help="Preset, module:Class or ./file.py:Class.")] = "flat",
    scaffold_arg: Annotated[list[str] | None, typer.Option(help="Scaffold parameter key=value.")] = None,
    nodes: Annotated[
        int | None, typer.Option(help="Node budget (default: the scaffold's; 1 for oracle and null).")
    ] = None,
    hints: Annotated[str, typer.Option(help="none, pseudocode, text, paper or a '+' combination.")] = "pseudocode",
    model_arg: Annotated[list[str] | None, typer.Option(help="Generation setting key=value.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")] = None,
    replay_from: Annotated[Path | None, typer.Option(help="replay: the run directory to re-serve.")] = None,
    max_connections: Annotated[int | None, typer.Option(help="Concurrent LLM requests per provider.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the search and of the training runs.")] = 0,
    executor: Annotated[str, typer.Option(help="local, docker or slurm.")] = "local",
    executor_arg: Annotated[
        list[str] | None, typer.Option(help="Executor setting key=value (docker: memory=8g; slurm: partition=gpu).")
    ] = None,
    gpus: Annotated[str | None, typer.Option(help="GPUs for a run: all, N or 0,1,…")] = None,
    max_parallel: Annotated[int, typer.Option(help="Runs at once.")] = 1,
    schedule: Annotated[str, typer.Option(help="async (refill slots) or paper (batch barrier).")] = "async",
    results_dir: Annotated[Path, typer.Option(help="Results root.")] = Path("results"),
    data_dir: Annotated[Path | None, typer.Option(help="Prepared data (default: the cache).")] = None,
    calibration_runs: Annotated[int, typer.Option(help="Runs per record when calibrating.")] = 3,
    confirm_runs: Annotated[int, typer.Option(help="Side-by-side re-runs of the best node.")] = 2,
    target_val_loss: Annotated[float | None, typer.Option(help="Override the target (smoke tests).")] = None,
    time_limit: Annotated[float | None, typer.Option(help="Wall-clock limit per run, seconds.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Stop when the LLM cost reaches this (USD).")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Stop when LLM tokens reach this.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would run (container, command, environment, limits) and exit.")
    ] = False,
    analyze: Annotated[
        bool,
        typer.Option("--analyze", help="After each run, one more model call writes an analysis for later prompts."),
    ] = False,
    cumulative: Annotated[
        bool,
        typer.Option(
            "--cumulative", help="Chain the tasks: each starts from the agent's best solution of the previous one."
        ),
    ] = False,
) -> None:
    """Evaluate a model with a scaffold on one or more tasks; resumes when re-run."""
    from harness.evaluate import EvalConfig, Evaluation, evaluate
    from harness.leaderboard import write_leaderboard
    from harness.models.registry import DETERMINISTIC
    from harness.registry import load_track
    from harness.render import EventRenderer

    try:
        if schedule not in ("async", "paper"):
            raise SpeedrunError("--schedule must be async or paper")
        task_ids = _task_ids(track, task, tasks)
        margs = _kv(model_arg or [], "--model-arg")
        if base_url:
            margs["base_url"] = base_url
        if replay_from:
            margs["replay_from"] = str(replay_from)
        if max_connections:
            margs["max_connections"] = max_connections
        sargs = _kv(scaffold_arg or [], "--scaffold-arg")
        xargs = _kv(executor_arg or [], "--executor-arg")
        if nodes is not None:
            sargs["nodes"] = nodes
        elif model in DETERMINISTIC and "nodes" not in sargs:
            # The offline models give the same answer every time: more nodes re-run one script.
            sargs["nodes"] = 1
            if not dry_run:  # a dry run prints only its JSON
                err_console.print(f"[dim]{model} answers the same every time: 1 node (--nodes N for more)[/dim]")
        load_track(track)
    except SpeedrunError as exc:
        fail(exc)
    base = EvalConfig(
        task=task_ids[0],
        model=model,
        model_args=margs,
        scaffold=scaffold,
        scaffold_args=sargs,
        hints=hints,
        seed=seed,
        executor=executor,
        executor_args=xargs,
        max_parallel=max_parallel,
        schedule=schedule,
        results_dir=results_dir,
        data_dir=data_dir,
        calibration_runs=calibration_runs,
        confirm_runs=confirm_runs,
        target_val_loss=target_val_loss,
        time_limit_s=time_limit,
        max_cost_usd=max_cost,
        max_tokens=max_tokens,
        gpus=gpus,
        analyze=analyze,
    )
    if cumulative and not dry_run:
        _eval_chain(base, task_ids)
        return
    scores = []
    for tid in task_ids:
        cfg = base.model_copy(update={"task": tid})
        if dry_run:
            try:
                print(json.dumps(Evaluation(cfg).plan(), indent=2, default=str))
            except SpeedrunError as exc:
                fail(exc)
            continue
        console.rule(f"{tid} · {model} · {scaffold} · hints {hints}")
        try:
            with EventRenderer(console) as render:
                info = evaluate(cfg, on_event=render)
        except SpeedrunError as exc:
            fail(exc)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted; re-run the same command to resume[/yellow]")
            raise typer.Exit(130) from None
        if info.status == "stopped":
            console.print(f"[yellow]stopped[/yellow]: {info.status_detail}")
            write_leaderboard(results_dir)
            raise typer.Exit(3)
        if info.score is not None:
            _print_score(tid, info)
            scores.append(info.score.fsr)
    if dry_run:
        return  # a dry run writes nothing, not even the leaderboard
    _, path = write_leaderboard(results_dir)
    if len(scores) > 1:
        from harness.scoring import mean_ci

        mean, lo, hi = mean_ci(scores)
        console.print(f"[bold]mean FSR {mean:.3f}[/bold] (95% CI {lo:.3f} – {hi:.3f}) over {len(scores)} tasks")
    console.print(f"[dim]leaderboard: {path}[/dim]")


def _print_score(tid: str, info: Any) -> None:
    s = info.score
    ref = s.reference
    best = f"{s.best_time_ms / 1000:.1f} s" if s.best_time_ms else "none"
    console.print(
        f"[bold]{tid}[/bold]: FSR [bold green]{s.fsr:.3f}[/bold green] · best node {s.best_node} ({best}) · "
        f"record {ref.from_record} {ref.t_ref_ms / 1000:.1f} s → {ref.to_record} {ref.t_next_ms / 1000:.1f} s "
        f"({ref.source}) · valid {s.valid_nodes}/{s.nodes}" + (f" · {s.note}" if s.note else ""),
        highlight=False,
    )
    if s.candidate_ratio is not None:
        console.print(
            f"  time ratio candidate/record {s.candidate_ratio:.3f} vs record {ref.to_record} {ref.next_ratio:.3f}",
            highlight=False,
        )


def _eval_chain(base: Any, task_ids: list[str]) -> None:
    """`eval --cumulative`: the tasks in order, each from the previous one's best solution."""
    from harness.cumulative import chain_dir, run_chain
    from harness.leaderboard import fmt_cell, write_leaderboard
    from harness.render import EventRenderer
    from harness.scoring import mean_ci

    console.rule(f"cumulative {task_ids[0]} .. {task_ids[-1]} · {base.model} · {base.scaffold} · hints {base.hints}")
    try:
        with EventRenderer(console) as render:
            chain = run_chain(base, task_ids, on_event=render, on_step=lambda step, info: _print_score(step.task, info))
    except SpeedrunError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted; re-run the same command to resume[/yellow]")
        raise typer.Exit(130) from None
    table = Table(title=f"cumulative chain {chain.chain_id}")
    for col in ("step", "task", "starts from", "status", "FSR", "best node", "best time", "record i → i+1"):
        table.add_column(col)
    for k, st in enumerate(chain.steps, 1):
        table.add_row(
            str(k),
            st.task,
            "human record" if st.started_from == "record" else "own solution",
            st.status,
            fmt_cell(st.fsr),
            fmt_cell(st.best_node),
            f"{st.best_time_ms / 1000:.1f} s" if st.best_time_ms else "-",
            f"{st.t_ref_ms / 1000:.1f} s → {st.t_next_ms / 1000:.1f} s" if st.t_ref_ms and st.t_next_ms else "-",
        )
    console.print(table)
    _, path = write_leaderboard(chain_dir(base, task_ids[0]))
    if chain.status == "stopped":
        console.print(f"[yellow]stopped[/yellow] at {chain.steps[-1].task}; re-run the same command to resume")
        raise typer.Exit(3)
    if len(chain.fsrs) > 1:
        mean, lo, hi = mean_ci(chain.fsrs)
        console.print(f"[bold]mean FSR {mean:.3f}[/bold] (95% CI {lo:.3f} – {hi:.3f}) over {len(chain.fsrs)} steps")
    console.print(f"[dim]chain: {path.parent}[/dim]")


def _task_ids(track: str, task: list[str] | None, tasks: str | None) -> list[str]:
    from harness.registry import get_task, load_track

    all_ids = [t.id for t in load_track(track).tasks()]
    if not all_ids:
        raise SpeedrunError(f"track {track!r} has no tasks")
    if task:
        for tid in task:
            if get_task(tid).track != track:
                raise SpeedrunError(f"task {tid} is not in track {track}; add --track {get_task(tid).track}")
        return list(task)
    if tasks:
        if tasks == "all":
            return all_ids
        first, sep, last = tasks.partition("..")
        if not sep or first not in all_ids or last not in all_ids:
            raise SpeedrunError(f"--tasks wants FIRST..LAST of known task ids or `all`, got {tasks!r}")
        return all_ids[all_ids.index(first) : all_ids.index(last) + 1]
    return [all_ids[-1]]


# ---- calibrate -------------------------------------------------------------------------------------


@app.command("calibrate")
def calibrate_cmd(
    track: Annotated[str, typer.Option(help="Track to calibrate.")] = "mini",
    runs: Annotated[int, typer.Option(help="Runs per record (interleaved).")] = 3,
    records: Annotated[str | None, typer.Option(help="Comma-separated record ids (default: all).")] = None,
    executor: Annotated[str, typer.Option(help="local or docker.")] = "local",
    executor_arg: Annotated[
        list[str] | None,
        typer.Option(help="Executor setting key=value, as for `speedrun eval` (docker: cpuset=0 pins the runs)."),
    ] = None,
    target_val_loss: Annotated[float | None, typer.Option(help="Override the target (smoke tests).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Prepared data (default: the cache).")] = None,
    gpus: Annotated[str | None, typer.Option(help="GPUs for a run.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-measure record times on this machine (the references that FSR compares against)."""
    from rich.progress import Progress

    from harness.calibration import calibrate, calibration_path, load_calibration
    from harness.data.tracks import ensure_data
    from harness.evaluate import track_command, track_env, track_executor
    from harness.measure import MeasureSpec
    from harness.registry import Record, load_track

    try:
        tr = load_track(track)
        recs = tr.records()
        if records:
            wanted = [r.strip() for r in records.split(",") if r.strip()]
            by_key = {r.id: r for r in recs} | {str(r.index): r for r in recs}
            missing = [w for w in wanted if w not in by_key]
            if missing:
                raise SpeedrunError(f"unknown record(s) {', '.join(missing)}; known: {', '.join(r.id for r in recs)}")
            recs = [by_key[w] for w in wanted]
        target = target_val_loss if target_val_loss is not None else tr.target_val_loss
        xargs = _kv(executor_arg or [], "--executor-arg")
        data = ensure_data(tr, data_dir, progress=lambda m: err_console.print(f"[dim]{m}[/dim]"))
        local = executor == "local"
        spec = MeasureSpec(
            command=track_command(tr, gpus, local=local),
            env=track_env(tr, data, gpus, local=local, seed=0, target_val_loss=target),
            time_limit_s=tr.time_limit_s,
            target_val_loss=target,
            data_dir=data.data_dir,
            gpus=gpus,
        )
        # Records of different PyTorch eras run in different images: one interleaved series per image.
        groups: dict[str | None, list[Record]] = {}
        for rec in recs:
            groups.setdefault(rec.image or tr.image if executor == "docker" else None, []).append(rec)
        with Progress(console=err_console, transient=False) as progress:
            bar = progress.add_task("calibrating", total=runs * len(recs))
            offset = [0]

            def on_event(ev: Any) -> None:
                if "time_ms" in ev.data:
                    progress.update(bar, completed=offset[0] + ev.data["done"], description=ev.message)
                else:
                    progress.update(bar, description=ev.message)

            for image, group in groups.items():
                ex = track_executor(tr, executor, xargs, image=image)
                try:
                    cal = calibrate(tr, group, runs=runs, executor=ex, spec=spec, on_event=on_event)
                finally:
                    ex.close()
                offset[0] += runs * len(group)
        # calibrate() saved after every run; what is on disk now holds every group's records.
        path = calibration_path(tr, cal.executor, target)
        cal = load_calibration(tr, cal.executor, target)
    except SpeedrunError as exc:
        fail(exc)
    out: dict[str, dict[str, Any]] = {
        rid: {
            "median_ms": t.median_ms,
            "times_ms": t.times_ms,
            "min_ms": t.spread[0],
            "max_ms": t.spread[1],
            "steps": t.steps,
        }
        for rid, t in cal.records.items()
        if rid in {r.id for r in recs}
    }
    if as_json:
        print(
            json.dumps(
                {"track": track, "machine": cal.machine.describe(), "file": str(path), "records": out},
                indent=2,
            )
        )
        return
    table = Table(title=f"calibration of {track} on {cal.machine.describe()}")
    for col in ("record", "median", "min – max", "runs", "steps"):
        table.add_column(col)
    for rid, o in out.items():
        table.add_row(
            rid,
            f"{o['median_ms'] / 1000:.2f} s",
            f"{o['min_ms'] / 1000:.2f} – {o['max_ms'] / 1000:.2f} s",
            str(len(o["times_ms"])),
            str(o["steps"][0] if o["steps"] else "-"),
        )
    console.print(table)
    console.print(f"[dim]saved {path}[/dim]")


# ---- leaderboard -------------------------------------------------------------------------------------


@app.command("leaderboard")
def leaderboard_cmd(
    results_dir: Annotated[Path, typer.Option(help="Results root.")] = Path("results"),
) -> None:
    """Tabulate every evaluation under a results root and write leaderboard.csv."""
    from harness.leaderboard import DISPLAY_COLUMNS, fmt_cell, summary, write_leaderboard

    df, path = write_leaderboard(results_dir)
    if df.empty:
        console.print(f"no evaluations under {results_dir}")
        return
    table = Table(title=f"leaderboard ({len(df)} runs)")
    cols = DISPLAY_COLUMNS
    for col in cols:
        table.add_column(col)
    for record in df.to_dict("records"):
        table.add_row(*[fmt_cell(record[c]) for c in cols])
    console.print(table)
    summ = summary(df)
    if not summ.empty:
        st = Table(title="mean FSR over tasks (95% CI)")
        for col in ("model", "scaffold", "hints", "tasks", "mean_fsr", "ci", "cost_usd"):
            st.add_column(col)
        for r in summ.itertuples(index=False):
            st.add_row(
                str(r.model),
                str(r.scaffold),
                str(r.hints),
                str(r.tasks),
                f"{r.mean_fsr:.3f}",
                f"{r.ci_low:.3f} – {r.ci_high:.3f}",
                f"{r.cost_usd:.2f}",
            )
        console.print(st)
    console.print(f"[dim]wrote {path}[/dim]")


@app.command("report")
def report_cmd(
    results_dir: Annotated[Path, typer.Option(help="Results root.")] = Path("results"),
) -> None:
    """Write report.md and report.html (with an FSR chart) for a results root."""
    from harness.report import write_report

    if not results_dir.is_dir():
        fail(SpeedrunError(f"{results_dir}: no such results directory"))
    md, page = write_report(results_dir)
    console.print(f"wrote {md} and {page}")


# ---- scaffolds -------------------------------------------------------------------------------------------


@scaffolds_app.command("list")
def scaffolds_list() -> None:
    """Built-in and installed scaffolds, with their parameters."""
    from scaffolds import broken_plugins, scaffold_classes

    try:
        classes = scaffold_classes()
        broken = broken_plugins()
    except SpeedrunError as exc:
        fail(exc)
    table = Table(title="scaffolds")
    for col in ("name", "description", "parameters"):
        table.add_column(col)
    for name, cls in sorted(classes.items()):
        params = ", ".join(f"{k}={f.default}" for k, f in cls.Params.model_fields.items())
        table.add_row(name, cls.description, params)
    for name, reason in sorted(broken.items()):
        table.add_row(name, f"[red]{reason}[/red]", "-")
    console.print(table)


def run() -> None:
    try:
        app()
    except SpeedrunError as exc:  # pragma: no cover - commands catch their own
        err_console.print(f"[bold red]error:[/bold red] {exc}")
        sys.exit(2)
