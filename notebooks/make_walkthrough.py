"""Writes notebooks/01_walkthrough.ipynb (stored without outputs). Edit here, then run this script."""

from pathlib import Path

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell

cells = [
    md("# Dynamic Layer Tying: a walkthrough\n\n"
       "A transformer with L blocks; every K steps a policy decides, block by block, whether a block trains its "
       "own weights or runs an earlier block's. This notebook shows what that means, what it saves, and then "
       "trains a small model live with the RL agent, ending with a comparison against vanilla training.\n\n"
       "Everything runs offline on CPU, on the text of Python's own documentation."),
    code("# Parameters (papermill injects overrides below this cell)\n"
         "steps = 400            # training steps for each run\n"
         "n_layer = 6            # transformer blocks\n"
         "n_embd = 64            # width\n"
         "method = \"dlt\"         # dlt (the agent), random, cycle, all-shared, ...\n"
         "dataset = \"pydoc\"      # or a local .txt file / directory\n"
         "out_dir = \"runs/walkthrough\"\n"
         "interactive = True     # False: headless (papermill, nbconvert) with static figures\n"
         "seed = 1337"),
    md("## 1. A tie map\n\n`tie[i] == i`: block i is independent. `tie[i] == j < i`: block i runs block j's "
       "weights. Below, the `cycle-rev` scheme for 6 blocks and 2 unique blocks (ABBA-like): row = block, dark "
       "cell = the block whose weights it runs; the diagonal means independent."),
    code("import json\n"
         "from pathlib import Path\n\n"
         "from IPython.display import HTML, Markdown, display\n\n"
         "from dyntie_core import (DataConfig, GPTConfig, MethodConfig, RunConfig, TiedGPT, TrainConfig,\n"
         "                         count_parameters)\n"
         "from dyntie_core.compare import against, markdown_table\n"
         "from dyntie_core.loop import Trainer\n"
         "from dyntie_core.memory import format_bytes, predict_memory\n"
         "from dyntie_core.schemes import make_tie_map\n"
         "from widgets import Dashboard, tie_map_figure\n\n"
         "example = make_tie_map(\"cycle-rev\", 6, 2)\n"
         "fig = tie_map_figure(example, title=f\"cycle-rev, 2 unique: {list(example)}\")\n"
         "display(HTML(fig.to_html(full_html=False, include_plotlyjs=True)))"),
    md("## 2. What tying saves\n\nA tied block owns no tensors: no weights, no gradients, no optimizer state. "
       "Activations do not shrink: every position still runs forward and backward."),
    code("shape = GPTConfig(n_layer=n_layer, n_head=4, n_embd=n_embd, block_size=64, vocab_size=256)\n"
         "rows = [\"| map | unique blocks | trainable params | model-state memory (params + grads + AdamW) |\",\n"
         "        \"| --- | --- | --- | --- |\"]\n"
         "for name, n_unique in [(\"vanilla\", None), (\"cycle\", 3), (\"cycle-rev\", 2), (\"all-shared\", None)]:\n"
         "    tie_map = make_tie_map(name, n_layer, n_unique)\n"
         "    counts = count_parameters(TiedGPT(shape, tie_map))\n"
         "    memory = predict_memory(shape, tie_map)\n"
         "    rows.append(f\"| {name} {list(tie_map)} | {counts['unique_blocks']} | {counts['trainable']:,} | \"\n"
         "                f\"{format_bytes(memory.model_state)} |\")\n"
         "display(Markdown(\"\\n\".join(rows)))"),
    md("## 3. Live training with the agent\n\nThe dashboard shows the current tie map, its history, the loss "
       "curves, memory and the agent's latest decisions. Pause, resume and stop at any time; pick a block and a "
       "target (or click a heatmap cell) to force a tie. Training runs in a background thread, so the page stays "
       "responsive."),
    code("config = RunConfig(\n"
         "    model=GPTConfig(n_layer=n_layer, n_head=4, n_embd=n_embd, block_size=64),\n"
         "    train=TrainConfig(steps=steps, batch_size=8, lr=2e-3, eval_interval=max(1, steps // 8),\n"
         "                      eval_tokens=4096, seed=seed),\n"
         "    data=DataConfig(dataset=dataset, tokenizer=\"char\"),\n"
         "    method=MethodConfig(name=method),\n"
         ")\n"
         "trainer = Trainer(config, run_dir=Path(out_dir) / method)\n"
         "dash = Dashboard(trainer, live=interactive)\n"
         "if interactive:\n"
         "    dash.ui.add_class(\"dyntie-dashboard\")\n"
         "    dash.show()\n"
         "    dash.start()\n"
         "else:\n"
         "    summary = dash.run_to_end()"),
    md("## 4. Against vanilla\n\nThe same model, data, steps and seed with every block independent. (In a live "
       "session the table appears here when training ends.)"),
    code("def compare(summary):\n"
         "    rows = against(trainer, summary, [MethodConfig(\"vanilla\")], out_dir)\n"
         "    Path(out_dir, \"walkthrough_results.json\").write_text(json.dumps(rows, indent=2))\n"
         "    return Markdown(markdown_table(rows))\n\n"
         "if interactive:\n"
         "    import ipywidgets\n"
         "    table = ipywidgets.Output()\n"
         "    display(table)\n"
         "    dash.run.when_done(lambda s: table.append_display_data(compare(s)))\n"
         "else:\n"
         "    display(compare(summary))"),
]
cells[1].metadata["tags"] = ["parameters"]
nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
nbf.write(nb, Path(__file__).with_name("01_walkthrough.ipynb"))
