"""The ``dyntie`` command: train one run, compare methods, or run the offline demo."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import os
import signal
import sys
import traceback
import typing
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError
from .compare import markdown_table, parse_methods, run_comparison
from .config import (
    SECTIONS,
    AgentConfig,
    ConfigError,
    ProgressiveConfig,
    RunConfig,
    read_json_object,
    resolve_layers,
)
from .data import DataError
from .distributed import DistributedError, init_from_env, shutdown, torchrun_env
from .fileio import write_text_atomic
from .loop import Trainer
from .plots import tie_history_html
from .policies import METHODS, available_methods, check_method
from .presets import PRESETS, get_preset, preset_config
from .progress import ProgressBar
from .rundir import RunDir


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line option generated from a config field's metadata."""

    flag: str
    section: str
    name: str
    type: Any
    help: str
    default: Any


def _flags(section: str, cls: type) -> list[Flag]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        kind = hints[f.name]
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # str | None -> str
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        out.append(Flag(flag, section, f.name, kind, f.metadata["help"], f.default))
    return out


RUN_FLAGS = [flag for section in ("model", "train", "data") for flag in _flags(section, SECTIONS[section])]
AGENT_FIELDS = {f.name: f.metadata["help"] for f in dataclasses.fields(AgentConfig)}
PROGRESSIVE_FIELDS = {f.name: f.metadata["help"] for f in dataclasses.fields(ProgressiveConfig)}


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="a config.json (e.g. from a run directory, or a partial one) to "
                   "start from")
    p.add_argument("--preset", metavar="NAME", help="a named recipe, model and training (listed below)")
    p.add_argument("--method", help="tie policy (listed below; default: vanilla)")
    p.add_argument("--n-unique", type=int, help="unique blocks, for the methods that take it (" + ", ".join(
        n for n, spec in METHODS.items() if spec.n_unique == "required") + ")")
    p.add_argument("--agent", action="append", metavar="KEY=VALUE", help="agent setting for dlt and random, "
                   "repeatable; defaults are the paper preset. Keys: " + "; ".join(
                       f"{k}: {v}" for k, v in AGENT_FIELDS.items()))
    p.add_argument("--progressive", action="append", metavar="KEY=VALUE", help="schedule of shrink, grow and soft, "
                   "repeatable. Keys: " + "; ".join(f"{k}: {v}" for k, v in PROGRESSIVE_FIELDS.items()))
    titles = {"model": "model", "train": "training", "data": "data"}
    groups = {s: p.add_argument_group(t) for s, t in titles.items()}
    for f in RUN_FLAGS:
        if f.type is bool:
            groups[f.section].add_argument(f.flag, action=argparse.BooleanOptionalAction, default=None,
                                           help=f"{f.help} (default: {f.default})")
        else:
            groups[f.section].add_argument(f.flag, type=f.type, default=None, help=f"{f.help} (default: {f.default})")


def _listing(title: str, items: dict[str, str]) -> str:
    width = max(map(len, items)) + 2
    return f"{title}:\n" + "\n".join(f"  {name:<{width}}{text}" for name, text in items.items())


EPILOG = "\n\n".join([_listing("methods", {n: s.help for n, s in METHODS.items()}),
                       _listing("presets", {n: p.description for n, p in PRESETS.items()})])
PRECEDENCE = "Settings are taken, highest first, from explicit options, then the --config file, then --preset, " \
             "then the defaults shown."


def _flag_layer(args: argparse.Namespace) -> dict[str, Any]:
    layer: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "data": {}, "method": {}}
    for f in RUN_FLAGS:
        value = getattr(args, f.flag.lstrip("-").replace("-", "_"))
        if value is not None:
            layer[f.section][f.name] = value
    if args.method is not None:
        layer["method"]["name"] = args.method
    if args.n_unique is not None:
        layer["method"]["n_unique"] = args.n_unique
    if getattr(args, "schedule", None):
        layer["method"]["schedule"] = _parse_schedule(args.schedule)
    agent = _parse_settings(args.agent, AgentConfig, "--agent")
    if agent:
        layer["method"]["agent"] = agent
    progressive = _parse_settings(getattr(args, "progressive", None), ProgressiveConfig, "--progressive")
    if progressive:
        layer["method"]["progressive"] = progressive
    return layer


