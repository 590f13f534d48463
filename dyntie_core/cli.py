"""The ``dyntie`` command: train one run, compare methods, or run the offline demo."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError
from .config import ConfigError, DataConfig, GPTConfig, MethodConfig, RunConfig, TrainConfig
from .data import DataError
from .policies import available_methods

# (flag, section, field, type, help)
MODEL_OPTS = [
    ("--n-layer", "model", "n_layer", int, "number of transformer blocks L"),
    ("--n-head", "model", "n_head", int, "attention heads per block"),
    ("--n-embd", "model", "n_embd", int, "model width"),
    ("--block-size", "model", "block_size", int, "context length in tokens"),
    ("--dropout", "model", "dropout", float, "dropout probability"),
    ("--tie-mode", "model", "tie_mode", str, "follow: tied positions run the root's weights as constants (the "
     "paper's code); share: gradients from all positions are summed into the root (ALBERT-style)"),
]
TRAIN_OPTS = [
    ("--steps", "train", "steps", int, "optimizer steps"),
    ("--batch-size", "train", "batch_size", int, "sequences per step"),
    ("--lr", "train", "lr", float, "peak AdamW learning rate"),
    ("--min-lr", "train", "min_lr", float, "final learning rate of the cosine schedule"),
    ("--lr-schedule", "train", "lr_schedule", str, "constant or cosine"),
    ("--warmup-steps", "train", "warmup_steps", int, "linear warmup steps"),
    ("--weight-decay", "train", "weight_decay", float, "AdamW weight decay (matrices only)"),
    ("--beta2", "train", "beta2", float, "AdamW beta2"),
    ("--grad-clip", "train", "grad_clip", float, "gradient-norm clip (0 disables)"),
    ("--eval-interval", "train", "eval_interval", int, "steps between validation evaluations"),
    ("--eval-tokens", "train", "eval_tokens", int, "validation tokens per evaluation (contiguous windows)"),
    ("--checkpoint-interval", "train", "checkpoint_interval", int, "steps between periodic checkpoints (0: only "
     "best and last)"),
    ("--seed", "train", "seed", int, "random seed (model init, batches, dropout, policies)"),
    ("--device", "train", "device", str, "torch device, e.g. cpu or cuda"),
]
DATA_OPTS = [
    ("--dataset", "data", "dataset", str, "pydoc (offline default), a .txt file, a directory with train/valid/test "
     "files, or a hub name (wikitext-2, wikitext-103, lambada, lm1b, tiny-shakespeare)"),
    ("--tokenizer", "data", "tokenizer", str, "char, bpe (byte-level BPE trained on the training split) or gpt2"),
    ("--vocab-size", "data", "bpe_vocab_size", int, "BPE vocabulary size"),
    ("--tokenizer-path", "data", "tokenizer_path", str, "local GPT-2 tokenizer.json (for --tokenizer gpt2)"),
    ("--cache-dir", "data", "cache_dir", str, "where trained tokenizers are cached"),
]
ALL_OPTS = MODEL_OPTS + TRAIN_OPTS + DATA_OPTS
SECTION_CLASSES = {"model": GPTConfig, "train": TrainConfig, "data": DataConfig}


def _defaults(section: str, name: str) -> Any:
    return getattr(SECTION_CLASSES[section](), name)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="a config.json (e.g. from a run directory) to start from; "
                   "options given on the command line override it")
    p.add_argument("--preset", help="model shape preset: " + ", ".join(
        ["debug", "small", "nanogpt-shakespeare-cpu", "gpt2", "paper-gpt2-48", "paper-gpt2-12", "bert-base"]))
    for title, opts in (("model", MODEL_OPTS), ("training", TRAIN_OPTS), ("data", DATA_OPTS)):
        group = p.add_argument_group(title)
        for flag, section, name, typ, text in opts:
            group.add_argument(flag, type=typ, default=None,
                               help=f"{text} (default: {_defaults(section, name)})")


def build_config(args: argparse.Namespace) -> RunConfig:
    """Dataclass defaults <- preset <- --config file <- explicit command-line options."""
    config = RunConfig.from_json_file(args.config) if args.config else RunConfig()
    if args.preset:
        config = config.replace(model=GPTConfig.from_name(args.preset))
    sections: dict[str, dict[str, Any]] = {s: {} for s in SECTION_CLASSES}
    for flag, section, name, _typ, _text in ALL_OPTS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            sections[section][name] = value
    return config.replace(**{s: dataclasses.replace(getattr(config, s), **kw) for s, kw in sections.items()})


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


def _parse_agent_options(items: list[str] | None) -> dict[str, Any]:
    """``["k_steps=4", "reward=loss-improvement"]`` -> options dict (values parsed as JSON when they can be)."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--agent expects KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if options:
        from .agent import AgentConfig

        AgentConfig.from_dict(options)  # reject unknown keys and bad values now, not mid-run
    return options


