"""The explorer page and the evaluation report in a real headless Chromium, against the test chain's Serve
app (``served``: bearer token set). One browser for the module; skipped only where Chromium is absent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browser_helpers import (
    assert_every_image_rendered,
    assert_no_console_errors,
    browser_session,
    shown,
    text,
    tile_clusters,
    wait_for,
)
from serve_helpers import AUTH, TOKEN, UNKNOWN_USER, ServedChain, known_pairs

from devtools.browser import (
    console_errors,
    explorer_url,
    open_explorer,
    page_state,
    send_token,
    wait_until_rendered,
)
from serendipity.schema import NUM_LEVELS

pytestmark = pytest.mark.slow
UNKNOWN_ITEM = 10**12
PROMPT_IMAGES = {"text": 0, "thumbnail_cot": 1, "frame_cot": 1}  # other styles: mllm.num_frames


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from browser_session()


@pytest.fixture()
def authorized(browser: Any) -> Any:
    send_token(browser, TOKEN)
    console_errors(browser)  # drain what earlier tests left
    return browser


def test_without_the_token_the_page_is_refused(served: ServedChain, browser: Any) -> None:
    for path in (
        "/explore",
        "/explore/static/explorer.js",
        "/explore/api/roots",
        "/explore/media/1/thumbnail.jpg",
    ):
        assert httpx.get(f"{served.url}{path}", timeout=30).status_code == 401, path
    send_token(browser, None)
    browser.get(explorer_url(served.url))
    assert "missing or invalid bearer token" in browser.find_element("tag name", "body").text
    assert browser.execute_script("return document.getElementById('content')") is None


def test_choosing_an_item_shows_its_reasoning_and_a_slate_inside_the_nominated_cluster(
    served: ServedChain, authorized: Any
) -> None:
    driver = authorized
    user, item, cluster = known_pairs(served, 1)[0]
    assert open_explorer(driver, explorer_url(served.url)) == "ready"
    driver.find_element("id", "user").send_keys(str(user))
    driver.find_element("id", "search").send_keys(str(item))  # search by id (titles work the same way)
    pick = f"#search-list .tile[data-item-id='{item}']"
    wait_for(lambda: driver.find_elements("css selector", pick), what="the item in the search results")
    driver.find_element("css selector", pick).click()
    wait_for(lambda: text(driver, "context-id") == f"item {item}" and page_state(driver) == "ready")
    wait_until_rendered(driver)

    expected = served.serendipity.set_index("item_id").loc[item]
    assert text(driver, "reasoning") == (expected["reasoning"] or "").strip()
    assert text(driver, "answer-source") in ("model", "non-LLM guess")
    assert int(driver.find_element("id", "nominated").get_attribute("data-cluster-id")) == cluster
    slate = tile_clusters(driver, "served-list")
    assert slate and set(slate) == {cluster}
    assert tile_clusters(driver, "baseline-list")
    assert tile_clusters(driver, "cluster-members") and set(tile_clusters(driver, "cluster-members")) == {
        cluster
    }
    frames = len(driver.find_elements("css selector", "#frames img"))
    assert frames == PROMPT_IMAGES.get(served.config.mllm.prompt_style, served.config.mllm.num_frames)
    assert_every_image_rendered(driver, at_least=1 + frames + len(slate))
    assert_no_console_errors(driver)


def test_an_unknown_item_shows_the_fallback_plainly(served: ServedChain, authorized: Any) -> None:
    driver = authorized
    user = sorted(served.history)[0]
    assert open_explorer(driver, explorer_url(served.url, UNKNOWN_ITEM, user)) == "ready"
    assert shown(driver, "unknown-item") and not shown(driver, "context")
    assert "not in the catalogue" in text(driver, "unknown-text")
    assert text(driver, "answer-source") == "fallback"
    assert shown(driver, "fallback-notice") and text(driver, "fallback-notice").startswith("Fallback")
    assert not shown(driver, "answer-body")
    assert_every_image_rendered(driver, at_least=1)  # the fallback slate's thumbnails
    assert_no_console_errors(driver)


def test_browsing_the_tree_level_by_level_reaches_an_item(served: ServedChain, authorized: Any) -> None:
    driver = authorized
    assert open_explorer(driver, explorer_url(served.url)) == "ready"
    for depth in range(1, NUM_LEVELS + 1):  # down the clusters until the list holds items
        wait_for(lambda: driver.find_elements("css selector", "#tree-list button"), what="tree entries")
        if driver.find_elements("css selector", "#tree-list .item-entry"):
            break
        driver.find_elements("css selector", "#tree-list button")[0].click()
        crumbs = depth + 1  # "all", then one per level
        wait_for(lambda: len(driver.find_elements("css selector", "#breadcrumb button")) == crumbs)  # noqa: B023
    driver.find_elements("css selector", "#tree-list .item-entry button")[0].click()
    wait_for(lambda: text(driver, "context-id").startswith("item ") and page_state(driver) == "ready")
    wait_until_rendered(driver)
    assert_no_console_errors(driver)


def test_an_anonymous_viewer_gets_the_cold_start_answer(served: ServedChain) -> None:
    _, item, cluster = known_pairs(served, 1)[0]
    body = httpx.get(
        f"{served.url}/explore/api/item/{item}", params={"user_id": UNKNOWN_USER}, headers=AUTH, timeout=60
    ).json()
    assert body["served"]["cold_start"] is True and body["served"]["cluster"]["id"] == cluster
    assert (
        body["answer"]["cluster_id"] == cluster and body["answer"]["alternatives"][0]["cluster_id"] == cluster
    )
    assert body["baseline"]["source"] == "exploitation" and body["baseline"]["items"]


def test_the_report_opens_with_every_plot_rendered(
    served: ServedChain, experiment_config: Any, authorized: Any
) -> None:
    from serendipity.config import load_config
    from serendipity.eval.report import write_report

    write_report(load_config(experiment_config))
    driver = authorized
    driver.get(f"{served.url}/explore/report")
    wait_for(lambda: driver.execute_script("return document.readyState") == "complete")
    assert "report" in driver.title.lower() or driver.find_elements("tag name", "table")
    assert_every_image_rendered(driver, at_least=3)  # satisfaction by pair class, Figures 6 and 7
    assert_no_console_errors(driver)
