"""The marketplace end to end on a local chain this command starts and stops (`make demo`).

1. anvil starts on a free loopback port, mining a block a second like a real chain, with
   a base fee (1 gwei at the start, then moving with demand per EIP-1559): every
   transaction pays its fee, as on a real chain.
2. The registry, the square circuit's Groth16 verifier and its market are deployed, and
   an "orderbook" mechanism is registered with the frontend's account.
3. Three provers stake and join the market with different asks and capacities.
4. Separate processes start, each as a user starts them: the orderbook frontend
   (`python -m frontends.orderbook.process`) and one prover agent per prover
   (`python -m provingmarket.agent`). Their JSON logs go to reports/demo/.
   The explorer (`python -m explorer`) starts over the orderbook frontend's mirror; its URL
   is printed: open it to watch the market while the demo runs (the demo's progress and,
   at the end, its summary are on its front page).
5. A requester posts a stream of tasks with different maximum rewards, in bursts. The frontend
   matches them with the asks (price, then time), the agents prove them with real
   Groth16 proofs (groth16py, in-process) and the registry checks each proof on chain.
6. Midway, carol's agent is killed (SIGKILL) while it holds an assignment: her deadline
   passes, the frontend slashes her and the slot goes to another prover. Once she is
   slashed her agent is started again and picks up where it left off.
7. Act two: the same provers price their work (a cost model: proving time, gas, the
   collateral at risk) and serve tasks through two more mechanisms: a sealed-bid
   second-price auction run by the auction frontend (`python -m frontends.auction.process`,
   an HTTP API the agents bid on) and the registry's reverse-Dutch auction, whose price
   rises until an agent finds it worth locking.
8. When every task is proven or refunded, a summary: tasks proven, time from posting to
   proof (median and p95), prices paid against the maxima, assignments and earnings per
   prover, slashes, a comparison per mechanism, and the fees each role paid (gas used
   times the effective gas price, from the receipts). Every process started is stopped by
   its pid; the exit code is 0 only if no task was lost and every process stopped cleanly.

The circuit's keys come from a single-party setup: for demos only (circuits/README.md).
"""

from __future__ import annotations

import click

# `ape run` loads every script to list its commands: what the demo needs (the devnet, the
# explorer's report reader, eth-account) is loaded only when it runs (scripts/_demo.py).


@click.command()
@click.option(
    "--explorer-port", default=0, type=click.IntRange(0, 65535), help="The explorer's port (0: a free one)."
)
@click.option(
    "--stay", is_flag=True, help="After the summary, keep the chain and the explorer up until Ctrl-C."
)
def cli(explorer_port, stay):
    """Run the marketplace end to end on a local chain of its own, with the explorer."""
    from scripts._demo import main

    main(explorer_port, stay)