def cmd_train(args: argparse.Namespace) -> int:
    from .loop import Trainer
    from .progress import ProgressBar

    if args.resume:
        trainer = Trainer.resume(args.out, steps=args.steps)
    else:
        config = build_config(args)
        method = MethodConfig(name=args.method or config.method.name,
                              n_unique=args.n_unique if args.n_unique is not None else config.method.n_unique,
                              schedule=_parse_schedule(args.schedule) if args.schedule else config.method.schedule,
                              options=_parse_agent_options(args.agent) or config.method.options)
        config = config.replace(method=method)
        if args.out.exists() and (args.out / "summary.json").exists() and not args.force:
            raise ConfigError(f"{args.out} already holds a finished run; use --force to overwrite or --resume")
        trainer = Trainer(config, run_dir=args.out)
    for notice in trainer.notices:
        print(f"note: {notice}", file=sys.stderr)
    trainer.subscribe(ProgressBar(trainer.config.train.steps, initial=trainer.step, desc=trainer.config.method.name))
    with graceful_interrupt(trainer):
        summary = trainer.run()
    print(json.dumps({k: summary[k] for k in ("method", "steps", "best_val_ppl", "test_ppl", "trainable_params",
                                                "unique_blocks", "tie_map", "tokens_per_s")}, indent=2))
    print(f"run directory: {args.out}")
    return 0


