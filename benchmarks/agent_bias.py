"""How many blocks stay independent when the reward says nothing? (METHOD.md section 4 caveats.)

Drives the tie policies with a fake trainer whose reward batch always has the same
cross-entropy, so the reward is a constant: whatever structure appears comes from the
action space and the learning rule, not from the data.

    python benchmarks/agent_bias.py --n-layer 12 --sweeps 300 --seed 0
"""

from __future__ import annotations

import argparse
import statistics
import sys

from dyntie_core import AgentConfig, MethodConfig
from dyntie_core.policies import make_policy
from dyntie_core.tying import unique_blocks


class ConstantHost:
    def __init__(self, n_layer: int, ce: float) -> None:
        self.step, self.tie_map, self.ce = 0, tuple([0] * n_layer), ce

    def batch_loss(self, split, generator) -> float:  # noqa: ANN001
        return self.ce

    def emit(self, event) -> None:  # noqa: ANN001
        pass


def run(method: str, n_layer: int, sweeps: int, seed: int, ce: float) -> list[int]:
    policy = make_policy(MethodConfig(method, agent=AgentConfig(k_steps=1)), n_layer, seed)
    host = ConstantHost(n_layer, ce)
    counts = []
    for _ in range(sweeps):
        for _ in range(n_layer - 1):
            new = policy.on_step(host.step, host)
            if new is not None:
                host.tie_map = tuple(new)
            host.step += 1
        counts.append(unique_blocks(host.tie_map))
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-layer", type=int, default=12)
    p.add_argument("--sweeps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ce", type=float, default=5.0, help="constant reward-batch cross-entropy (5.0: clipped to -10)")
    args = p.parse_args()
    h = sum(1 / k for k in range(1, args.n_layer + 1))
    print(f"L = {args.n_layer}, {args.sweeps} sweeps, constant CE {args.ce}, seed {args.seed}; H_L = {h:.3f}")
    for method in ("random", "dlt"):
        counts = run(method, args.n_layer, args.sweeps, args.seed, args.ce)
        last = counts[-50:]
        print(f"{method:>6}: independent blocks after each sweep: mean {statistics.fmean(counts):.2f} (all sweeps), "
              f"{statistics.fmean(last):.2f} (last 50), min {min(counts)}, max {max(counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
