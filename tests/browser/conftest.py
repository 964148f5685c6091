"""Browser tests: Debian's Chromium driven by Playwright, one browser for the whole run, against a real
`peerway serve` (dev mode, its worker writing to the Node test EHR), with axe-core injected into each page.

Chromium comes from Debian (`apt-get install chromium`; Playwright's own browser download is not used) and
axe-core from npm (`npm ci --prefix tests/browser`): `make install-test` and `.ci/run` install both."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.support.server import ROOT, LiveServer, live_server

CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "test-output" / "screenshots"
BLOCKING = ("serious", "critical")


@cache
def axe_source() -> str:
    if not AXE.exists():
        raise RuntimeError(f"{AXE} is missing: npm ci --prefix tests/browser")
    return AXE.read_text()


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium")


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    _require_chromium()
    axe_source()
    async with async_playwright() as playwright:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        await browser.close()


@pytest.fixture
def peerway(tmp_path: Path, database_url: str, auth_keys_path: Path, ehr: Any) -> Iterator[LiveServer]:
    """Peerway as `make run` serves it (dev mode, with its worker), on this test's database, writing to the test
    EHR; its public base URL is the one the test tokens are minted for."""
    with live_server(
        tmp_path,
        env="dev",
        web_dev_signin="true",  # its public base URL is not a loopback one
        database_url=database_url,
        auth_keys_path=auth_keys_path,
        run_worker="true",
        outbox_poll_seconds=0.2,
        ehr_base_url=ehr.base_url,
        public_base_url="http://peerway.test",
    ) as server:
        yield server


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings on the page as it is now (WCAG 2.1 A and AA rules)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol, so the page's CSP (script-src 'self') stays as users get it.
        await page.evaluate(axe_source())
    result = await page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
    )
    return [v for v in result["violations"] if v.get("impact") in BLOCKING]


async def assert_accessible(page: Page) -> None:
    found = await axe_violations(page)
    summary = [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]} for v in found]
    assert not found, f"{page.url}: {json.dumps(summary, indent=1)}"


async def screenshot(page: Page, name: str) -> None:
    """The page as the person sees it, in test-output/screenshots/ (the README shows two of them)."""
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
