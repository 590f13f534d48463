# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A language-model experiment
#
# One run of any method on any preset and dataset, headless: papermill fills the parameters, this notebook
# trains (or resumes an interrupted run, or reuses a finished one) into `out_dir`, then shows the numbers, the
# loss curves and the tie-map history. All logic lives in `dyntie_core`; this notebook only calls it.
#
# ```bash
# papermill notebooks/experiments/lm.ipynb out.ipynb -k python3 -p preset paper-gpt2-12-cpu -p method dlt \
#     -p seed 1 -p out_dir runs/lm/dlt-1 -y "agent: {k_steps: 4}"
# papermill notebooks/experiments/lm.ipynb out.ipynb -f params.yaml      # the same, from a YAML file
# ```

# %% tags=["parameters"]
preset = "paper-gpt2-12-cpu"  # a name from `dyntie train --help` (the paper's recipes have -cpu twins)
dataset = ""         # empty: the preset's; else pydoc, a local file or directory, or a hub name
method = ""          # empty: the preset's; vanilla, dlt, random, random-fixed, cycle, cycle-rev, ...
n_unique = None      # for the methods that take it
agent = {}           # DLT agent settings, e.g. {"k_steps": 4, "reward": "loss-improvement"}
steps = None         # a step budget, or
episodes = None      # agent episodes, (L - 1) x K steps each (None for both: the preset's)
seed = 1337
device = ""          # empty: the preset's
overrides = {}       # partial config sections, e.g. {"model": {"n_embd": 64}, "train": {"eval_interval": 20}}
threads = 0          # torch threads (0: torch's default); the grid runner divides the cores between cells
out_dir = ""         # the run directory; empty: a new temporary directory

# %%
import json
import tempfile

import torch
from IPython.display import Image, Markdown, display

from dyntie_core import RunDir
from dyntie_core.compare import run_label
from dyntie_core.experiment import as_int, experiment_config, run_or_resume
from dyntie_core.staticplots import run_curves_png, run_history_png

if as_int(threads, "threads"):
    torch.set_num_threads(as_int(threads, "threads"))
torch.manual_seed(0)  # the run seeds itself from `seed`; this only fixes anything imported before
config = experiment_config(preset=preset, dataset=dataset, method=method, n_unique=n_unique, agent=agent,
                           steps=steps, episodes=episodes, seed=seed, device=device, overrides=overrides)
m, t = config.model, config.train
display(Markdown(f"**{run_label(config.method)}** on `{config.data.dataset}` ({config.data.tokenizer}): "
                 f"{m.n_layer} blocks x {m.n_embd}, context {m.block_size}, tie mode {m.tie_mode}; "
                 f"{t.steps} steps of batch {t.batch_size}, lr {t.lr}, seed {t.seed}"))

# %%
out_dir = out_dir or tempfile.mkdtemp(prefix="dyntie-lm-")
summary = run_or_resume(config, out_dir)
keys = ["method", "steps", "best_val_ppl", "test_ppl", "test_selection", "unique_blocks", "trainable_params",
        "vanilla_equivalent_params", "tie_map"]
display(Markdown("| | |\n| --- | --- |\n" + "\n".join(
    f"| {k} | {summary[k]:.3f} |" if isinstance(summary[k], float) else f"| {k} | {summary[k]} |" for k in keys)))
print(json.dumps({k: summary[k] for k in ("steps", "unique_blocks", "trainable_params")}))

# %% [markdown]
# ## Curves and tie-map history

# %%
display(Image(data=run_curves_png(out_dir)))
display(Image(data=run_history_png(out_dir)))
print(f"run directory: {RunDir(out_dir).path}")
