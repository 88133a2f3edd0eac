"""`speedrun eval`: one evaluation per task, or a cumulative chain, with its scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from harness.cli._common import console, err_console, fail, parse_kv
from harness.cli.render import safe_text
from harness.errors import SpeedrunError

# ---- eval ------------------------------------------------------------------------------------------------


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
    max_answer_tokens: Annotated[
        int | None,
        typer.Option(
            help="Cap on one answer's tokens (default: the current script's size with a quarter to spare, "
            "plus 2,048 for a plan, at least 4,096; reasoning models get 16,384 more)."
        ),
    ] = None,
    call_time_limit: Annotated[
        float | None,
        typer.Option(
            help="Wall-clock limit of one model call, seconds (default 1800: a local server on a CPU "
            "writes about 10 tokens/s). A call that sends nothing for 600 s is asked again."
        ),
    ] = None,
    context_window: Annotated[
        int | None,
        typer.Option(
            help="The model's context window in tokens, when its server does not report it (llama.cpp: its --n_ctx)."
        ),
    ] = None,
    price: Annotated[
        str | None, typer.Option(help="The model's price, IN,OUT USD per million tokens (needed under --max-cost).")
    ] = None,
    requests_per_minute: Annotated[int | None, typer.Option(help="Pace LLM requests per provider.")] = None,
    tokens_per_minute: Annotated[int | None, typer.Option(help="Pace LLM tokens per provider.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the search and of the training runs.")] = 0,
    executor: Annotated[str, typer.Option(help="local, docker or slurm.")] = "local",
    executor_arg: Annotated[
        list[str] | None, typer.Option(help="Executor setting key=value (docker: memory=8g; slurm: partition=gpu).")
    ] = None,
    executor_config: Annotated[
        Path | None, typer.Option(help="TOML file of executor settings (a [slurm] table: partition, account, …).")
    ] = None,
    gpus: Annotated[
        str | None, typer.Option(help="GPUs: all, N or 0,1,…; --max-parallel runs split them into equal shares.")
    ] = None,
    max_parallel: Annotated[int, typer.Option(help="Runs at once (per task).")] = 1,
    max_jobs: Annotated[
        int | None, typer.Option(help="slurm: jobs in flight across all tasks; the tasks' searches run at once.")
    ] = None,
    submit: Annotated[
        bool, typer.Option("--submit", help="slurm: run this whole evaluation as a Slurm job (re-run to resume).")
    ] = False,
    schedule: Annotated[str, typer.Option(help="async (refill slots) or paper (batch barrier).")] = "async",
    results_dir: Annotated[Path, typer.Option(help="Results root.")] = Path("results"),
    data_dir: Annotated[Path | None, typer.Option(help="Prepared data (default: the cache).")] = None,
    calibration_runs: Annotated[int, typer.Option(help="Runs per record when calibrating.")] = 3,
    confirm_runs: Annotated[
        int,
        typer.Option(
            help="Most side-by-side pairs (record i, node) that confirm the best node; "
            "fewer once the FSR interval is narrow."
        ),
    ] = 4,
    seeds: Annotated[
        int,
        typer.Option(
            help="Confirm with this many seeds (SPEEDRUN_SEED = seed, seed+1, ...); with 2 or more the best node "
            "counts only if its mean validation loss is below the target at p < 0.01 (the speedrun's record rule)."
        ),
    ] = 1,
    references: Annotated[
        str,
        typer.Option(
            help="Record i's and i+1's times: measured (calibrated on this machine) or paper (the paper's "
            "8xH100 times, labelled as such). The best node is confirmed beside record i here either way."
        ),
    ] = "measured",
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
    from harness.cli.render import EventRenderer
    from harness.eval.config import EvalConfig
    from harness.eval.evaluate import Evaluation, evaluate
    from harness.leaderboard import write_leaderboard
    from harness.manifests.tracks import load_track
    from harness.models.registry import is_deterministic

    try:
        if schedule not in ("async", "paper"):
            raise SpeedrunError("--schedule must be async or paper")
        if references not in ("measured", "paper"):
            raise SpeedrunError("--references must be measured or paper")
        task_ids = _task_ids(track, task, tasks)
        margs = parse_kv(model_arg or [], "--model-arg")
        if base_url:
            margs["base_url"] = base_url
        if replay_from:
            margs["replay_from"] = str(replay_from)
        if max_connections:
            margs["max_connections"] = max_connections
        for key, value in (
            ("max_tokens", max_answer_tokens),
            ("timeout_s", call_time_limit),
            ("context_window", context_window),
            ("price", price),
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if value is not None:
                margs[key] = value
        sargs = parse_kv(scaffold_arg or [], "--scaffold-arg")
        xargs = executor_options(executor, executor_config, parse_kv(executor_arg or [], "--executor-arg"))
        if (max_jobs is not None or submit) and executor != "slurm":
            raise SpeedrunError("--max-jobs and --submit are for --executor slurm")
        if max_jobs is not None:
            xargs["max_jobs"] = max_jobs
        if dry_run and executor == "slurm":
            xargs["probe"] = False  # a dry run submits nothing, not even the probe of the compute node
        if nodes is not None:
            sargs["nodes"] = nodes
        elif is_deterministic(model) and "nodes" not in sargs:
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
        references=references,
        seeds=seeds,
        target_val_loss=target_val_loss,
        time_limit_s=time_limit,
        max_cost_usd=max_cost,
        max_tokens=max_tokens,
        gpus=gpus,
        analyze=analyze,
    )
    if submit and not dry_run:
        _submit(xargs, results_dir)
        return
    if cumulative and not dry_run:
        _eval_chain(base, task_ids)
        return
    if max_jobs is not None and len(task_ids) > 1 and not dry_run:
        _eval_sweep(base, task_ids)
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
            console.print(Text("stopped", style="yellow") + Text(": ") + safe_text(info.status_detail, limit=2000))
            write_leaderboard(results_dir)
            raise typer.Exit(3)
        if info.score is not None:
            _print_score(tid, info)
            scores.append(info.score.fsr)
    if dry_run:
        return  # a dry run writes nothing, not even the leaderboard
    _, path = write_leaderboard(results_dir)
    if len(scores) > 1:
        from harness.scoring import benchmark_score

        console.print(f"[bold]{benchmark_score(scores).label()}[/bold]", highlight=False)
    console.print(f"[dim]leaderboard: {path}[/dim]")


def executor_options(executor: str, config: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """Executor settings: the config file's (its `[<executor>]` table, or its top level), then the flags'."""
    if config is None:
        return flags
    from harness.execution.slurm_settings import load_settings

    data = load_settings(config)
    table = data.get(executor)
    options = dict(table) if isinstance(table, dict) else {k: v for k, v in data.items() if not isinstance(v, dict)}
    return {**options, **flags}


def _submit(xargs: dict[str, Any], results_dir: Path) -> None:
    """`eval --submit`: the same command, less --submit, as a Slurm job."""
    import sys

    from harness.execution.slurm_submit import submit_eval

    argv = [a for a in sys.argv[1:] if a != "--submit"]
    try:
        job = submit_eval(argv, xargs, results_dir)
    except SpeedrunError as exc:
        fail(exc)
    console.print(f"submitted the evaluation as Slurm job [bold]{job.job_id}[/bold]; its output: {job.log}")
    console.print("[dim]re-run the same command (with --submit) to resume it after a stop or a preemption[/dim]")


def _eval_sweep(base: Any, task_ids: list[str]) -> None:
    """`--max-jobs` with several tasks: their searches at once, sharing the job limit."""
    from harness.cli.render import EventRenderer
    from harness.eval.sweep import run_sweep
    from harness.leaderboard import write_leaderboard
    from harness.scoring import benchmark_score

    cfgs = [base.model_copy(update={"task": tid}) for tid in task_ids]
    console.rule(f"{len(cfgs)} tasks at once · {base.model} · {base.scaffold} · hints {base.hints}")
    errors: list[str] = []

    def done(cfg: Any, result: Any) -> None:
        if isinstance(result, Exception):
            errors.append(f"{cfg.task}: {result}")
            err_console.print(Text(f"{cfg.task} failed: ", style="bold red") + safe_text(str(result), limit=2000))
        elif result.score is not None:
            _print_score(cfg.task, result)

    try:
        with EventRenderer(console) as render:
            results = run_sweep(cfgs, on_event=render, on_done=done)
    except SpeedrunError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted; re-run the same command to resume[/yellow]")
        raise typer.Exit(130) from None
    _, path = write_leaderboard(base.results_dir)
    scores = [r.score.fsr for r in results.values() if not isinstance(r, Exception) and r.score is not None]
    if len(scores) > 1:
        console.print(f"[bold]{benchmark_score(scores).label()}[/bold]", highlight=False)
    console.print(f"[dim]leaderboard: {path}[/dim]")
    if errors:
        raise typer.Exit(2)


def _print_score(tid: str, info: Any) -> None:
    from harness.leaderboard import REVIEW_FSR

    s = info.score
    ref = s.reference
    best = f"{s.best_time_ms / 1000:.1f} s" if s.best_time_ms else "none"
    console.print(
        f"[bold]{tid}[/bold]: FSR [bold green]{s.fsr:.3f}[/bold green] · best node {s.best_node} ({best}) · "
        f"record {ref.from_record} {ref.t_ref_ms / 1000:.1f} s → {ref.to_record} {ref.t_next_ms / 1000:.1f} s "
        f"({ref.source}) · valid {s.valid_nodes}/{s.nodes}" + (f" · {s.note}" if s.note else ""),
        highlight=False,
    )
    if s.estimate is not None:
        console.print(f"  {s.estimate.label()}", highlight=False)
    if s.protection:
        console.print(
            f"  protected: {', '.join(s.protection)} · references {ref.source} on {ref.hardware}", highlight=False
        )
    if s.fsr > REVIEW_FSR:
        console.print(f"  [yellow]FSR above {REVIEW_FSR}: flagged for review[/yellow]", highlight=False)
    if s.candidate_ratio is not None:
        # The denominator the score used: the confirmation rounds' where record i+1 ran in them.
        nxt = s.estimate.next_ratio if s.estimate is not None else ref.next_ratio
        console.print(
            f"  time ratio candidate/record {s.candidate_ratio:.3f} vs record {ref.to_record} {nxt:.3f}",
            highlight=False,
        )


def _eval_chain(base: Any, task_ids: list[str]) -> None:
    """`eval --cumulative`: the tasks in order, each from the previous one's best solution."""
    from harness.cli.render import EventRenderer
    from harness.eval.cumulative import chain_dir, run_chain
    from harness.leaderboard import fmt_cell, write_leaderboard
    from harness.scoring import benchmark_score

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
        console.print(f"[bold]{benchmark_score(chain.fsrs).label('step')}[/bold]", highlight=False)
    console.print(f"[dim]chain: {path.parent}[/dim]")


def _task_ids(track: str, task: list[str] | None, tasks: str | None) -> list[str]:
    from harness.manifests.tracks import get_task, load_track

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