def _compare(config: RunConfig, methods_spec: str, n_unique: int | None, seeds: list[int], out: Path,
             agent_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from .compare import markdown_table, parse_methods, run_comparison
    from .progress import ProgressBar

    methods = parse_methods(methods_spec, n_unique)
    if agent_options:
        methods = [dataclasses.replace(m, options=dict(agent_options)) if m.name in ("dlt", "random") else m
                   for m in methods]

    def attach(trainer: Any, label: str) -> None:
        if interrupt.hit:
            raise KeyboardInterrupt  # do not start the next run after a Ctrl-C
        for notice in trainer.notices:
            print(f"note: {notice}", file=sys.stderr)
        trainer.subscribe(ProgressBar(trainer.config.train.steps, initial=trainer.step, desc=label))
        interrupt.trainer = trainer

    interrupt = graceful_interrupt(None)
    with interrupt:
        rows = run_comparison(config, methods, seeds, out, on_trainer=attach)
    print(markdown_table(rows))
    print(f"tables: {out / 'comparison.md'}, {out / 'comparison.csv'}; plot: {out / 'pareto.html'}")
    return rows


def cmd_compare(args: argparse.Namespace) -> int:
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [build_config(args).train.seed]
    _compare(build_config(args), args.methods, args.n_unique, seeds, args.out, _parse_agent_options(args.agent))
    return 0


def cmd_plot_ties(args: argparse.Namespace) -> int:
    from .plots import tie_history_html

    try:
        path = tie_history_html(args.run_dir, args.out)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    print(f"tie-map history: {path}")
    return 0


def demo_config() -> RunConfig:
    """About 2.5 minutes on 2 CPU cores: 6 blocks of width 128 on Python's own documentation."""
    return RunConfig(
        model=GPTConfig(n_layer=6, n_head=4, n_embd=128, block_size=64, dropout=0.0),
        train=TrainConfig(steps=480, batch_size=16, lr=2e-3, min_lr=2e-4, lr_schedule="cosine", warmup_steps=50,
                          eval_interval=80, eval_tokens=8192, seed=1337),
        data=DataConfig(dataset="pydoc", tokenizer="bpe", bpe_vocab_size=2048),
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from .compare import markdown_table
    from .plots import tie_history_html

    print("dyntie demo: vanilla vs the DLT agent (paper preset, K=4) vs a random fixed map with the agent's final "
          "number of unique blocks, on Python's bundled docs; offline, CPU.", file=sys.stderr)
    rows = _compare(demo_config(), "vanilla,dlt", None, [args.seed], args.out)
    n_unique = round(next(r["unique_blocks"] for r in rows if r["method"] == "dlt"))
    rows += _compare(demo_config(), f"random-fixed:{n_unique}", None, [args.seed], args.out / "control")
    (args.out / "demo.md").write_text(markdown_table(rows), encoding="utf-8")
    print("\nAll three, same data, model, steps and seed:\n" + markdown_table(rows))
    print(f"tie-map history of the agent: {tie_history_html(args.out / 'dlt' / f'seed{args.seed}')}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dyntie", description="Dynamic Layer Tying workbench: train GPT models "
                                     "whose blocks are tied by fixed schemes, schedules or an RL agent.")
    sub = parser.add_subparsers(dest="command", required=True)
    methods = ", ".join(available_methods())

    train = sub.add_parser("train", help="train one run into a run directory",
                           description="Train one model; writes config.json, metrics.jsonl, tie_maps.jsonl, "
                           "summary.json and checkpoints/ into --out.")
    train.add_argument("--out", type=Path, required=True, help="run directory")
    train.add_argument("--method", help=f"tie policy: {methods} (default: vanilla)")
    train.add_argument("--n-unique", type=int, help="unique blocks for sequence, cycle, cycle-rev, random-fixed")
    train.add_argument("--schedule", help="for --method manual: JSON [[step, tie_map], ...] or a JSON file")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint "
                       "(other options are read from its config.json; --steps may extend the budget)")
    train.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    train.add_argument("--agent", action="append", metavar="KEY=VALUE", help="agent option for dlt/random, "
                       "repeatable (e.g. k_steps=4, reward=loss-improvement, reward_split=valid, param_penalty=0.5, "
                       "replay_size=1000); defaults are the paper preset")
    _add_run_options(train)
    train.set_defaults(func=cmd_train)

    compare = sub.add_parser("compare", help="run several methods with the same data, config, budget and seeds",
                             description="Runs each method (and seed) into OUT/<method>/seed<seed>; finished runs "
                             "are reused and interrupted ones resumed. Writes comparison.md and comparison.csv.")
    compare.add_argument("--methods", required=True, help=f"comma-separated, name or name:n_unique ({methods})")
    compare.add_argument("--n-unique", type=int, help="default unique blocks for schemes that need it")
    compare.add_argument("--seeds", help="comma-separated seeds (default: --seed)")
    compare.add_argument("--out", type=Path, required=True, help="output directory")
    compare.add_argument("--agent", action="append", metavar="KEY=VALUE", help="agent option applied to dlt and "
                         "random runs, repeatable")
    _add_run_options(compare)
    compare.set_defaults(func=cmd_compare)

    plot = sub.add_parser("plot-ties", help="write a run's tie-map history as an offline HTML heatmap")
    plot.add_argument("run_dir", type=Path, help="a run directory")
    plot.add_argument("--out", type=Path, help="HTML file (default: RUN_DIR/tie_history.html)")
    plot.set_defaults(func=cmd_plot_ties)

    demo = sub.add_parser("demo", help="the offline demo: vanilla vs DLT vs its random-fixed control, "
                          "about 2.5 minutes on 2 cores")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default: runs/demo)")
    demo.add_argument("--seed", type=int, default=1337, help="random seed (default: 1337)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, DataError, CheckpointError, ValueError) as exc:
        print(f"dyntie: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dyntie: interrupted; finished runs and checkpoints are kept (rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
