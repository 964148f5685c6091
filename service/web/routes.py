"""Mounting the web app on the service: its routers (none in the OpenAPI document) and its static files."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.web import desk, peer, signin
from service.web.pages import HERE


def install(app: FastAPI) -> None:
    for module in (signin, peer, desk):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
