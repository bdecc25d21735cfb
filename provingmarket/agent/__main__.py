"""`python -m provingmarket.agent`: the prover agent's process (main.py)."""

from provingmarket.agent.main import main

main()
