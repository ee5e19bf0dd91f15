"""Headless Chromium driven by Selenium: the browser tests and the README screenshot
(``python -m devtools.screenshot``) use this same code.

The browser is the system's (Debian's ``chromium`` + ``chromium-driver``); nothing is downloaded. A bearer
token, when the app has one, is sent on every request of the page (HTML, scripts, JSON, images) through
the DevTools protocol, as an authenticating proxy in front of the app would add it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

CHROMIUM_BINARIES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = "chromedriver"
READY_STATES = ("ready", "error")
IMAGES_SCRIPT = (
    "return Array.from(document.images).map(i => "
    "({src: i.currentSrc || i.src, complete: i.complete, width: i.naturalWidth}))"
)


class BrowserUnavailable(RuntimeError):
    """No Chromium or no chromedriver on PATH."""


def chromium_paths() -> tuple[str, str] | None:
    """(chromium binary, chromedriver) when both are installed, else None."""
    binary = next((found for name in CHROMIUM_BINARIES if (found := shutil.which(name))), None)
    driver = shutil.which(CHROMEDRIVER)
    return (binary, driver) if binary and driver else None


def headless_chromium(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium WebDriver that keeps the page's console log (``driver.get_log("browser")``)."""
    from selenium import webdriver

    paths = chromium_paths()
    if paths is None:
        raise BrowserUnavailable("needs chromium and chromedriver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=paths[1]))


def send_token(driver: Any, token: str | None) -> None:
    """Send ``Authorization: Bearer token`` with every request from now on (None: send nothing)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})


def explorer_url(
    base_url: str, item: int | None = None, user: int | None = None, k: int | None = None
) -> str:
    request = {name: value for name, value in (("item", item), ("user", user), ("k", k)) if value is not None}
    return f"{base_url.rstrip('/')}/explore" + (f"#{urlencode(request)}" if request else "")


def page_state(driver: Any) -> str | None:
    return driver.execute_script("return document.body ? document.body.dataset.state : null")


def images(driver: Any) -> list[dict[str, Any]]:
    """Every <img> of the page: source, whether loading finished, natural width (0: not rendered)."""
    return driver.execute_script(IMAGES_SCRIPT)


def wait_until_rendered(driver: Any, timeout_s: float = 60.0, states: tuple[str, ...] = READY_STATES) -> str:
    """Wait until the page reports ``ready`` or ``error`` and every image has finished loading."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = page_state(driver)
        if state in states and all(image["complete"] for image in images(driver)):
            return state
        time.sleep(0.1)
    raise TimeoutError(f"page not rendered within {timeout_s} s (state {page_state(driver)!r})")


def console_errors(driver: Any) -> list[str]:
    """The console's errors since the last call (the log is drained by reading it)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def open_explorer(driver: Any, url: str, timeout_s: float = 60.0) -> str:
    """Load ``url`` afresh (a new document even when only the fragment differs) and wait for it."""
    driver.get("about:blank")
    driver.get(url)
    return wait_until_rendered(driver, timeout_s)


def screenshot(
    url: str, out: Path, token: str | None = None, width: int = 1400, timeout_s: float = 120.0
) -> Path:
    """A PNG of the whole explorer page at ``url``, written to ``out``."""
    driver = headless_chromium(width, 1000)
    try:
        send_token(driver, token)
        if open_explorer(driver, url, timeout_s) != "ready":
            shown = driver.find_element("id", "error").text
            raise RuntimeError(f"the explorer page reported an error: {shown}")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(int(height) + 40, 4000))
        wait_until_rendered(driver, timeout_s)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(out)):
            raise RuntimeError(f"could not write {out}")
        return out
    finally:
        driver.quit()
