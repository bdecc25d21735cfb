"""`python -m provingmarket.agent`: the prover agent (placeholder until the agent's branch merges)."""

from provingmarket.agent.main import main

main()
