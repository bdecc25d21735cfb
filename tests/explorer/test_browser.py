"""The explorer in a real browser (headless chromium) against a live market on anvil: a
person follows a task to its prover and back to its market, watches a task get proven
without reloading, finds a task by the first digits of its id, and reads figures that
equal the registry's own views; every page works at 1280 px and at a phone's width, with
its headings, labels and plots named. Screenshots of each page at both widths go to
reports/explorer/; with EXPLORER_DOCS_SCREENSHOTS=1 two of them are copied into docs/ for
the README."""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlparse

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.explorer.conftest import ALICE_ASK, SCREENSHOTS, Live, wait_until
from tests.factories import ETHER, ROOT

DESKTOP = (1280, 900)
PHONE = (390, 844)
DOCS = {  # screenshot → where the README shows it
    "overview-1280": ROOT / "docs" / "explorer-overview.png",
    "task-390": ROOT / "docs" / "explorer-task.png",
}
TASK_STATES = ("open", "assigned", "proven", "closed")


# ------------------------------------------------------------------ helpers


def at_width(browser, size: tuple[int, int]) -> None:
    """The viewport at `size` (CSS pixels); the narrow one as a phone shows pages."""
    width, height = size
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def open_page(browser, live: Live, path: str) -> None:
    browser.get(live.url.rstrip("/") + path)
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, "main#main h1"))


def path_of(browser) -> str:
    return urlparse(browser.current_url).path


def figure(root, name: str):
    return root.find_element(By.CSS_SELECTOR, f'[data-figure="{name}"]')


def wei(root, name: str) -> int:
    return int(figure(root, name).get_attribute("data-wei"))


def value(root, name: str) -> int:
    return int(figure(root, name).get_attribute("data-value"))


def hex_id(task_id: bytes) -> str:
    return "0x" + task_id.hex()


def state_of(counts: tuple[int, int, int, int]) -> str:
    """A task's state from the registry's slot counts, as a person reads it: assigned while
    a prover holds a slot, open while one can be assigned, else proven if any slot was."""
    open_, assigned, proven, _ = counts
    return "assigned" if assigned else "open" if open_ else "proven" if proven else "closed"


def events(live: Live, names: list[str], **filters) -> list:
    return live.client.events(names, **filters)


def pages(live: Live) -> dict[str, str]:
    """Each page a person opens, by a short name: the screenshots' names."""
    return {
        "overview": "/",
        "tasks": "/tasks",
        "task": f"/tasks/{hex_id(live.tasks[0])}",
        "provers": "/provers",
        "prover": f"/provers/{live.provers['alice']}",
        "market": f"/markets/{live.market_id}",
        "mechanisms": "/mechanisms",
    }


# ------------------------------------------------------------------ following links


def test_overview__follow_a_task_to_its_prover_and_back_to_its_market(live, browser):
    at_width(browser, DESKTOP)
    open_page(browser, live, "/")
    task = hex_id(live.tasks[0])
    browser.find_element(By.CSS_SELECTOR, f'tr[data-task="{task}"] a[href="/tasks/{task}"]').click()
    WebDriverWait(browser, 10).until(lambda b: path_of(b) == f"/tasks/{task}")
    assert task in browser.find_element(By.TAG_NAME, "h1").text
    assert figure(browser, "state").text == "proven"

    [proven] = events(live, ["TaskProven"], task_id=live.tasks[0])
    prover = proven.prover
    browser.find_element(
        By.CSS_SELECTOR, f'#timeline li[data-event="TaskProven"] a[href="/provers/{prover}"]'
    ).click()
    WebDriverWait(browser, 10).until(lambda b: path_of(b) == f"/provers/{prover}")
    assert prover in browser.find_element(By.TAG_NAME, "h1").text

    market = live.market_id
    browser.find_element(
        By.CSS_SELECTOR, f'#memberships tr[data-market="{market}"] a[href="/markets/{market}"]'
    ).click()
    WebDriverWait(browser, 10).until(lambda b: path_of(b) == f"/markets/{market}")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Market {market}")
    assert browser.find_elements(By.CSS_SELECTOR, f'#provers tr[data-prover="{prover}"]')


def test_search__a_unique_prefix_in_the_search_form__lands_on_the_task_page(live, browser):
    at_width(browser, DESKTOP)
    task = hex_id(live.tasks[1])
    prefix = task[:10]
    assert [hex_id(t) for t in live.tasks if hex_id(t).startswith(prefix)] == [task]
    open_page(browser, live, "/provers")
    box = browser.find_element(By.ID, "search-q")
    box.send_keys(prefix)
    browser.find_element(By.CSS_SELECTOR, 'form[role="search"] button[type="submit"]').click()
    WebDriverWait(browser, 10).until(lambda b: path_of(b) == f"/tasks/{task}")
    assert task in browser.find_element(By.TAG_NAME, "h1").text


# ------------------------------------------------------------------ figures against the chain


