"""What every browser test shares: Debian's Chromium driven by Python Playwright (never
`playwright install`: /usr/bin/chromium from apt, which .ci/run installs), and screenshots of
what each test saw."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Playwright's sync API keeps an event loop in this thread; Django's ORM calls made by the
# test's fixtures are still synchronous and safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield CheckerFriendly(browser)
        browser.close()


class CheckerFriendly:
    """The browser, with pages that let the tests' own checks run: Playwright evaluates waiting
    conditions as strings and axe-core is injected inline, both of which the shop's
    Content-Security-Policy forbids. test_the_storefront_works_under_its_content_security_policy
    drives the page with the policy on."""

    def __init__(self, browser):
        self.real = browser

    def new_page(self, **kwargs):
        return self.real.new_page(bypass_csp=True, **kwargs)

    def new_context(self, **kwargs):
        return self.real.new_context(bypass_csp=True, **kwargs)


ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", Path(__file__).resolve().parents[2] / "test-artifacts"))


@pytest.fixture
def screenshot(request):
    """Save what the browser shows as test-artifacts/screenshots/<test>/<name>.png (kept after the
    run: what each browser test saw, to look at when one fails or the page changes)."""
    folder = ARTIFACTS / "screenshots" / request.node.name.replace("/", "_").replace("[", "-").rstrip("]")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = folder / f"{name.replace(' ', '-')}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
