"""The web UI for QC engineers: pages and static assets.

`app.main.create_app` calls `register_web`; the pages are Jinja2 templates with vanilla
JS modules, and every asset (Bootstrap, Chart.js) is served from `app/static` so the UI
works on a factory network without internet.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.config import Settings
from app.web.pages import STATIC_DIR, SignInRequired, build_router, sign_in_redirect


def register_web(app: FastAPI, settings: Settings) -> None:
    """Mount `/static` and add the page routes to `app` (the dashboard's data comes from
    the API's `/api/dashboard` routes, included with the rest of the API)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(build_router(settings))
    app.add_exception_handler(SignInRequired, sign_in_redirect)