def build_config(args: argparse.Namespace) -> RunConfig:
    """Explicit options > ``--config`` file > ``--preset`` > dataclass defaults, merged key by key."""
    preset = get_preset(args.preset).sections if args.preset else {}
    from_file = read_json_object(args.config, "config file") if args.config else {}
    return resolve_layers(preset, from_file, _flag_layer(args))


def _parse_schedule(text: str) -> list[list[Any]]:
    """A manual schedule from JSON text or a JSON file: ``[[step, [tie map]], ...]``."""
    path = Path(text)
    raw = path.read_text(encoding="utf-8") if path.is_file() else text
    try:
        schedule = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--schedule is neither a JSON file nor JSON text: {exc}") from None
    if not isinstance(schedule, list):
        raise ConfigError("--schedule must be a JSON list of [step, tie_map] pairs")
    return schedule


class graceful_interrupt:  # noqa: N801 - used as a context manager
    """First Ctrl-C: stop after the current step, then write the summary and a last checkpoint
    (nothing is lost; ``--resume`` continues). A second Ctrl-C interrupts at once."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.hit = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.hit or self.trainer is None:
            raise KeyboardInterrupt
        self.hit = True
        print("\ndyntie: stopping after this step (Ctrl-C again to abort without saving)", file=sys.stderr)
        self.trainer.request_stop()

    def __enter__(self) -> graceful_interrupt:
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _parse_settings(items: list[str] | None, section: type, flag: str) -> dict[str, Any]:
    """``["k_steps=4", "reward=loss-improvement"]`` -> settings of ``section`` (values parsed as JSON when they
    can be), checked now rather than mid-run."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if options:
        section.from_dict(options)  # reject unknown keys and bad values now, not mid-run
    return options


