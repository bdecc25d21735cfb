"""No input makes the explorer answer 5xx, and an unknown or malformed id gets a 404 page
saying what was not found and how to search.

Against a live explorer (its own process, `python -m explorer --mirror FILE --port 0`)
over a mirror of 300 tasks and 50 provers filled through the mirror's own projection
(benches/mirror_filler.py): schemathesis over its OpenAPI description, a hypothesis fuzz
of the page routes (ids, prefixes, addresses, market and page numbers, junk query
strings, unicode), and the cases a person would try by hand.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benches.explorer_bench import Explorer, running_explorer
from benches.mirror_filler import Filled, fill_mirror
from tests.factories import schemathesis

SEARCH_FORM = 'role="search"'


@pytest.fixture(scope="module")
def filled_explorer(tmp_path_factory) -> tuple[Filled, Explorer]:
    """A filled mirror and the explorer serving it, for the module; stopped by its pid."""
    folder = tmp_path_factory.mktemp("explorer-fuzz")
    filled = fill_mirror(folder / "mirror.sqlite", tasks=300, provers=50, markets=3, seed=7)
    with running_explorer(filled.path) as explorer:
        yield filled, explorer
        assert explorer.process.poll() is None, "the explorer exited during the tests"


def get(explorer: Explorer, path: str) -> tuple[int, str, dict[str, str]]:
    """GET `path` as given (already quoted), redirects not followed."""
    connection = explorer.connection(timeout=20)
    try:
        connection.request("GET", path, headers={"Accept": "text/html"})
        answer = connection.getresponse()
        body = answer.read().decode("utf-8", "replace")
        return answer.status, body, {k.lower(): v for k, v in answer.getheaders()}
    finally:
        connection.close()


def assert_not_found_page(status: int, body: str, what: str) -> None:
    """A 404 HTML page naming what was not found and showing how to search."""
    assert status == 404, (status, body[:500])
    text = body.lower()
    assert "not found" in text or "no task" in text or "no prover" in text or "no market" in text, body[
        :2_000
    ]
    assert what.lower() in text, f"the 404 page does not name {what!r}: {body[:2_000]}"
    assert SEARCH_FORM in body and "search" in text, "the 404 page shows no search form"


# ------------------------------------------------------------------ schemathesis


def test_schemathesis__the_json_api_never_answers_5xx__and_answers_as_its_openapi_says(
    filled_explorer, tmp_path
):
    _, explorer = filled_explorer
    status, body, _ = get(explorer, "/openapi.json")
    assert status == 200 and json.loads(body)["paths"], "the explorer serves no OpenAPI description"
    schemathesis(
        f"{explorer.url.rstrip('/')}/openapi.json",
        tmp_path,
        "--exclude-path",
        "/events",  # server-sent events: a stream that does not end
        examples=25,
        seconds=20,
    )
    assert explorer.process.poll() is None


# ------------------------------------------------------------------ a fuzz of the pages

HEX = "0123456789abcdefABCDEF"
JUNK = st.text(min_size=0, max_size=80)  # any unicode, control characters and NUL included
NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from(["0", "-0", "1e9", "0x10", "NaN", "inf", " 1", "1 ", "١٢", "9" * 400]),
    JUNK,
)


@st.composite
def task_ids(draw, real: list[str]) -> str:
    """Whole ids, prefixes (of real ids or not), wrong lengths and junk."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.sampled_from(real))
    if kind == 1:
        return draw(st.sampled_from(real))[: draw(st.integers(0, 66))]
    if kind == 2:
        return "0x" + draw(st.text(alphabet=HEX, min_size=0, max_size=80))
    if kind == 3:
        return draw(st.text(alphabet=HEX, min_size=1, max_size=80))
    if kind == 4:
        return draw(st.sampled_from(real)).upper()
    return draw(JUNK)


