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
# # Results: paper-style tables from a results folder
#
# Point `results_dir` at any folder of runs (a `dyntie reproduce` output, a `dyntie compare` output, or your own
# run directories at any depth). Runs are grouped by dataset, model family and method, and averaged over seeds.
# The same tables come from `dyntie report DIR`, which also writes one self-contained HTML page.
#
# With `results_dir` empty, the notebook first makes a small example folder (4 blocks of width 32, 20 steps,
# vanilla against a fixed scheme and the DLT agent, 2 seeds each).

# %% tags=["parameters"]
results_dir = ""     # a folder holding run directories; empty: make a small example folder first

# %%
import tempfile

from IPython.display import Image, Markdown, display

from dyntie_core import AgentConfig, MethodConfig, preset_config
from dyntie_core.compare import run_comparison
from dyntie_core.report import collect, markdown, write_report
from dyntie_core.rundir import RunDir
from dyntie_core.staticplots import pareto_png, run_history_png

if not results_dir:
    results_dir = tempfile.mkdtemp(prefix="dyntie-results-")
    example = preset_config("debug", train={"steps": 20, "eval_interval": 10, "eval_tokens": 2048, "batch_size": 4},
                            data={"dataset": "pydoc", "tokenizer": "char"})
    run_comparison(example, [MethodConfig("vanilla"), MethodConfig("cycle-rev", n_unique=2),
                             MethodConfig("dlt", agent=AgentConfig(k_steps=2))], [1, 2], results_dir)

# %% [markdown]
# ## Tables

# %%
rows = collect(results_dir)
display(Markdown(markdown(rows)))
md, page = write_report(results_dir)
print(f"also written: {md.name} and {page.name} in the results folder")

# %% [markdown]
# ## Trainable parameters against perplexity, and how the agents' tie maps evolved

# %%
for dataset, family in dict.fromkeys((r["dataset"], r["family"]) for r in rows):
    group = [r for r in rows if (r["dataset"], r["family"]) == (dataset, family)]
    points = [(r["method"], s["trainable_params"], s["best_val_ppl"]) for r in group for s in r["summaries"]]
    display(Image(data=pareto_png(points, title=f"{dataset}, {family}")))
    for r in group:
        if len(RunDir(r["runs"][0]).read_jsonl(RunDir.TIE_MAPS)) > 1:
            display(Markdown(f"**{r['method']}**, first seed"))
            display(Image(data=run_history_png(r["runs"][0])))