def test_figures__task_pages__equal_the_registrys_views(live, browser):
    at_width(browser, DESKTOP)
    for task_id in live.tasks:
        open_page(browser, live, f"/tasks/{hex_id(task_id)}")
        chain = live.client.task(task_id)
        counts = (chain.open, chain.assigned, chain.proven, chain.closed)
        assert figure(browser, "state").text == state_of(counts)
        assert tuple(value(browser, n) for n in ("open", "assigned", "proven", "closed")) == counts
        terms = chain.terms
        assert value(browser, "market") == terms.market_id
        assert value(browser, "mechanism") == terms.mechanism_id
        assert figure(browser, "mechanism").text == "orderbook"  # by the name it was registered with
        assert figure(browser, "requester").get_attribute("data-value").lower() == terms.requester.lower()
        assert wei(browser, "max_reward") == terms.max_reward
        assert wei(browser, "collateral") == terms.collateral
        assert value(browser, "redundancy") == terms.redundancy
        proofs = [e for e in chain.timeline if e.name == "TaskProven"]
        closes = [e for e in chain.timeline if e.name == "SlotsClosed"]
        assert wei(browser, "paid") == sum(e.paid for e in proofs)
        assert wei(browser, "refund") == sum(e.refund for e in proofs) + sum(e.refund for e in closes)
        shown = [
            li.get_attribute("data-event") for li in browser.find_elements(By.CSS_SELECTOR, "#timeline li")
        ]
        assert shown == [e.name for e in chain.timeline]


def test_figures__prover_pages__equal_the_registrys_views(live, browser):
    at_width(browser, DESKTOP)
    for address in live.provers.values():
        open_page(browser, live, f"/provers/{address}")
        standing = live.client.standing(address)
        for name in ("stake", "locked", "free", "unbonding", "balance"):
            assert wei(browser, name) == getattr(standing, name), name
        assert value(browser, "proofs") == len(events(live, ["TaskProven"], prover=address))
        assert value(browser, "slashes") == len(events(live, ["Slashed"], prover=address))
        membership = live.client.membership(address, live.market_id)
        row = browser.find_element(By.CSS_SELECTOR, f'#memberships tr[data-market="{live.market_id}"]')
        assert (value(row, "capacity"), value(row, "used"), wei(row, "ask")) == (
            membership.capacity,
            membership.used,
            membership.ask,
        )


def tasks_by_state(live: Live) -> dict[str, int]:
    posted = [bytes(e.task_id) for e in events(live, ["TaskPosted"]) if e.market_id == live.market_id]
    found = dict.fromkeys(TASK_STATES, 0)
    for task_id in posted:
        found[state_of(live.status(task_id))] += 1
    return found


def test_figures__market_page_and_overview__equal_the_registrys_views(live, browser):
    at_width(browser, DESKTOP)
    by_state = tasks_by_state(live)
    assert by_state["proven"] >= 3
    open_page(browser, live, f"/markets/{live.market_id}")
    assert {s: value(browser, f"tasks_{s}") for s in TASK_STATES} == by_state
    market = live.client.market(live.market_id)
    assert (wei(browser, "min_reward"), wei(browser, "min_collateral")) == (
        market.min_reward,
        market.min_collateral,
    )
    price, _, proofs = live.client.call("market_index", live.market_id)  # read through --rpc
    assert (wei(browser, "index_price"), value(browser, "index_proofs")) == (price, proofs) and proofs >= 3
    rows = browser.find_elements(By.CSS_SELECTOR, "#provers tr[data-prover]")
    assert {r.get_attribute("data-prover") for r in rows} == set(live.provers.values())
    for row in rows:
        membership = live.client.membership(row.get_attribute("data-prover"), live.market_id)
        assert (value(row, "capacity"), value(row, "used"), wei(row, "ask")) == (
            membership.capacity,
            membership.used,
            membership.ask,
        )

    open_page(browser, live, "/")
    assert {s: value(browser, f"tasks_{s}") for s in TASK_STATES} == by_state  # one market
    assert value(browser, "tasks_total") == sum(by_state.values())
    row = browser.find_element(By.CSS_SELECTOR, f'#markets tr[data-market="{live.market_id}"]')
    members = [live.client.membership(p, live.market_id) for p in live.provers.values()]
    assert value(row, "capacity") == sum(m.capacity for m in members)
    assert value(row, "used") == sum(m.used for m in members)


# ------------------------------------------------------------------ live updates