@st.composite
def addresses(draw, real: list[str]) -> str:
    """Provers' addresses, checksummed or not, cut short, other hex and junk."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.sampled_from(real))
    if kind == 1:
        return draw(st.sampled_from(real)).lower()
    if kind == 2:
        return "0x" + draw(st.text(alphabet=HEX, min_size=0, max_size=50))
    if kind == 3:
        return draw(st.sampled_from(real))[: draw(st.integers(0, 41))]
    return draw(JUNK)


def segment(value: str) -> str:
    return quote(value, safe="")


def query(**values: str | None) -> str:
    return urlencode({k: v for k, v in values.items() if v is not None})


@st.composite
def page_requests(draw, filled: Filled) -> tuple[str, str]:
    """(route, path) for a page or API route with drawn ids and query strings."""
    optional = st.none() | NUMBERS
    route = draw(
        st.sampled_from(
            [
                *("task", "prover", "market", "tasks", "provers", "mechanisms", "overview", "other"),
                *("api-task", "api-prover", "api-market", "api-tasks", "api-overview"),
            ]
        )
    )
    junk = draw(st.none() | st.dictionaries(JUNK, JUNK, max_size=3).map(lambda d: urlencode(d)))
    tail = f"?{junk}" if junk else ""
    if route in ("task", "api-task"):
        path = ("/api" if route == "api-task" else "") + "/tasks/" + segment(draw(task_ids(filled.tasks)))
    elif route in ("prover", "api-prover"):
        path = (
            ("/api" if route == "api-prover" else "") + "/provers/" + segment(draw(addresses(filled.provers)))
        )
    elif route in ("market", "api-market"):
        path = ("/api" if route == "api-market" else "") + "/markets/" + segment(draw(NUMBERS))
    elif route in ("tasks", "api-tasks"):
        state = draw(st.none() | st.sampled_from(["open", "assigned", "proven", "closed", ""]) | JUNK)
        q = draw(st.none() | task_ids(filled.tasks))
        path = ("/api" if route == "api-tasks" else "") + "/tasks"
        tail = "?" + query(q=q, state=state, market=draw(optional), page=draw(optional))
    elif route == "provers":
        path, tail = "/provers", "?" + query(page=draw(optional))
    elif route == "mechanisms":
        path = "/mechanisms"
    elif route == "overview":
        path = "/"
    elif route == "api-overview":
        path = "/api/overview"
    else:
        path = "/" + "/".join(segment(s) for s in draw(st.lists(JUNK, min_size=1, max_size=3)))
    return route, path + tail


def test_fuzz_of_the_pages__no_input_answers_5xx__unknown_ids_get_a_404_saying_so(filled_explorer):
    filled, explorer = filled_explorer

    @settings(
        max_examples=250,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(page_requests(filled))
    def fuzz(request: tuple[str, str]) -> None:
        route, path = request
        status, body, headers = get(explorer, path)
        assert status < 500, f"GET {path} answered {status}: {body[:1_000]}"
        assert status in (200, 303, 307, 308, 400, 404, 405, 422), f"GET {path} answered {status}"
        if route in ("task", "prover", "market") and status == 404:
            assert SEARCH_FORM in body, f"GET {path}: a 404 page without the search form"
        if route.startswith("api-") and status == 404:
            assert "detail" in json.loads(body), f"GET {path}: a JSON 404 without a detail"
        if status in (303, 307, 308):
            assert headers.get("location"), f"GET {path}: a redirect with no Location"

    fuzz()
    assert explorer.process.poll() is None


# ------------------------------------------------------------------ what a person tries


def test_unknown_task_id__404_page_names_the_id_and_how_to_search(filled_explorer):
    filled, explorer = filled_explorer
    unknown = "0x" + "0" * 63 + "1"
    assert not any(t == unknown for t in filled.tasks)
    status, body, _ = get(explorer, f"/tasks/{unknown}")
    assert_not_found_page(status, body, unknown)


def test_malformed_task_id__404_page_says_so(filled_explorer):
    _, explorer = filled_explorer
    status, body, _ = get(explorer, "/tasks/" + segment("not-a-task<script>"))
    assert_not_found_page(status, body, "not-a-task")
    assert "<script>" not in body  # shown escaped, never as markup


def test_unknown_prover__404_page_names_the_address(filled_explorer):
    filled, explorer = filled_explorer
    unknown = to_checksum_address("0x" + "12" * 20)
    assert unknown not in filled.provers
    status, body, _ = get(explorer, f"/provers/{unknown}")
    assert_not_found_page(status, body, unknown)


def test_prover_address_not_checksummed__the_prover_page_all_the_same(filled_explorer):
    filled, explorer = filled_explorer
    prover = filled.busiest_prover
    status, body, headers = get(explorer, f"/provers/{prover.lower()}")
    if status in (301, 302, 303, 307, 308):  # sent to the checksummed address
        assert headers["location"].endswith(f"/provers/{prover}")
        status, body, _ = get(explorer, f"/provers/{prover}")
    assert status == 200, body[:1_000]
    assert prover in body


def test_market_999__404_page_names_the_market(filled_explorer):
    _, explorer = filled_explorer
    status, body, _ = get(explorer, "/markets/999")
    assert_not_found_page(status, body, "999")
    status, body, _ = get(explorer, "/api/markets/999")
    assert status == 404 and "999" in json.loads(body)["detail"]


@pytest.mark.parametrize("page", ["-1", str(10**30), "abc", ""])
def test_task_list_page_out_of_range_or_not_a_number__never_5xx(filled_explorer, page):
    _, explorer = filled_explorer
    for path in (f"/tasks?page={page}", f"/provers?page={page}", f"/api/tasks?page={page}"):
        status, body, _ = get(explorer, path)
        assert status in (200, 400, 404, 422), f"GET {path} answered {status}: {body[:1_000]}"


def test_search_by_prefix__a_unique_prefix_goes_to_the_task(filled_explorer):
    filled, explorer = filled_explorer
    task = filled.longest_task
    status, _, headers = get(explorer, f"/tasks?q={task[:14]}")
    assert status == 303
    assert headers["location"].endswith(f"/tasks/{task}")
