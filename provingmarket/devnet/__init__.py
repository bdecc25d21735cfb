"""A marketplace on a development chain, used by the demo, the simulation, the benchmarks
and the tests: one stack for all of them.

- chain.py: an anvil node of one's own, funding accounts, sending without waiting, the
  fees each account paid
- proofs.py: the square circuit every development market proves, and real proofs of it
- stack.py: the registry and Groth16 market, the frontends' mechanisms, the deployment
  record, provers that stake and join, requesters that post
- processes.py: the frontends and prover agents as processes, by their command lines,
  watched and stopped by their own pids
- chaos/: the whole market under seeded kills and failing RPC calls (`make chaos`)
"""

from provingmarket.devnet.chain import (
    BASE_FEE,
    ETHER,
    Anvil,
    Spend,
    fees_from_node,
    fees_paid,
    free_port,
    fund,
    send_all,
    send_signed,
    spend_of,
)
from provingmarket.devnet.processes import AGENT, Processes, stop_processes
from provingmarket.devnet.proofs import (
    ADDRESS_INPUT,
    PROVER_INPUT,
    SAMPLE_INPUTS,
    SQUARE,
    STATEMENT,
    default_backend,
    proof_for,
    square_proof,
)
from provingmarket.devnet.stack import (
    FRONTENDS,
    Marketplace,
    Requester,
    Stack,
    deploy_marketplace,
    deploy_stack,
    task_terms,
)

__all__ = [
    "ADDRESS_INPUT",
    "AGENT",
    "BASE_FEE",
    "ETHER",
    "FRONTENDS",
    "PROVER_INPUT",
    "SAMPLE_INPUTS",
    "SQUARE",
    "STATEMENT",
    "Anvil",
    "Marketplace",
    "Processes",
    "Requester",
    "Spend",
    "Stack",
    "default_backend",
    "deploy_marketplace",
    "deploy_stack",
    "fees_from_node",
    "fees_paid",
    "free_port",
    "fund",
    "proof_for",
    "send_all",
    "send_signed",
    "spend_of",
    "square_proof",
    "stop_processes",
    "task_terms",
]
