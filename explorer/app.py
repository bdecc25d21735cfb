"""The explorer's web server: server-rendered pages (Jinja2 templates, the project's own SVG
plots, one small script for live updates) and the same data as JSON under /api.

    app = create_app(Explorer("data/mirror.sqlite", deployment, head))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes: `/` overview, `/markets/{id}`, `/tasks` (list and search), `/tasks/{id}`,
`/provers`, `/provers/{address}`, `/mechanisms` (mechanisms and routing), `/events`
(server-sent events: the mirror's cursor, so open pages refresh their content when it
moves), `/healthz`; `/api/...` gives each page's data as JSON (OpenAPI at /openapi.json).
What is not there, or not well formed, is a 404 page saying what and how to search;
nothing a request carries makes the server answer 5xx.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.exceptions import HTTPException as StarletteHTTPException

from explorer.data import STATE_HELP, TASK_STATES, CircuitInfo, Explorer
from explorer.inputs import NotFound, Redirect, market_number, page_number
from provingmarket.market.plots import line_chart

HERE = Path(__file__).resolve().parent
ETHER = 10**18
EVENTS_POLL = 0.5  # seconds between looks at the mirror's cursor for /events
HEARTBEAT = 15.0  # seconds between comments on an idle /events stream


# ------------------------------------------------------------------ rendering helpers


def eth(wei: int | None, digits: int = 6) -> str:
    """Wei as ether, trailing zeros dropped: 10400000000000000 -> "0.0104 ETH"."""
    if wei is None:
        return "–"
    whole, rest = divmod(abs(int(wei)), ETHER)
    frac = f"{rest:018d}"[:digits].rstrip("0")
    sign = "-" if int(wei) < 0 else ""
    if frac:
        return f"{sign}{whole}.{frac} ETH"
    if rest:  # below the digits shown
        return f"{sign}{int(wei):,} wei"
    return f"{sign}{whole} ETH"


def when(ts: int | None) -> str:
    if ts is None:
        return "–"
    try:
        return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return str(ts)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    sign = "-" if s < 0 else ""
    s = abs(s)
    if s < 120:
        return f"{sign}{s} s"
    if s < 7200:
        return f"{sign}{s // 60} min {s % 60} s"
    if s < 2 * 86400:
        return f"{sign}{s // 3600} h {s % 3600 // 60} min"
    return f"{sign}{s // 86400} d {s % 86400 // 3600} h"


def short(value: str | None, keep: int = 6) -> str:
    if not value:
        return "–"
    return value if len(value) <= 2 + 2 * keep else f"{value[: 2 + keep]}…{value[-4:]}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def inline_svg(document: str, label: str) -> Markup:
    """A plot's SVG document (provingmarket/market/plots.py) to inline in a page: named for
    screen readers, scaling to the page's width."""
    body = document.split("?>", 1)[1] if document.startswith("<?xml") else document
    body = body.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" class="plot" ', 1).replace(
        ">", f"><title>{escape(label)}</title>", 1
    )
    return Markup(body)


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(eth=eth, when=when, duration=duration, short=short, percent=percent)
    env.globals.update(states=TASK_STATES, state_help=STATE_HELP)
    return env


# ------------------------------------------------------------------ the app


