"""`python -m frontends.double_auction`: the double auction frontend's process (process.py)."""

from frontends.double_auction.process import main

main()
