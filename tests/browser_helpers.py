"""Browser-test helpers over ``devtools.browser`` (the code the README screenshot uses too)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.browser import chromium_paths, console_errors, headless_chromium, images


def browser_session() -> Iterator[Any]:
    """One headless Chromium for a test module; skipped (with the reason) where Chromium is absent."""
    if chromium_paths() is None:
        pytest.skip("chromium and chromium-driver are not installed (CI installs them: .ci/run)")
    pytest.importorskip("selenium", reason="selenium is a dev extra: pip install -e '.[dev]'")
    driver = headless_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def text(driver: Any, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById({element_id!r}).textContent").strip()


def shown(driver: Any, element_id: str) -> bool:
    return not driver.execute_script(f"return document.getElementById({element_id!r}).hidden")


def tile_clusters(driver: Any, list_id: str) -> list[int]:
    script = f"return Array.from(document.querySelectorAll('#{list_id} .tile')).map(t => t.dataset.clusterId)"
    return [int(value) for value in driver.execute_script(script)]


def assert_every_image_rendered(driver: Any, at_least: int) -> None:
    found = images(driver)
    assert len(found) >= at_least, found
    broken = [image["src"] for image in found if not image["complete"] or image["width"] <= 0]
    assert not broken, f"images not rendered: {broken}"


def assert_no_console_errors(driver: Any) -> None:
    errors = console_errors(driver)
    assert not errors, errors