def create_app(
    explorer: Explorer,
    extra_pages: dict[str, Callable[[Explorer, Request], dict]] | None = None,
) -> FastAPI:
    """The explorer's ASGI app over `explorer`'s data; `extra_pages` are pages built
    beside the core ones (route -> data builder; template `<first segment>.html`)."""
    app = FastAPI(
        title="Proving market explorer",
        description="Markets, tasks, provers and mechanisms of one registry, read from a keeper's mirror.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    app.state.explorer = explorer
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    routes = Routes(explorer, templates())
    app.add_exception_handler(StarletteHTTPException, routes.http_error)  # type: ignore[arg-type]
    html = {"response_class": HTMLResponse, "include_in_schema": False}
    for path, endpoint in (
        ("/", routes.overview),
        ("/markets/{market_id}", routes.market),
        ("/tasks", routes.tasks),
        ("/tasks/{task_id}", routes.task),
        ("/provers", routes.provers),
        ("/provers/{address}", routes.prover),
    ):
        app.add_api_route(path, endpoint, methods=["GET"], **html)
    for path, endpoint in (
        ("/api/overview", routes.api_overview),
        ("/api/markets/{market_id}", routes.api_market),
        ("/api/tasks", routes.api_tasks),
        ("/api/tasks/{task_id}", routes.api_task),
        ("/api/provers", routes.api_provers),
        ("/api/provers/{address}", routes.api_prover),
    ):
        app.add_api_route(path, endpoint, methods=["GET"], responses=API_ERRORS)
    for path, build in (extra_pages or {}).items():
        template = path.strip("/").split("/")[0] + ".html"
        app.add_api_route(path, routes.extra(template, build), methods=["GET"], **html)
        app.add_api_route("/api" + path, routes.extra("", build), methods=["GET"], responses=API_ERRORS)
    app.add_api_route("/events", routes.events, methods=["GET"], include_in_schema=False)
    app.add_api_route("/healthz", routes.healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", routes.readyz, methods=["GET"], include_in_schema=False)
    return app


def _error(description: str) -> dict:
    detail = {"type": "object", "properties": {"detail": {"type": "string"}, "hint": {"type": "string"}}}
    return {
        "description": description,
        "content": {"application/json": {"schema": {**detail, "required": ["detail"]}}},
    }


# What the JSON API answers besides its data, in its OpenAPI description (schemathesis
# checks every answer is described).
API_ERRORS: dict[int | str, dict] = {
    404: _error("Not found, or not well formed: what, and how to search"),
    503: _error("The mirror cannot be read (not there yet, another schema, busy)"),
}


class Routes:
    """The endpoints: each builds its page's data from the explorer and renders it (HTML)
    or returns it (JSON under /api); `NotFound` becomes a 404 page, `Redirect` a 303."""

    def __init__(self, explorer: Explorer, env: Environment):
        self.explorer = explorer
        self.env = env

    # ---------------------------------------------------------- rendering

    def page(self, request: Request, template: str, data: dict, status: int = 200) -> HTMLResponse:
        html = self.env.get_template(template).render(request=request, path=request.url.path, **data)
        return HTMLResponse(html, status_code=status)

    def not_found(self, request: Request, what: str, hint: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": what, "hint": hint}, status_code=404)
        cursor = _safe_cursor(self.explorer)
        return self.page(request, "notfound.html", {"what": what, "hint": hint, "cursor": cursor}, 404)

    def respond(self, request: Request, template: str, build: Callable[[], dict]) -> Response:
        try:
            data = build()
        except Redirect as moved:
            return RedirectResponse(moved.url, status_code=303)
        except NotFound as missing:
            return self.not_found(request, missing.what, missing.hint)
        except (FileNotFoundError, sqlite3.OperationalError) as error:
            return self.unavailable(request, str(error))
        if not template:
            return JSONResponse(_jsonable(data))
        return self.page(request, template, {**data, "cursor": data.get("status", {}).get("cursor")})

    def unavailable(self, request: Request, reason: str) -> Response:
        """The mirror cannot be read (not there yet, another schema, busy): 503 saying so."""
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": reason}, status_code=503)
        return self.page(request, "unavailable.html", {"reason": reason, "cursor": None}, 503)

    async def http_error(self, request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            return self.not_found(
                request,
                f"there is no page at {request.url.path[:120]}",
                "start from the overview or search for a task",
            )
        # its headers kept: a 405 says which methods are allowed (Allow)
        return JSONResponse(
            {"detail": error.detail}, status_code=error.status_code, headers=getattr(error, "headers", None)
        )

    def extra(
        self, template: str, build: Callable[[Explorer, Request], dict]
    ) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            return self.respond(request, template, lambda: build(self.explorer, request))

        return endpoint

    # ---------------------------------------------------------- pages

    def overview(self, request: Request) -> Response:
        return self.respond(request, "overview.html", lambda: _with_plots(self.explorer.overview()))

    def market(self, request: Request, market_id: str, page: str = "1") -> Response:
        return self.respond(
            request, "market.html", lambda: self.explorer.market(market_number(market_id), page_number(page))
        )

    def tasks(
        self, request: Request, q: str = "", state: str = "", market: str = "", page: str = "1"
    ) -> Response:
        return self.respond(
            request, "tasks.html", lambda: self.explorer.tasks(q, state, market, page_number(page))
        )

    def task(self, request: Request, task_id: str) -> Response:
        return self.respond(request, "task.html", lambda: self.explorer.task(task_id))

    def provers(self, request: Request, page: str = "1") -> Response:
        return self.respond(request, "provers.html", lambda: self.explorer.provers(page_number(page)))

    def prover(self, request: Request, address: str, page: str = "1") -> Response:
        return self.respond(request, "prover.html", lambda: self.explorer.prover(address, page_number(page)))

    # ---------------------------------------------------------- JSON

    def api_overview(self, request: Request) -> Response:
        """Markets, tasks per state, proof rates and recent tasks."""
        return self.respond(request, "", self.explorer.overview)

    def api_market(self, request: Request, market_id: str, page: str = "1") -> Response:
        """One market: its terms, circuit, tasks per state and provers (paged)."""
        return self.respond(
            request, "", lambda: self.explorer.market(market_number(market_id), page_number(page))
        )

    def api_tasks(
        self, request: Request, q: str = "", state: str = "", market: str = "", page: str = "1"
    ) -> Response:
        """Tasks, newest first, filtered by id prefix (q), state and market; paged."""
        return self.respond(
            request, "", lambda: self.explorer.tasks(q, state, market, page_number(page), redirect=False)
        )

    def api_task(self, request: Request, task_id: str) -> Response:
        """One task: terms, slots, timeline, proofs and the escrow's fate."""
        return self.respond(request, "", lambda: self.explorer.task(task_id))

    def api_provers(self, request: Request, page: str = "1") -> Response:
        """Provers by stake; paged."""
        return self.respond(request, "", lambda: self.explorer.provers(page_number(page)))

    def api_prover(self, request: Request, address: str, page: str = "1") -> Response:
        """One prover: stake, earnings, memberships, live assignments and history (paged)."""
        return self.respond(request, "", lambda: self.explorer.prover(address, page_number(page)))

    # ---------------------------------------------------------- live

    async def events(self, request: Request) -> StreamingResponse:
        """Server-sent events: `cursor` whenever the mirror's cursor moves. A stream ends
        when the server stops (`app.state.stopping()`), so no open page holds up a stop."""

        stopping = getattr(request.app.state, "stopping", None) or (lambda: False)

        async def stream():
            last, quiet = None, 0.0
            yield "retry: 2000\n\n"
            while not stopping() and not await request.is_disconnected():
                cursor = await asyncio.to_thread(_safe_cursor, self.explorer)
                if cursor != last:
                    last, quiet = cursor, 0.0
                    yield f"event: cursor\ndata: {json.dumps({'cursor': cursor})}\n\n"
                elif quiet >= HEARTBEAT:
                    quiet = 0.0
                    yield ": still here\n\n"
                await asyncio.sleep(EVENTS_POLL)
                quiet += EVENTS_POLL

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    def healthz(self) -> Response:
        """200 once the mirror can be read."""
        cursor = _safe_cursor(self.explorer)
        ok = cursor is not None
        return JSONResponse({"ok": ok, "cursor": cursor}, status_code=200 if ok else 503)

    def readyz(self) -> Response:
        """200 once the whole-history figures of the mirror's cursor are computed (the
        refresher's work, explorer/__main__.py): no page waits for them then."""
        cursor = _safe_cursor(self.explorer)
        ready = cursor is not None and self.explorer.warmed == cursor
        body = {"ready": ready, "cursor": cursor, "warmed": self.explorer.warmed}
        return JSONResponse(body, status_code=200 if ready else 503)


def _safe_cursor(explorer: Explorer) -> int | None:
    try:
        return explorer.cursor()
    except Exception:  # no file yet, or locked for a moment: no cursor to show
        return None


def _with_plots(data: dict) -> dict:
    s = data["series"]
    data["plots"] = {
        "time": inline_svg(
            line_chart(
                "Median time to proof",
                s["x"],
                {"time to proof (s)": s["time"]},
                x_label="minutes since the first proof",
                y_label="seconds",
            ),
            "Median time from posting to proof, over time",
        ),
        "paid": inline_svg(
            line_chart(
                "Median price paid",
                s["x"],
                {"price paid (ETH)": s["paid"]},
                x_label="minutes since the first proof",
                y_label="ETH",
            ),
            "Median price paid per proof, over time",
        ),
    }
    return data


def _jsonable(value: Any) -> Any:
    """Page data as JSON: wei and other big integers as strings where JSON numbers lose
    precision; dataclasses as dicts; plots left out."""
    if isinstance(value, Markup):
        return None
    if isinstance(value, CircuitInfo):
        return {"name": value.name, "proving_system": value.proving_system, "public": list(value.public)}
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if k not in ("plots",)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
