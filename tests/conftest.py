"""Shared fixtures: one real Chromium for the session, MiniWoB++ tasks."""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import pytest_asyncio
from playwright.async_api import async_playwright

from synth.env import BrowserConfig, BrowserEnv, launch_browser
from synth.sites import get_site, miniwob


@pytest_asyncio.fixture(scope="session")
async def browser():
    async with async_playwright() as p:
        b = await launch_browser(p, BrowserConfig())
        yield b
        await b.close()


@pytest_asyncio.fixture(scope="session")
async def miniwob_site():
    site = get_site("miniwob")
    await site.start()
    return site


@pytest_asyncio.fixture
async def env(browser, miniwob_site):
    e = BrowserEnv(browser, miniwob_site)
    yield e
    await e.close()


@pytest.fixture
def make_task():
    return miniwob.make_task


@pytest.fixture
def slow_actions(monkeypatch):
    """A machine so busy that every action starts `seconds` late: call with
    the delay; patches BrowserEnv.step, so envs a source makes itself are slow too."""
    step = BrowserEnv.step

    def slow_by(seconds: float) -> None:
        async def slow_step(self, action, expected=None):
            await asyncio.sleep(seconds)
            return await step(self, action, expected)

        monkeypatch.setattr(BrowserEnv, "step", slow_step)

    return slow_by
