import json

from dyntie_core.cli import main
from dyntie_core.plots import pareto_html, tie_history

TINY = ["--n-layer", "4", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
        "--eval-interval", "5", "--eval-tokens", "1024", "--tokenizer", "char"]


def _summary(params, ppl, seed):
    return {"trainable_params": params, "best_val_ppl": ppl, "seed": seed, "unique_blocks": 2, "test_ppl": ppl + 1}


def test_pareto_html_is_offline_and_has_one_point_per_run(tmp_path):
    path = pareto_html([("a", _summary(10, 5.0, 1)), ("a", _summary(10, 6.0, 2)), ("b", _summary(4, 7.0, 1))],
                       tmp_path / "p.html")
    html = path.read_text()
    assert 'src="https://cdn' not in html and len(html) > 1_000_000  # plotly.js embedded
    assert '"name":"a"' in html and '"name":"b"' in html
    assert '"y":[5.0,6.0]' in html


def test_tie_history_from_a_manual_run(tmp_path):
    out = tmp_path / "run"
    schedule = json.dumps([[0, [0, 0, 0, 0]], [3, [0, 1, 1, 2]], [6, [0, 1, 2, 3]]])
    assert main(["train", "--out", str(out), "--method", "manual", "--schedule", schedule, "--steps", "8",
                 *TINY]) == 0
    steps, roots = tie_history(out)
    assert steps == [0, 3, 6]
    assert roots == [[0, 0, 0], [0, 1, 1], [0, 1, 2], [0, 1, 3]]  # block 3 ran block 2's root (1) via the chain
    assert main(["plot-ties", str(out)]) == 0
    assert (out / "tie_history.html").stat().st_size > 1_000_000
    assert main(["plot-ties", str(tmp_path)]) == 2


def test_agent_options_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "dlt"
    assert main(["train", "--out", str(out), "--method", "dlt", "--agent", "k_steps=2", "--agent",
                 "reward=loss-improvement", "--steps", "8", *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["method"]["agent"]["k_steps"] == 2 and config["method"]["agent"]["reward"] == "loss-improvement"
    rows = [json.loads(x) for x in (out / "decisions.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 2, 4]
    assert main(["train", "--out", str(tmp_path / "bad"), "--method", "dlt", "--agent", "epsilon=0.3",
                 "--steps", "2", *TINY]) == 2
    assert "unknown AgentConfig field" in capsys.readouterr().err
