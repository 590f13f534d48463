"""Data-parallel training under torchrun (gloo, 2 CPU processes): ranks agree bit for bit, 2 ranks follow the
1-process trajectory loss by loss, checkpoints move between world sizes, failures end the job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DRIVER = Path(__file__).parent / "helpers" / "ddp_driver.py"
REPO = Path(__file__).resolve().parents[1]


def launch(nproc: int, record: Path, run_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """The driver in this process (nproc 1) or as a 2-rank torchrun job; one torch thread per process."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    head = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  f"--nproc-per-node={nproc}"]
    return subprocess.run([*head, str(DRIVER), str(record), str(run_dir), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def records(record: Path, proc: subprocess.CompletedProcess) -> list[dict]:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted(record.glob("rank*.json"))]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reference: 100 steps of a manual schedule with 4 tie changes, in one process."""
    base = tmp_path_factory.mktemp("single")
    (rec,) = records(base / "rec", launch(1, base / "rec", base / "run"))
    return rec


def close(a: list[float], b: list[float], tol: float = 1e-4) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol * max(1.0, abs(y)) for x, y in zip(a, b, strict=True))


def test_two_ranks_follow_the_one_process_run_loss_by_loss(tmp_path: Path, single: dict) -> None:
    ranks = records(tmp_path / "rec", launch(2, tmp_path / "rec", tmp_path / "run"))
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]  # bit-identical weights, optimizer state, tie map
    assert ranks[0]["maps"] == ranks[1]["maps"] == single["maps"]
    assert len({tuple(m) for m in single["maps"]}) >= 4  # the schedule really changed the map under DDP
    assert close(ranks[0]["losses"], single["losses"])
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the logged loss is the global batch's, on every rank
    # finish() drops the DDP wrapper, whose reducer would otherwise outlive the process group it holds
    assert ranks[0]["wrapper_released"] and ranks[1]["wrapper_released"]
    assert ranks[0]["test_ppl"] == pytest.approx(single["test_ppl"], rel=1e-4)
    # DDP's gradients are views into its all-reduce buckets: the meter still sees one gradient per parameter
    assert ranks[0]["model_state"] == single["model_state"] == pytest.approx(single["predicted"], rel=0.02)
    assert not (tmp_path / "run" / "summary.json").is_file() or json.loads(
        (tmp_path / "run" / "summary.json").read_text())["steps"] == 100


def test_dlt_ranks_stay_bit_identical_through_agent_tie_changes(tmp_path: Path) -> None:
    ranks = records(tmp_path / "rec", launch(2, tmp_path / "rec", tmp_path / "run", "--method", "dlt",
                                             "--steps", "200"))
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert ranks[0]["maps"] == ranks[1]["maps"]
    tie_log = [json.loads(line) for line in (tmp_path / "run" / "tie_maps.jsonl").read_text().splitlines()]
    maps = [tie_log[0]["tie_map"], *ranks[0]["maps"]]
    changes = sum(a != b for a, b in zip(maps, maps[1:]))
    assert changes >= 5, changes
    assert len(tie_log) == changes + 1  # rank 0 alone wrote the log, once per change


@pytest.mark.parametrize(("first", "second"), [(2, 1), (1, 2)])
def test_checkpoint_resumes_on_another_world_size(tmp_path: Path, single: dict, first: int, second: int) -> None:
    run = tmp_path / "run"
    (part1, *_) = records(tmp_path / "a", launch(first, tmp_path / "a", run, "--steps", "50"))
    (part2, *_) = records(tmp_path / "b", launch(second, tmp_path / "b", run, "--steps", "100", "--resume"))
    assert part2["world_size"] == second
    assert close(part1["losses"] + part2["losses"], single["losses"])
    assert part1["maps"] + part2["maps"] == single["maps"]


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = launch(2, tmp_path / "rec", tmp_path / "run", "--fail-rank", "1", "--fail-step", "20", timeout=120)
    assert proc.returncode != 0
    assert time.monotonic() - start < 90
    assert "injected failure on rank 1 at step 20" in proc.stdout + proc.stderr
    assert not (tmp_path / "rec" / "rank0.json").exists()  # rank 0 did not finish as if nothing happened


def test_ranks_that_drift_apart_are_stopped(tmp_path: Path) -> None:
    proc = launch(2, tmp_path / "rec", tmp_path / "run", "--perturb-rank", "1", timeout=120)
    assert proc.returncode != 0
    assert "ranks drifted apart" in proc.stdout + proc.stderr
    assert "at step 25" in proc.stdout + proc.stderr  # caught at the first evaluation after the perturbation


def test_compare_under_torchrun_writes_one_table(tmp_path: Path) -> None:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "dyntie_core.cli", "compare", "--methods", "vanilla,cycle-rev:2", "--out", str(out),
                           "--preset", "debug", "--steps", "30", "--batch-size", "4", "--dataset", "pydoc",
                           "--tokenizer", "char"], env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("| method |") == 1  # rank 0 prints the table, rank 1 stays quiet
    table = (out / "comparison.md").read_text()
    assert "| vanilla | 1 |" in table and "| cycle-rev-2 | 1 |" in table
    for label in ("vanilla", "cycle-rev-2"):
        assert json.loads((out / label / "seed1337" / "summary.json").read_text())["steps"] == 30
