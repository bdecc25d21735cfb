"""`python -m frontends.election`: the election frontend's commands (process.py): `run`,
the process, and `verify`."""

from frontends.election.process import main

main()