def _check_fresh_out(out: Path, force: bool) -> None:
    """A fresh run never silently replaces another: a finished or resumable run needs --force."""
    run = RunDir(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if force or not run.holds_run():
        return
    if run.read_summary() is not None:
        raise ConfigError(f"{out} already holds a finished run; use --force to overwrite or --resume")
    raise ConfigError(f"{out} holds an unfinished run; use --resume to continue it or --force to start over")


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        given = {f"{sec}.{key}" for sec, keys in _flag_layer(args).items() for key in keys} - {"train.steps"}
        if given or args.preset or args.config or args.force:
            raise ConfigError("--resume reads every setting from the run's config.json (only --steps may change); "
                              f"drop {', '.join(sorted(given)) or '--preset/--config/--force'}")
        stored = RunDir(args.out) / RunDir.CONFIG  # only for the device; Trainer.resume reports a missing run
        config = RunConfig.from_json_file(stored) if stored.is_file() else RunConfig()
    else:
        config = build_config(args)
        check_method(config.method)
        _check_fresh_out(args.out, args.force)
    dist = init_from_env(config.train.device, config.train.dist_timeout_s)  # one process, or a rank under torchrun
    dist.barrier()  # every rank has read the run directory before rank 0 writes to it
    # a second process on the same run directory is refused, not interleaved; under torchrun rank 0 holds the lock
    with RunDir(args.out).lock() if dist.is_main else contextlib.nullcontext():
        trainer = (Trainer.resume(args.out, steps=args.steps, dist=dist) if args.resume
                   else Trainer(config, run_dir=args.out, dist=dist))
        if dist.is_main:
            for notice in trainer.notices:
                print(f"note: {notice}", file=sys.stderr)
            trainer.subscribe(ProgressBar(trainer.config.train.steps, initial=trainer.step,
                                          desc=trainer.config.method.name))
        with graceful_interrupt(trainer):
            summary = trainer.run()
    if not dist.is_main:
        return 1 if summary["diverged"] else 0
    print(json.dumps({k: summary[k] for k in ("method", "steps", "best_val_ppl", "test_ppl", "trainable_params",
                                                "unique_blocks", "tie_map", "tokens_per_s")}, indent=2))
    print(f"run directory: {args.out}")
    if summary["diverged"]:
        d = summary["diverged"]
        print(f"dyntie: training diverged at step {d['step']} (non-finite {d['what']}: {d['value']}) and stopped; "
              "the last good checkpoints and metrics are kept, and summary.json marks the run diverged "
              "(--on-divergence skip drops such steps instead)", file=sys.stderr)
        return 1
    return 0


def _compare(config: RunConfig, methods_spec: str, n_unique: int | None, seeds: list[int],
             out: Path) -> list[dict[str, Any]]:
    methods = parse_methods(methods_spec, n_unique, agent=config.method.agent)
    dist = init_from_env(config.train.device, config.train.dist_timeout_s)

    def attach(trainer: Any, label: str) -> None:
        if interrupt.hit:
            raise KeyboardInterrupt  # do not start the next run after a Ctrl-C
        interrupt.trainer = trainer
        if not dist.is_main:
            return
        for notice in trainer.notices:
            print(f"note: {notice}", file=sys.stderr)
        trainer.subscribe(ProgressBar(trainer.config.train.steps, initial=trainer.step, desc=label))

    interrupt = graceful_interrupt(None)
    with interrupt:
        rows = run_comparison(config, methods, seeds, out, on_trainer=attach)
    if not dist.is_main:
        return rows
    print(markdown_table(rows))
    print(f"tables: {out / 'comparison.md'}, {out / 'comparison.csv'}; plot: {out / 'pareto.html'}")
    return rows


def cmd_compare(args: argparse.Namespace) -> int:
    if args.method is not None:
        raise ConfigError("compare takes --methods (a list), not --method")
    config = build_config(args)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [config.train.seed]
    _compare(config, args.methods, args.n_unique, seeds, args.out)
    return 0


def cmd_plot_ties(args: argparse.Namespace) -> int:
    try:
        path = tie_history_html(args.run_dir, args.out)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    print(f"tie-map history: {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    print("dyntie demo: vanilla vs the DLT agent (paper preset, K=4) vs a random fixed map with the agent's final "
          "number of unique blocks, on Python's bundled docs; offline, CPU.", file=sys.stderr)
    config = preset_config("demo", train={"seed": args.seed})
    rows = _compare(config, "vanilla,dlt", None, [args.seed], args.out)
    n_unique = round(next(r["unique_blocks"] for r in rows if r["method"] == "dlt"))
    rows += _compare(config, f"random-fixed:{n_unique}", None, [args.seed], args.out / "control")
    write_text_atomic(args.out / "demo.md", markdown_table(rows))
    print("\nAll three, same data, model, steps and seed:\n" + markdown_table(rows))
    print(f"tie-map history of the agent: {tie_history_html(args.out / 'dlt' / f'seed{args.seed}')}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .archive import archive_cells
    from .grid import load_grid, merge_grids, run_grid, select_cells
    from .report import write_report

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    grid = merge_grids([load_grid(g) for g in args.grid])
    if args.only:
        grid = select_cells(grid, args.only)
    not_archived: list[str] = []
    if args.archive is not None:
        if args.archive.exists() and not args.archive.is_dir():
            raise ConfigError(f"--archive must be a folder, not a file: {args.archive}")
        if args.archive.resolve() == args.out.resolve():
            raise ConfigError(f"--archive must be another folder than --out ({args.out})")
        # cells finished in an earlier session come back from the archive; cells with a folder here are left to
        # the runner (it resumes a stopped one from its checkpoint)
        missing = [c.name for c in grid.cells if not (args.out / c.name).exists()]
        if missing and args.archive.is_dir():
            restored = archive_cells(args.archive, args.out, [glob.escape(n) for n in missing])
            if restored.copied:
                print(f"{len(restored.copied)} finished cell(s) restored from {args.archive}")
    bar = tqdm(total=len(grid.cells), desc="cells", unit="cell", dynamic_ncols=True)

    def on_result(result: Any) -> None:
        bar.update(1)
        if result.state == "failed":
            bar.write(f"failed: {result.name}: {result.error}")
        elif result.state == "done" and args.archive is not None:
            try:  # at once, so a session that ends before the grid does loses no finished cell
                archive_cells(args.out, args.archive, [glob.escape(result.name)])
            except ConfigError as err:
                not_archived.append(result.name)
                bar.write(f"not archived: {err}")

    results = run_grid(grid, args.out, jobs=args.jobs, on_result=on_result)
    bar.close()
    failed = [r for r in results if r.state == "failed"]
    counts = {state: sum(r.state == state for r in results) for state in ("done", "reused", "failed")}
    print(f"{len(results)} cells: {counts['done']} finished now, {counts['reused']} finished before, "
          f"{counts['failed']} failed")
    if any(r.state != "failed" for r in results):
        md, page = write_report(args.out)
        print(f"report: {md}, {page}")
    if failed:
        print("\n| failed cell | error | executed notebook |\n| --- | --- | --- |")
        for r in failed:
            print(f"| {r.name} | {r.error} | {args.out / r.name / 'cell.ipynb'} |")
    if not_archived:
        print(f"not archived (a different result for the same cell is already in {args.archive}): "
              f"{', '.join(not_archived)}")
    return 1 if failed or not_archived else 0


def cmd_status(args: argparse.Namespace) -> int:
    from .grid import load_grid
    from .grid_status import grid_progress, progress_table

    grids = [load_grid(g) for g in args.grid or []]
    print(progress_table(grid_progress(args.results, grids)))
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    from .archive import archive_cells

    done = archive_cells(args.source, args.dest, args.only, replace=args.replace)
    print(f"{len(done.copied)} finished cell(s) copied to {args.dest} ({done.bytes_copied / 1024:,.0f} KiB), "
          f"{len(done.unchanged)} already there, {len(done.unfinished)} not finished (left out)")
    for name in done.copied:
        print(f"  copied: {name}")
    for name in done.unfinished:
        print(f"  not finished: {name}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    md, page = write_report(args.results, args.out)
    print(md.read_text(encoding="utf-8"))
    print(f"written: {md}, {page}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dyntie", description="Dynamic Layer Tying workbench: train GPT models "
                                     "whose blocks are tied by fixed schemes, schedules or an RL agent.")
    sub = parser.add_subparsers(dest="command", required=True)
    methods = ", ".join(available_methods())

    train = sub.add_parser("train", help="train one run into a run directory", epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Train one model; writes config.json, metrics.jsonl, tie_maps.jsonl, "
                           "summary.json and checkpoints/ into --out. " + PRECEDENCE)
    train.add_argument("--out", type=Path, required=True, help="run directory")
    train.add_argument("--schedule", help="for --method manual: JSON [[step, tie_map], ...] or a JSON file")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint "
                       "(other options are read from its config.json; --steps may extend the budget)")
    train.add_argument("--force", action="store_true", help="replace a run (finished or not) in --out")
    _add_run_options(train)
    train.set_defaults(func=cmd_train)

    compare = sub.add_parser("compare", help="run several methods with the same data, config, budget and seeds",
                             epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                             description="Runs each method (and seed) into OUT/<method>/seed<seed>; finished runs "
                             "are reused and interrupted ones resumed. Writes comparison.md and comparison.csv. "
                             + PRECEDENCE)
    compare.add_argument("--methods", required=True, help=f"comma-separated, name or name:n_unique ({methods})")
    compare.add_argument("--seeds", help="comma-separated seeds (default: --seed)")
    compare.add_argument("--out", type=Path, required=True, help="output directory")
    _add_run_options(compare)
    compare.set_defaults(func=cmd_compare)

    plot = sub.add_parser("plot-ties", help="write a run's tie-map history as an offline HTML heatmap")
    plot.add_argument("run_dir", type=Path, help="a run directory")
    plot.add_argument("--out", type=Path, help="HTML file (default: RUN_DIR/tie_history.html)")
    plot.set_defaults(func=cmd_plot_ties)

    reproduce = sub.add_parser("reproduce", help="run a YAML grid of experiments through the experiment notebook",
                               description="Expands GRID.yaml (presets x datasets x methods x seeds, with per-cell "
                               "settings) and runs each cell's notebook with papermill into OUT/<cell>/. A failing "
                               "cell is recorded and the rest go on (exit status 1 at the end if any failed); "
                               "finished cells are skipped, so a stopped grid continues where it was. See "
                               "grids/*.yaml and dyntie_core/grid.py.")
    reproduce.add_argument("grid", type=Path, nargs="+", help="grid file(s), e.g. grids/cpu-smoke.yaml; several "
                           "run as one queue into one folder, in the order given")
    reproduce.add_argument("--out", type=Path, required=True, help="results folder")
    reproduce.add_argument("--jobs", type=int, default=1, help="cells run at once; CPU threads are divided "
                           "between them (default: 1)")
    reproduce.add_argument("--only", action="append", metavar="PATTERN", help="run only the cells whose names "
                           "match this shell pattern (repeatable), e.g. 'tinyshakespeare*__shrink-*'")
    reproduce.add_argument("--archive", type=Path, metavar="DIR", help="keep finished cells in DIR, as dyntie "
                           "archive does, each as soon as it finishes; cells finished there and absent from "
                           "--out are copied back first and skipped (a study that spans machines)")
    reproduce.set_defaults(func=cmd_reproduce)

    status = sub.add_parser("status", help="where a grid stands: cells done, training now, stopped (resumable), "
                            "failed or not started, with steps, validation perplexity and time left",
                            description="Reads only what the grid runner and the trainer write, so it is safe "
                            "beside a running grid. A cell whose process died (a session ended) shows as stopped, "
                            "with the step its rerun resumes from.")
    status.add_argument("results", type=Path, help="a results folder written by dyntie reproduce --out")
    status.add_argument("--grid", action="append", type=Path, metavar="GRID", help="also list this grid's cells "
                        "that have not started (repeatable)")
    status.set_defaults(func=cmd_status)

    archive = sub.add_parser("archive", help="copy the small files of a results folder's finished cells (no "
                             "checkpoints) into a folder kept in git, or back into a fresh results folder",
                             description="Copies config, data notes, metrics, tie maps, decisions and summary of "
                             "every finished cell of SOURCE into DEST/<cell>/: enough for dyntie report, dyntie "
                             "status and the study tables, and for dyntie reproduce --out DEST to skip the cell. "
                             "Cells still training or stopped are left out; a cell already in DEST with a "
                             "different result is refused unless --replace.")
    archive.add_argument("source", type=Path, help="a results folder written by dyntie reproduce --out")
    archive.add_argument("dest", type=Path, help="the folder to copy finished cells into")
    archive.add_argument("--only", action="append", metavar="PATTERN", help="only cells whose names match this "
                         "shell pattern (repeatable)")
    archive.add_argument("--replace", action="store_true", help="replace cells in DEST that hold another result")
    archive.set_defaults(func=cmd_archive)

    report = sub.add_parser("report", help="paper-style tables (Markdown + one HTML page) from a results folder")
    report.add_argument("results", type=Path, help="a folder holding run directories at any depth")
    report.add_argument("--out", type=Path, help="where to write report.md and report.html (default: RESULTS)")
    report.set_defaults(func=cmd_report)

    demo = sub.add_parser("demo", help="the offline demo: vanilla vs DLT vs its random-fixed control, "
                          "about 2.5 minutes on 2 cores")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default: runs/demo)")
    demo.add_argument("--seed", type=int, default=1337, help="random seed (default: 1337)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    if torchrun_env() is not None:  # under torchrun, a failing rank's traceback goes into the job's error summary
        from torch.distributed.elastic.multiprocessing.errors import record

        return int(record(_main)(argv))
    return _main(argv)


def _main(argv: list[str] | None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except DistributedError as exc:
        print(f"dyntie: error: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, DataError, CheckpointError, ValueError) as exc:
        print(f"dyntie: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, an unwritable directory: the environment, not the input
        print(f"dyntie: error: {exc}; files written before it are intact (rerun with --resume to continue)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dyntie: interrupted; finished runs and checkpoints are kept (rerun to resume)", file=sys.stderr)
        return 130
    except BaseException as exc:
        # An unexpected error propagates with its traceback, whose frames hold the Trainer and its DDP wrapper.
        # Clear their locals (the traceback keeps file and line) so the wrapper is freed before shutdown()
        # destroys the process group, not at interpreter exit, where gloo can abort and replace exit status 1.
        traceback.clear_frames(exc.__traceback__)
        raise
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
