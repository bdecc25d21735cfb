"""`python -m frontends.auction`: the auction frontend's process (process.py)."""

from frontends.auction.process import main

main()
