"""`python -m frontends.orderbook`: the orderbook frontend's process (process.py)."""

from frontends.orderbook.process import main

main()
