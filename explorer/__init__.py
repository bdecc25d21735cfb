"""The market explorer: web pages where requesters, provers and operators see the market
(markets, tasks, provers, mechanisms and routing), read from a keeper's mirror.

- `data.py`: the pages' data from the mirror, through a read-only connection of its own.
- `routing.py`: the mechanisms and routing page (QoS per mechanism and persona, the
  router's choices, the simulation's last report).
- `app.py`: the FastAPI app: server-rendered pages, JSON under /api, live updates by
  server-sent events.
- `__main__.py`: `python -m explorer` (and `ape run explorer`): the command line.
"""
