"""The reader app (Starlette, server-rendered Jinja2 pages, a little progressive-enhancement JavaScript).

Security choices (docs/reader.md): only a reader's session cookie opens a page, never a hub token (a
request with an Authorization header gets 401); the cookie is HttpOnly, SameSite=Strict, Secure under TLS;
every POST form carries the session's CSRF token (the log-in form a pre-session one, double-submitted);
failed log-ins are rate-limited per address and per name; every page, image, decision and export is
written to the audit log before it is sent; pages are ``no-store`` with a strict Content-Security-Policy.
"""

from __future__ import annotations

import csv
import hmac
import io
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from edgeret.hub.db.repository import HubRepository
from edgeret.link.protocol import CAPTURE_ID
from edgeret.reader import accounts, queries, reports
from edgeret.reader.charts import bar_groups, machine_summary
from edgeret.reader.images import WIDTHS, ImageSource

HERE = Path(__file__).parent
SESSION_COOKIE, LOGIN_COOKIE = "edgeret_reader", "edgeret_login"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; script-src 'self'; style-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # patient data: not kept in the browser's or a proxy's cache
}


class ReaderApp:
    """The application's state: the database engine, the store's images, the log-in limiter."""

    def __init__(self, engine, store: str | Path, *, secure: bool = False,
                 limiter: accounts.LoginLimiter | None = None, log: Callable[[str], None] = print) -> None:
        self.engine, self.secure, self.log = engine, secure, log
        self.repo = HubRepository(engine)
        self.images = ImageSource(store)
        self.limiter = limiter or accounts.LoginLimiter()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals.update(widths=WIDTHS, count_cap=queries.COUNT_CAP)

    # --- helpers -----------------------------------------------------------------------------

    def login_of(self, request: Request) -> accounts.Login:
        """The request's reader, or 401 (a hub token, a non-page request) / a redirect to log in."""
        if "authorization" in request.headers:
            raise HTTPException(401, "the reader app takes a reader's log-in, not a hub token")
        login = accounts.session_of(self.engine, request.cookies.get(SESSION_COOKIE))
        if login is None:
            if request.method == "GET":
                raise HTTPException(303, headers={"Location": "/login"})
            raise HTTPException(401, "not logged in")
        return login

    def check_csrf(self, given: Any, expected: str | None) -> None:
        if not isinstance(given, str) or not expected or not hmac.compare_digest(given, expected):
            raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page")

    def audit(self, request: Request, reader: str | None, action: str, **kw: Any) -> None:
        queries.audit(self.engine, reader, action, client=request.client.host if request.client else None,
                      **kw)

    def page(self, request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def cookie(self, response: Response, name: str, value: str, *, path: str = "/",
               max_age: int | None = None) -> None:
        response.set_cookie(name, value, path=path, max_age=max_age, httponly=True, samesite="strict",
                            secure=self.secure)

    def forget(self, response: Response, name: str, *, path: str = "/") -> None:
        response.delete_cookie(name, path=path, httponly=True, samesite="strict", secure=self.secure)

    # --- routes ------------------------------------------------------------------------------

    async def login_form(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        token = secrets.token_urlsafe(32)
        response = self.page(request, "login.html", {"csrf": token, "error": error}, status)
        self.cookie(response, LOGIN_COOKIE, token, path="/login", max_age=3600)
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        self.check_csrf(form.get("csrf"), request.cookies.get(LOGIN_COOKIE))
        name, password = str(form.get("name") or "")[:64], str(form.get("password") or "")[:1024]
        client = request.client.host if request.client else "?"
        keys = (f"addr:{client}", f"name:{name.lower()}")
        wait = self.limiter.retry_after(*keys)
        if wait:
            self.audit(request, None, "login_limited", detail=f"retry after {wait} s")
            response = await self.login_form(request, f"Too many failed log-ins: try again in {wait} s.", 429)
            response.headers["Retry-After"] = str(wait)
            return response
        # argon2 takes tens of milliseconds on purpose: off the event loop, as the database and PNG work below
        if not await run_in_threadpool(accounts.verify, self.engine, name, password):
            self.limiter.failed(*keys)
            known = name if accounts.NAME.fullmatch(name) else None
            self.audit(request, known, "login_failed")
            return await self.login_form(request, "Wrong name or password.", 401)
        self.limiter.succeeded(keys[1])
        token, _ = accounts.start_session(self.engine, name)
        self.audit(request, name, "login")
        self.log(f"reader app: {name} logged in from {client}")
        response = RedirectResponse("/", status_code=303)
        self.cookie(response, SESSION_COOKIE, token, max_age=int(accounts.LIFETIME.total_seconds()))
        self.forget(response, LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: Request) -> Response:
        login = self.login_of(request)
        form = await request.form()
        self.check_csrf(form.get("csrf"), login.csrf)
        accounts.end_session(self.engine, request.cookies.get(SESSION_COOKIE))
        self.audit(request, login.reader, "logout")
        response = RedirectResponse("/login", status_code=303)
        self.forget(response, SESSION_COOKIE)
        return response

    async def worklist(self, request: Request) -> Response:
        login = self.login_of(request)
        started = time.perf_counter()
        params = request.query_params
        filters = queries.Filters.from_query(params)
        result = await run_in_threadpool(lambda: queries.page(self.engine, filters, after=params.get("after"),
                                                              before=params.get("before")))
        self.audit(request, login.reader, "worklist", detail=filters.query())
        response = self.page(request, "worklist.html", {
            "login": login, "f": filters, "page": result, "sites": queries.sites(self.engine),
            "query": filters.query()})
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    def _capture_id(self, request: Request) -> str:
        capture_id = request.path_params["capture_id"]
        if not CAPTURE_ID.fullmatch(capture_id):
            raise HTTPException(404, "no such capture")
        return capture_id

    async def capture(self, request: Request) -> Response:
        login = self.login_of(request)
        capture_id = self._capture_id(request)
        row = self.repo.row(capture_id)
        if row is None:
            raise HTTPException(404, "no such capture")
        filters = queries.Filters.from_query(request.query_params)
        previous, following = queries.neighbours(self.engine, filters, capture_id)
        self.audit(request, login.reader, "view", capture_id=capture_id)
        record = dict(row.record)
        return self.page(request, "capture.html", {
            "login": login, "row": row, "record": record, "m": machine_summary(record),
            "groups": bar_groups(record.get("findings")), "patient": record.get("patient") or {},
            "decisions": queries.decisions(self.engine, capture_id), "query": filters.query(),
            "previous": previous, "next": following})

    async def image(self, request: Request) -> Response:
        login = self.login_of(request)
        capture_id = self._capture_id(request)
        try:
            width = int(request.query_params.get("w", WIDTHS[1]))
        except ValueError:
            width = WIDTHS[1]
        row = self.repo.row(capture_id)
        data = await run_in_threadpool(self.images.png, capture_id, row.dicom_path, width) if row else None
        if data is None:
            raise HTTPException(404, "no image for this capture")
        self.audit(request, login.reader, "image", capture_id=capture_id, detail=f"w={width}")
        return Response(data, media_type="image/png")

    async def decide(self, request: Request) -> Response:
        login = self.login_of(request)
        capture_id = self._capture_id(request)
        form = await request.form()
        self.check_csrf(form.get("csrf"), login.csrf)
        fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        try:
            decision_id = queries.decide(self.engine, capture_id, login.reader, fields)
        except queries.BadDecision as exc:
            raise HTTPException(400, str(exc)) from None
        self.audit(request, login.reader, "decision", capture_id=capture_id,
                   detail=f"decision {decision_id} ({fields.get('action')})")
        query = fields.get("query", "")
        filters = queries.Filters.from_query(dict(_pairs(query)))
        _, following = queries.neighbours(self.engine, filters, capture_id)
        target = following if following and fields.get("then") == "next" else capture_id
        return RedirectResponse(f"/captures/{target}?{filters.query()}", status_code=303)

    async def reports(self, request: Request) -> Response:
        login = self.login_of(request)
        since, until = await run_in_threadpool(reports.default_range, self.engine)
        since = queries.parse_day(request.query_params.get("since")) or since
        until = queries.parse_day(request.query_params.get("until")) or until
        since = max(since, until - timedelta(days=365))  # a year at most per page
        days = await run_in_threadpool(reports.site_days, self.engine, since, until)
        self.audit(request, login.reader, "report", detail=f"{since}..{until}")
        return self.page(request, "reports.html", {"login": login, "since": since, "until": until,
                                                   "days": days, "sites": reports.per_site(days)})

    async def export(self, request: Request) -> Response:
        login = self.login_of(request)
        self.audit(request, login.reader, "export", detail="decisions.csv")

        def lines():
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            for row in queries.export_rows(self.engine):
                writer.writerow(row)
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()

        return StreamingResponse(lines(), media_type="text/csv", headers={
            "Content-Disposition": 'attachment; filename="reader-decisions.csv"'})


def _pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query[:2000])


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 303:
        return RedirectResponse(exc.headers["Location"], status_code=303)
    return PlainTextResponse(f"{exc.status_code}: {exc.detail}\n", status_code=exc.status_code,
                             headers=exc.headers)


class _Headers:
    """The security headers on every response (pages, images, errors, static files)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()
                         if k.lower().encode() not in present]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(engine, store: str | Path, *, secure: bool = False,
               limiter: accounts.LoginLimiter | None = None, log: Callable[[str], None] = print):
    """The ASGI application on ``engine`` (the hub's database) and ``store`` (its DICOM files)."""
    state = ReaderApp(engine, store, secure=secure, limiter=limiter, log=log)

    async def login_page(request: Request) -> Response:
        return await state.login_form(request)

    routes = [
        Route("/", state.worklist),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", state.login, methods=["POST"]),
        Route("/logout", state.logout, methods=["POST"]),
        Route("/captures/{capture_id}", state.capture),
        Route("/captures/{capture_id}/image", state.image),
        Route("/captures/{capture_id}/decision", state.decide, methods=["POST"]),
        Route("/export.csv", state.export),
        Route("/reports", state.reports),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.reader = state
    return _Headers(app)