def test_live__a_task_moves_from_posted_to_proven__without_reloading(live, browser):
    """A task offering less than every ask waits, open; the page shows it so. Then alice
    lowers her ask: the keeper assigns it, her agent proves it, and the open page says
    proven by itself, the window's own marker still set (no navigation happened)."""
    at_width(browser, DESKTOP)
    task_id = live.post(max_reward=ALICE_ASK - ETHER // 200)  # below both asks
    task = hex_id(task_id)
    wait_until(
        lambda: live.api(f"/api/tasks/{task}").get("state") == "open", 30, "the explorer seeing the task"
    )
    open_page(browser, live, f"/tasks/{task}")
    assert figure(browser, "state").text == "open"
    browser.execute_script("window.explorerTestMarker = 'set before the task was proven';")

    alice = live.market.client(live.keys["alice"])
    alice.transact("update_membership", live.market_id, 2, ETHER // 100, 10, 0)

    def state_shown(b) -> str | None:
        try:
            return figure(b, "state").text
        except StaleElementReferenceException:  # <main> swapped as it was read
            return None

    seen = set()
    WebDriverWait(browser, 60, poll_frequency=0.1).until(
        lambda b: seen.add(state_shown(b)) or "proven" in seen
    )
    assert browser.execute_script("return window.explorerTestMarker") == "set before the task was proven"
    assert live.status(task_id)[2] == 1, "the page says proven, the registry does not"
    timeline = [
        li.get_attribute("data-event") for li in browser.find_elements(By.CSS_SELECTOR, "#timeline li")
    ]
    assert timeline[0] == "TaskPosted" and "TaskAssigned" in timeline and timeline[-1] == "TaskProven"
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1


# ------------------------------------------------------------------ layout and accessibility

LAYOUT = """
const root = document.documentElement, view = window.innerWidth;
const h1 = document.querySelector('h1'), box = h1 && h1.getBoundingClientRect();
const links = [...document.querySelectorAll('header nav[aria-label="Main"] a')].map(a => {
  const r = a.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return {href: a.getAttribute('href'),
          inside: r.left >= 0 && r.right <= view && r.width > 0 && r.height >= 16,
          reachable: !!hit && (hit === a || a.contains(hit))};
});
return {scroll: root.scrollWidth, view: view,
        h1: !!box && box.width > 0 && box.height > 0 && box.left >= 0 && box.right <= view,
        links: links};
"""

ACCESSIBILITY = """
const named = el => ['aria-label', 'aria-labelledby', 'title'].some(a => (el.getAttribute(a) || '').trim());
const unlabelled = [...document.querySelectorAll('input, select, textarea')]
  .filter(el => !['hidden', 'submit', 'button', 'reset'].includes(el.type))
  .filter(el => !(el.id && document.querySelector(`label[for="${el.id}"]`)))
  .filter(el => !el.closest('label') && !named(el))
  .map(el => el.outerHTML.slice(0, 80));
const unnamed = [...document.querySelectorAll('img, svg')].filter(el => !el.parentElement.closest('svg'))
  .filter(el => !named(el) && !(el.tagName === 'IMG' && el.hasAttribute('alt'))
                && !(el.tagName.toLowerCase() === 'svg' && el.querySelector(':scope > title')))
  .map(el => el.outerHTML.slice(0, 80));
const levels = [...document.querySelectorAll('h1, h2, h3, h4, h5, h6')].map(h => Number(h.tagName[1]));
const skips = levels.filter((level, i) => level > (i ? levels[i - 1] : 0) + 1);
return {unlabelled, unnamed, h1s: levels.filter(l => l === 1).length, first: levels[0], skips};
"""


def test_layout__every_page_at_1280_px_and_a_phones_width__fits_with_its_heading_and_nav(live, browser):
    """No page scrolls sideways, its h1 shows, and every link of the main navigation is on
    screen and not covered; each page's screenshot is saved at both widths."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for size in (DESKTOP, PHONE):
        at_width(browser, size)
        for name, path in pages(live).items():
            open_page(browser, live, path)
            assert browser.title and not browser.title.startswith("Not found"), f"{path}: {browser.title}"
            found = browser.execute_script(LAYOUT)
            where = f"{path} at {size[0]} px"
            assert found["view"] == size[0], where
            assert found["scroll"] <= found["view"], f"{where} scrolls sideways ({found['scroll']} px wide)"
            assert found["h1"], f"{where}: the h1 is not visible"
            assert [link["href"] for link in found["links"]] == ["/", "/tasks", "/provers", "/mechanisms"], (
                where
            )
            assert all(link["inside"] and link["reachable"] for link in found["links"]), (
                where,
                found["links"],
            )
            browser.get_screenshot_as_file(str(SCREENSHOTS / f"{name}-{size[0]}.png"))
        # the navigation works by touch on a phone as by mouse at a desk
        browser.find_element(By.CSS_SELECTOR, 'header nav[aria-label="Main"] a[href="/provers"]').click()
        WebDriverWait(browser, 10).until(lambda b: path_of(b) == "/provers")
    if os.environ.get("EXPLORER_DOCS_SCREENSHOTS") == "1":
        for shot, target in DOCS.items():
            shutil.copyfile(SCREENSHOTS / f"{shot}.png", target)


def test_accessibility__every_page__labels_one_h1_named_images_and_no_skipped_heading(live, browser):
    at_width(browser, DESKTOP)
    for path in pages(live).values():
        open_page(browser, live, path)
        found = browser.execute_script(ACCESSIBILITY)
        assert found["unlabelled"] == [], f"{path}: controls without a label"
        assert found["unnamed"] == [], f"{path}: images or plots without a title or label"
        assert (found["h1s"], found["first"]) == (1, 1), (
            f"{path}: {found['h1s']} h1, first heading h{found['first']}"
        )
        assert found["skips"] == [], f"{path}: a heading skips a level"
