"""A real browser for the tests: Debian's headless Chromium driven by Selenium through Debian's
chromium-driver (TESTING.md), with its own profile in a temp directory, screenshots kept in
test-artifacts/ for a person to look at, and no Chromium process left behind.

Selenium is told where chromedriver is, so it never runs Selenium Manager (which would try to
download a driver, and nothing can be downloaded here)."""

from __future__ import annotations

import base64
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DESKTOP = (1200, 900)
PHONE = (412, 900)
# A rendered page with text and buttons is tens of KB; a blank or error-less white PNG of the
# same size is well under this.
MIN_SHOT_BYTES = 8_000


@dataclass
class Browser:
    """One Chromium window; ``shot`` saves what it shows under a name of the test's choosing."""

    driver: webdriver.Chrome
    prefix: str
    shots: list[Path] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)  # the HTML of every page shot

    def open(self, url: str) -> None:
        self.driver.get(url)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    @property
    def title(self) -> str:
        return str(self.driver.title)

    def one(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def label(self, text: str) -> WebElement:
        """The input inside the ``<label>`` whose text contains ``text``."""
        found: WebElement = self.driver.find_element(
            By.XPATH, f"//label[contains(normalize-space(.), '{text}')]//input"
        )
        return found

    def text(self) -> str:
        return str(self.one("body").text)

    def wait_url(self, pattern: str, timeout: float = 20) -> str:
        """Wait until the address bar matches ``pattern`` (a regex); the URL."""
        WebDriverWait(self.driver, timeout).until(lambda d: re.search(pattern, d.current_url))
        return self.url

    def wait_for(self, css: str, timeout: float = 20) -> WebElement:
        found: WebElement = WebDriverWait(self.driver, timeout).until(
            lambda d: d.find_element(By.CSS_SELECTOR, css)
        )
        return found

    def cookie(self, name: str) -> dict[str, object] | None:
        found = self.driver.get_cookie(name)
        return dict(found) if found else None

    def shot(self, label: str) -> Path:
        """A full-page PNG in test-artifacts/, named ``<prefix>-<label>-<width>.png``; fails if
        it is next to empty (a blank page)."""
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        width = int(self.driver.execute_script("return window.innerWidth"))
        picture = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": max(width, size["width"]),
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.prefix}-{label}-{width}.png"
        path.write_bytes(base64.b64decode(picture["data"]))
        assert path.stat().st_size > MIN_SHOT_BYTES, f"{path.name} looks blank"
        self.shots.append(path)
        self.pages.append(str(self.driver.page_source))
        return path

    @contextmanager
    def phone(self) -> Iterator[None]:
        """The page as a phone shows it: 412 CSS pixels wide, the viewport meta tag honoured."""
        width, height = PHONE
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
        )
        try:
            self.driver.refresh()
            yield
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            self.driver.refresh()

    def scroll_width(self) -> int:
        """How wide the page is laid out; wider than the window means sideways scrolling."""
        return int(self.driver.execute_script("return document.documentElement.scrollWidth"))


def _ours(profile: Path) -> list[int]:
    """The PIDs of processes started with our profile directory (Chromium and its helpers)."""
    out = subprocess.run(["pgrep", "-f", str(profile)], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


@contextmanager
def chromium(
    tmp: Path, prefix: str, size: tuple[int, int] = DESKTOP, *, javascript: bool = True
) -> Iterator[Browser]:
    """Headless Chromium through Selenium, quit on the way out; fails if a Chromium process
    started with this profile is still running afterwards. ``javascript=False``: pages' scripts
    do not run (Selenium's own ``execute_script`` still does)."""
    profile = tmp / "chromium-profile"
    profile.mkdir(parents=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(30)
        yield Browser(driver, prefix)
    finally:
        with suppress(WebDriverException):
            driver.quit()
        deadline = time.monotonic() + 10
        while _ours(profile) and time.monotonic() < deadline:
            time.sleep(0.1)
        leftover = _ours(profile)
        for pid in leftover:  # started by this fixture: ours to end
            subprocess.run(["kill", "-9", str(pid)], check=False)
        assert not leftover, f"Chromium processes left running after quit: {leftover}"
