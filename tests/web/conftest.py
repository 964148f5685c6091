"""The web app's tests share a development-mode app (with the chooser on, as `make run` has it) and clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from service.main import create_app
from service.settings import Settings


@pytest.fixture
async def dev_app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings.model_copy(update={"env": "dev", "web_dev_signin": True}))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def browser(dev_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser: keeps cookies, follows nothing by itself."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=dev_app), base_url="http://peerway.test") as c:
        yield c


@pytest.fixture
async def api(dev_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=dev_app), base_url="http://peerway.test") as c:
        yield c
