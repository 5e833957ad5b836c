"""The annotation web server (Starlette on uvicorn).

Labelers log in with their token, take the next task (a lease), perform it on
a screenshot of a browser the server drives, and submit; reviewers read any
trajectory as a step timeline and accept or reject it; admins see the queue.

Security, in one place:
- every route but the login page needs a session (server-side, looked up by
  the hash of an unguessable id in an HttpOnly, SameSite=Strict cookie);
- roles are checked on the server for every route (`ROLE_*` below);
- every state-changing request needs the session's CSRF token (a header for
  the page's fetches, a form field for forms) and a same-origin `Origin`
  (or `Referer`), and cross-site fetch metadata is refused;
- failed login attempts are rate-limited per client address and per user
  (the token's public key id), so one user's token is not guessed from many
  addresses; successful ones never count: many labelers behind one proxy all
  log in;
- templates autoescape everything, the page's script writes text with
  `textContent` only, and the Content-Security-Policy allows no inline script;
- no request path or parameter reaches the filesystem: static files are a
  fixed in-memory table, screenshots come from the database or from staging
  rows found by a validated trajectory id;
- tokens are never logged (and log records are masked for their shape anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import inspect
import logging
import math
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from annotation_ui import agreement
from annotation_ui.recording import ActionError, Recorder, action_from_request, clean_thought
from annotation_ui.staged import TRAJECTORY_ID, Trajectories
from annotation_ui.store import SESSION_TTL_S, LeaseLost, Store, User, encode_trajectory, token_key
from synth.actions import to_aguvis
from synth.env import BrowserConfig, EpisodeError
from synth.schema import Action

log = logging.getLogger("synth.annotate")

SESSION_COOKIE = "synth_session"
LOGIN_COOKIE = "synth_login"
ROLE_LABEL = frozenset({"labeler", "admin"})
ROLE_REVIEW = frozenset({"reviewer", "admin"})
ROLE_ADMIN = frozenset({"admin"})
HOME = {"labeler": "/label", "reviewer": "/review", "admin": "/admin"}
REVIEW_TAGS = (
    "wrong-answer", "wrong-element", "unnecessary-steps", "incomplete", "instruction-unclear",
    "judge-wrong", "unsafe", "other",
)
SKIP_REASONS = ("task unclear", "task impossible", "page broken", "other")
PAGE_SIZE = 50
MAX_BODY = 64 * 1024

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class Settings:
    db: Path
    out_dir: Path | str | None = None
    """The pipeline's output: a local path or a filesystem URI (synth.storage)."""
    lease_seconds: float = 600.0
    max_skips: int = 3
    guidelines: str = ""
    browser: BrowserConfig = field(default_factory=BrowserConfig)
    site_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    login_attempts: int = 10
    login_window_s: float = 60.0
    """Failed logins per client address per window."""
    login_attempts_per_user: int = 10
    login_user_window_s: float = 60.0
    """Failed logins per user (token key id) per window, from any address.
    The trade-off: anyone who knows a key id (it is not secret) can lock its
    user out by failing on purpose, for as long as they keep at it plus one
    window; hence a short window. Guessing the 256-bit secret is hopeless
    anyway: this limit only stops a spread-out attack from costing nothing."""
    max_episodes: int = 64
    title: str = "synth annotate"
    submit_undo_s: float = 3.0
    """The labeler page waits this long before sending a submit, with an Undo."""


class RateLimiter:
    """At most `limit` events per `window` seconds per key (sliding window).

    The login counts only failed attempts: successful logins of many people
    behind one proxy never lock each other out."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._events[key]
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def blocked(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        now = time.monotonic()
        q = self._recent(key, now)
        return q[0] + self.window - now if len(q) >= self.limit else 0.0

    def record(self, key: str) -> None:
        """Count one event (a failed login) against `key`."""
        now = time.monotonic()
        self._recent(key, now).append(now)
        if len(self._events) > 10000:  # forget idle keys so memory stays bounded
            for k in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]:
                del self._events[k]


def render_markdown(text: str) -> Markup:
    """Guidelines markdown as HTML: raw HTML in the source is escaped, unsafe
    link schemes (javascript:, data:, ...) are refused by markdown-it."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
    return Markup(md.render(text or ""))


def _static_files() -> dict[str, tuple[bytes, str]]:
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    out = {}
    for entry in resources.files("annotation_ui").joinpath("static").iterdir():
        suffix = Path(entry.name).suffix
        if suffix in types:
            out[entry.name] = (entry.read_bytes(), types[suffix])
    return out


@dataclass
class Ctx:
    user: User
    csrf: str
    sid: str


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _item_id(data: dict[str, Any]) -> int:
    """The request's queue item id; SQLite integers are 64-bit, so a larger
    number is refused here rather than overflowing in the query (a 500)."""
    item_id = data.get("item_id")
    if isinstance(item_id, bool) or not isinstance(item_id, int) or not 0 < item_id < 2**63:
        raise HttpError(400, "item_id must be a queue item number")
    return item_id


def _override(form: Any, verdict: str, *, judge_failed: bool) -> str | None:
    """The reason a reviewer gives for overriding the judge; None when the
    review is no override, "" when it must be one but lacks the tick or the reason."""
    if verdict != "accept" or not judge_failed:
        return None
    reason = form.get("override_reason")
    reason = reason.strip()[:2000] if isinstance(reason, str) else ""
    return reason if form.get("override") == "1" and reason else ""


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _same_origin(request: Request) -> bool:
    """Refuse requests a browser marks cross-site, and any whose Origin (or,
    lacking one, Referer) is not this server."""
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return True  # a non-browser client; the CSRF token still has to match
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    host = request.headers.get("host", "")
    return origin == f"{request.url.scheme}://{host}"


class SecurityHeaders:
    """Pure ASGI middleware: the same protective headers on every response."""

    HEADERS = [
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.HEADERS if k not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings, *, recorder: Recorder | None = None) -> Starlette:
    store = Store(settings.db, lease_seconds=settings.lease_seconds, max_skips=settings.max_skips)
    recorder = recorder or Recorder(settings.browser, settings.site_options, settings.max_episodes)
    trajectories = Trajectories(store, settings.out_dir)
    by_ip = RateLimiter(settings.login_attempts, settings.login_window_s)
    by_user = RateLimiter(settings.login_attempts_per_user, settings.login_user_window_s)
    static = _static_files()
    guidelines_html = render_markdown(settings.guidelines)
    jinja = Environment(
        loader=PackageLoader("annotation_ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    jinja.filters["when"] = lambda ts: time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"
    heartbeat_s = max(1.0, min(60.0, settings.lease_seconds / 3))
    warn_s = min(120.0, settings.lease_seconds / 2)
    """The page warns an idle labeler this long before their lease ends."""
    run = asyncio.to_thread

    # ------------------------------------------------------------ helpers

    def page(request: Request, template: str, ctx: Ctx | None, status: int = 200, **values: Any) -> HTMLResponse:
        html = jinja.get_template(template).render(
            user=ctx.user if ctx else None, csrf=ctx.csrf if ctx else "", title=settings.title,
            path=request.url.path, **values,
        )
        return HTMLResponse(html, status_code=status)

    async def session_of(request: Request) -> Ctx | None:
        sid = request.cookies.get(SESSION_COOKIE, "")
        if not sid:
            return None
        found = await run(store.session, sid)
        return Ctx(found[0], found[1], sid) if found else None

    async def csrf_ok(request: Request, ctx: Ctx) -> bool:
        if not _same_origin(request):
            return False
        sent = request.headers.get("x-csrf-token")
        if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            sent = (await request.form()).get("csrf")
        return isinstance(sent, str) and hmac.compare_digest(sent.encode(), ctx.csrf.encode())

    def guard(roles: frozenset[str], *, api: bool) -> Callable:
        """Session, role and (for anything but GET) CSRF checks around a route."""

        def wrap(fn: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
            @functools.wraps(fn)
            async def endpoint(request: Request) -> Response:
                ctx = await session_of(request)
                if ctx is None:
                    stale = bool(request.cookies.get(SESSION_COOKIE))
                    if api or request.method != "GET":
                        return JSONResponse({"error": "your session ended; log in again" if stale else "log in first",
                                             "expired": stale}, status_code=401)
                    # say why the login page is shown when there was a session
                    return RedirectResponse("/login?expired=1" if stale else "/login", status_code=303)
                if ctx.user.role not in roles:
                    log.info("refused", extra={"user": ctx.user.name, "role": ctx.user.role, "route": request.url.path})
                    if api:
                        return JSONResponse({"error": "your role may not do this"}, status_code=403)
                    return page(request, "error.html", ctx, 403, message="Your role may not open this page.")
                if request.method not in ("GET", "HEAD"):
                    length = request.headers.get("content-length") or "0"
                    if not length.isdigit() or int(length) > MAX_BODY:
                        return JSONResponse({"error": "request too large"}, status_code=413)
                    if not await csrf_ok(request, ctx):
                        log.info("csrf refused", extra={"user": ctx.user.name, "route": request.url.path})
                        return JSONResponse({"error": "cross-site or missing CSRF token"}, status_code=403)
                try:
                    return await fn(request, ctx)
                except HttpError as e:
                    if api:
                        return JSONResponse({"error": e.message}, status_code=e.status)
                    return page(request, "error.html", ctx, e.status, message=e.message)

            return endpoint

        return wrap

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply to parse
            raise HttpError(400, "expected a JSON body") from None
        if not isinstance(data, dict):
            raise HttpError(400, "expected a JSON object")
        return data

    async def lease_state(ctx: Ctx) -> dict[str, Any]:
        """The labeler's lease and open episode (reopened and replayed if the
        server restarted), plus their progress."""
        lease = await run(store.current_lease, ctx.user)
        out: dict[str, Any] = {"lease": None, "heartbeat_s": heartbeat_s}
        if lease is not None:
            try:
                ep = await recorder.open(lease.item_id, ctx.user.id, ctx.user.name, lease.task, lease.draft)
            except Exception as e:  # noqa: BLE001 - tell the labeler; they can retry or skip
                log.warning("cannot open episode", extra={"user": ctx.user.name, "item": lease.item_id, "error": str(e)})
                out["lease"] = {"item_id": lease.item_id, "template_id": lease.task.template_id,
                                "instruction": lease.task.instruction or "", "broken": f"cannot open the task: {e}"}
            else:
                out["lease"] = ep.state()
            out["lease"]["expires_in"] = max(0.0, lease.expires - time.time())
        else:
            await run(store.expire_leases)  # so a lease that just ran out is in lost_drafts already
            out["lost"] = await run(store.lost_draft, ctx.user)
        out["progress"] = await run(store.progress, ctx.user)
        return out

    async def held(ctx: Ctx, data: dict[str, Any]):
        """The labeler's lease on the item the page shows, and its episode."""
        lease = await run(store.current_lease, ctx.user)
        if lease is None or data.get("item_id") != lease.item_id:
            raise HttpError(409, "this task is no longer yours (the lease expired or it was submitted); take the next one")
        try:
            ep = await recorder.open(lease.item_id, ctx.user.id, ctx.user.name, lease.task, lease.draft)
        except EpisodeError as e:
            raise HttpError(503, str(e)) from None
        return lease, ep

    async def saved(ctx: Ctx, lease: Any, ep: Any) -> Response:
        """Store the episode's draft under the lease (a lost lease closes the
        episode) and answer with the labeler's new state."""
        try:
            await run(store.save_draft, ctx.user, lease.item_id, ep.draft)
        except LeaseLost as e:
            await recorder.close(lease.item_id)
            raise HttpError(409, str(e)) from None
        return JSONResponse(await lease_state(ctx))

    # ------------------------------------------------------------ login

    async def login_form(request: Request) -> Response:
        if await session_of(request) is not None:
            return RedirectResponse("/", status_code=303)
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        # double submit: the same random value in a cookie and in the form
        resp = page(request, "login.html", None, error=request.query_params.get("error") == "1", login_csrf=token,
                    expired=request.query_params.get("expired") == "1")
        resp.delete_cookie(SESSION_COOKIE, path="/")  # a stale one; the page asks for the token again
        resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", max_age=3600,
                        secure=request.url.scheme == "https")
        return resp

    def too_many(retry: float, client: str, key: str | None) -> Response:
        log.warning("login rate limited", extra={"client": client, "key_id": key})
        return JSONResponse({"error": "too many failed login attempts; wait a minute"}, status_code=429,
                            headers={"Retry-After": str(math.ceil(retry))})

    async def login_failed(ip: str, kid: str | None) -> Response:
        """Count the failure against the address, and against the user when
        the key id names one (an unknown or missing key id names nobody)."""
        by_ip.record(f"ip:{ip}")
        known = kid is not None and await run(store.has_key, kid)
        if known:
            by_user.record(f"user:{kid}")
        log.info("login failed", extra={"client": ip, "key_id": kid if known else None})
        return RedirectResponse("/login?error=1", status_code=303)

    async def login(request: Request) -> Response:
        ip = _client(request)
        retry = by_ip.blocked(f"ip:{ip}")
        if retry:
            return too_many(retry, ip, None)
        if not _same_origin(request):
            return JSONResponse({"error": "cross-site login refused"}, status_code=403)
        form = await request.form()
        cookie, sent = request.cookies.get(LOGIN_COOKIE, ""), form.get("csrf")
        if not cookie or not isinstance(sent, str) or not hmac.compare_digest(cookie.encode(), sent.encode()):
            return JSONResponse({"error": "login form expired; reload the page"}, status_code=403)
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        kid = token_key(token)
        retry = by_user.blocked(f"user:{kid}") if kid else 0.0
        if retry:  # even the right token waits: the limit is there for when someone else has tried it
            return too_many(retry, ip, kid)
        user = await run(store.user_by_token, token) if token else None
        if user is None:
            return await login_failed(ip, kid)
        sid, _ = await run(store.create_session, user)
        log.info("login", extra={"user": user.name, "role": user.role, "client": ip})
        resp = RedirectResponse(HOME[user.role], status_code=303)
        resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", max_age=int(SESSION_TTL_S),
                        secure=request.url.scheme == "https", path="/")
        resp.delete_cookie(LOGIN_COOKIE)
        return resp

    @guard(frozenset({"labeler", "reviewer", "admin"}), api=False)
    async def logout(request: Request, ctx: Ctx) -> Response:
        await run(store.end_session, ctx.sid)
        log.info("logout", extra={"user": ctx.user.name})
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @guard(frozenset({"labeler", "reviewer", "admin"}), api=False)
    async def home(request: Request, ctx: Ctx) -> Response:
        return RedirectResponse(HOME[ctx.user.role], status_code=303)

    # ------------------------------------------------------------ labeling

    @guard(ROLE_LABEL, api=False)
    async def label_page(request: Request, ctx: Ctx) -> Response:
        return page(request, "label.html", ctx, guidelines=guidelines_html, skip_reasons=SKIP_REASONS,
                    heartbeat_s=heartbeat_s, warn_s=warn_s, undo_ms=int(settings.submit_undo_s * 1000))

    @guard(ROLE_LABEL, api=True)
    async def api_state(request: Request, ctx: Ctx) -> Response:
        return JSONResponse(await lease_state(ctx))

    @guard(ROLE_LABEL, api=True)
    async def api_next(request: Request, ctx: Ctx) -> Response:
        lease = await run(store.lease_next, ctx.user)
        if lease is not None:
            log.info("lease", extra={"user": ctx.user.name, "item": lease.item_id, "task": lease.task.task_id})
        return JSONResponse(await lease_state(ctx))

    @guard(ROLE_LABEL, api=True)
    async def api_reclaim(request: Request, ctx: Ctx) -> Response:
        """Take back the task whose lease this labeler lost, with its draft."""
        item_id = _item_id(await body(request))
        try:
            lease = await run(store.reclaim, ctx.user, item_id)
        except LeaseLost as e:
            raise HttpError(409, str(e)) from None
        log.info("reclaim", extra={"user": ctx.user.name, "item": lease.item_id, "steps": len(lease.draft)})
        return JSONResponse(await lease_state(ctx))

    @guard(ROLE_LABEL, api=True)
    async def api_heartbeat(request: Request, ctx: Ctx) -> Response:
        data = await body(request)
        item_id = _item_id(data)
        try:
            expires = await run(store.heartbeat, ctx.user, item_id)
        except LeaseLost as e:
            ep = recorder.episodes.get(item_id)
            if ep is not None and ep.user_id == ctx.user.id:
                await recorder.close(item_id)
            raise HttpError(409, str(e)) from None
        return JSONResponse({"expires_in": expires - time.time()})

    @guard(ROLE_LABEL, api=True)
    async def api_act(request: Request, ctx: Ctx) -> Response:
        data = await body(request)
        try:
            action = action_from_request(data)
            thought = clean_thought(data.get("thought"))
        except ActionError as e:
            raise HttpError(400, str(e)) from None
        lease, ep = await held(ctx, data)
        try:
            await recorder.act(ep, action, thought)
        except ActionError as e:
            raise HttpError(400, str(e)) from None
        except EpisodeError as e:
            raise HttpError(503, f"the page crashed ({e}); reload to replay your steps") from None
        return await saved(ctx, lease, ep)

    @guard(ROLE_LABEL, api=True)
    async def api_undo(request: Request, ctx: Ctx) -> Response:
        data = await body(request)
        lease, ep = await held(ctx, data)
        try:
            await recorder.undo(ep)
        except ActionError as e:
            raise HttpError(400, str(e)) from None
        return await saved(ctx, lease, ep)

    @guard(ROLE_LABEL, api=True)
    async def api_submit(request: Request, ctx: Ctx) -> Response:
        data = await body(request)
        answer = data.get("answer")
        if answer is not None and (not isinstance(answer, str) or len(answer) > 2000):
            raise HttpError(400, "answer must be text (at most 2000 characters)")
        answer = answer.strip() if isinstance(answer, str) and answer.strip() else None
        try:
            thought = clean_thought(data.get("thought"))
        except ActionError as e:
            raise HttpError(400, str(e)) from None
        lease, ep = await held(ctx, data)
        attempt = await run(store.attempt, ctx.user, lease.task.task_id)
        trajectory = await recorder.submit(ep, answer, thought, attempt)  # with its final_screenshot
        blob = await run(encode_trajectory, trajectory)
        try:
            await run(store.submit, ctx.user, lease.item_id, trajectory, blob)
        except LeaseLost as e:
            raise HttpError(409, f"{e}; the trajectory was not stored") from None
        log.info("submit", extra={"user": ctx.user.name, "item": lease.item_id, "trajectory": trajectory.trajectory_id,
                                  "passed": trajectory.verdict.passed, "steps": len(trajectory.steps)})
        return JSONResponse({
            "trajectory_id": trajectory.trajectory_id, "status": trajectory.status,
            "passed": trajectory.verdict.passed, "reason": trajectory.reject_reason or trajectory.verdict.reason,
            "steps": len(trajectory.steps), "progress": await run(store.progress, ctx.user),
        })

    @guard(ROLE_LABEL, api=True)
    async def api_skip(request: Request, ctx: Ctx) -> Response:
        data = await body(request)
        reason = data.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
            raise HttpError(400, "say why you skip (1-500 characters)")
        item_id = _item_id(data)
        try:
            state = await run(store.skip, ctx.user, item_id, reason)
        except LeaseLost as e:
            raise HttpError(409, str(e)) from None
        await recorder.close(item_id)
        log.info("skip", extra={"user": ctx.user.name, "item": item_id, "state": state})
        return JSONResponse({"state": state, "progress": await run(store.progress, ctx.user)})

    @guard(ROLE_LABEL, api=True)
    async def api_screenshot(request: Request, ctx: Ctx) -> Response:
        lease = await run(store.current_lease, ctx.user)
        ep = recorder.episodes.get(lease.item_id) if lease else None
        if ep is None or ep.user_id != ctx.user.id or ep.obs is None or not ep.obs.screenshot:
            return Response(status_code=404)
        return Response(ep.obs.screenshot, media_type="image/png", headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------ reviewing

    def _ordered(rows: list[dict[str, Any]], reviewed: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        rank = {"human": 0, "bootstrap": 1, "solver": 2}
        return sorted(
            rows,
            key=lambda t: (
                0 if t["source"] == "bootstrap" and t["status"] == "rejected" else 1,
                t["trajectory_id"] in reviewed,
                rank.get(t["source"], 3),
                -(t["started_at"] or 0.0),
                t["trajectory_id"],
            ),
        )

    def _filtered(request: Request, rows: list[dict[str, Any]], reviewed: dict[str, dict[str, Any]]):
        q = request.query_params
        source = q.get("source", "all")
        status = q.get("status", "all")
        rv = q.get("reviewed", "all")
        if source in ("human", "solver", "bootstrap"):
            rows = [r for r in rows if r["source"] == source]
        if status in ("accepted", "rejected"):
            rows = [r for r in rows if r["status"] == status]
        if rv == "no":
            rows = [r for r in rows if r["trajectory_id"] not in reviewed]
        elif rv == "yes":
            rows = [r for r in rows if r["trajectory_id"] in reviewed]
        filters = {"source": source if source in ("human", "solver", "bootstrap") else "all",
                   "status": status if status in ("accepted", "rejected") else "all",
                   "reviewed": rv if rv in ("yes", "no") else "all"}
        return _ordered(rows, reviewed), filters

    async def _review_index() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        rows = await run(trajectories.list)
        reviewed = {r["trajectory_id"]: r for r in await run(store.latest_reviews)}
        return rows, reviewed

    @guard(ROLE_REVIEW, api=False)
    async def review_list(request: Request, ctx: Ctx) -> Response:
        rows, reviewed = await _review_index()
        rows, filters = _filtered(request, rows, reviewed)
        try:
            pg = max(0, int(request.query_params.get("page", "0")))
        except ValueError:
            pg = 0
        total = len(rows)
        shown = rows[pg * PAGE_SIZE : (pg + 1) * PAGE_SIZE]
        return page(request, "review_list.html", ctx, rows=shown, reviewed=reviewed, filters=filters,
                    page_no=pg, pages=max(1, math.ceil(total / PAGE_SIZE)), total=total)

    def _overlay(step: dict[str, Any]) -> dict[str, Any]:
        """What to draw on a step's screenshot, in the area's CSS pixels."""
        obs, a = step["observation"], step["action"]
        area = obs["area"]
        w, h = area["width"], area["height"]
        out: dict[str, Any] = {"w": w, "h": h, "r": max(w, h) / 28, "point": None, "to": None, "box": None, "label": None}
        if a.get("x") is not None and a.get("y") is not None:
            out["point"] = (a["x"] * w, a["y"] * h)
        if a.get("x2") is not None and a.get("y2") is not None:
            out["to"] = (a["x2"] * w, a["y2"] * h)
        el = step.get("element")
        if el and el.get("box"):
            b = el["box"]
            out["box"] = (b["x"] - area["x"], b["y"] - area["y"], b["width"], b["height"])
        if a["name"] == "type":
            out["label"] = f"type: {a.get('text') or ''}"
        elif a["name"] == "press":
            out["label"] = f"press: {a.get('key') or ''}"
        elif a["name"] == "scroll":
            out["label"] = f"scroll dy={a.get('dy') or 0:g}"
        elif a["name"] == "answer":
            out["label"] = f"answer: {a.get('text') or ''}"
        elif a["name"] == "select":
            out["label"] = f"select: {a.get('text') or ''}"
        return out

    async def _final_shot(t: dict[str, Any]) -> tuple[bytes | None, str | None]:
        """The screenshot of the page after the last action, and its URL when
        it differs from the trajectory's: every source's trajectory carries
        it (`final_screenshot`); the queue's `final_states` holds it for human
        trajectories submitted before that."""
        if t.get("final_screenshot"):
            return t["final_screenshot"], None
        found = await run(store.final_state, t["trajectory_id"])
        return (found["screenshot"], found["url"]) if found else (None, None)

    async def _final_state(t: dict[str, Any]) -> dict[str, Any]:
        """The page after the last action; for a trajectory staged before
        that was kept, the last step's page when that step was the answer
        (which changes nothing on the page); else only the final URL."""
        tid = t["trajectory_id"]
        shot, url = await _final_shot(t)
        if shot:
            return {"src": f"/review/{tid}/final.png", "url": url or t.get("final_url") or "",
                    "note": "the page after the last action"}
        steps = t["steps"]
        if steps and steps[-1]["action"]["name"] in ("answer", "done") and steps[-1]["observation"].get("screenshot"):
            return {"src": f"/review/{tid}/step/{len(steps) - 1}.png", "url": steps[-1]["observation"]["url"],
                    "note": "the page when the answer was given (after the last page action)"}
        return {"src": None, "url": t.get("final_url") or "",
                "note": "no screenshot after the last action was kept; the final URL is all that is known"}

    @guard(ROLE_REVIEW, api=False)
    async def review_detail(request: Request, ctx: Ctx) -> Response:
        tid = request.path_params["tid"]
        if not TRAJECTORY_ID.match(tid):
            raise HttpError(404, "no such trajectory")
        t = await run(trajectories.get, tid)
        if t is None:
            raise HttpError(404, "no such trajectory")
        steps = [
            {
                "index": s["index"],
                "text": to_aguvis(Action.model_validate(s["action"])),
                "name": s["action"]["name"],
                "element": s.get("element"),
                "thought": (s.get("monologue") or {}).get("thought") or "",
                "error": s.get("error"),
                "url": s["observation"]["url"],
                "has_shot": bool(s["observation"].get("screenshot")),
                "overlay": _overlay(s),
            }
            for s in t["steps"]
        ]
        reviews = await run(store.reviews, tid)
        rows, reviewed = await _review_index()
        ordered = _ordered(rows, reviewed)
        nxt = next((r["trajectory_id"] for r in ordered
                    if r["trajectory_id"] not in reviewed and r["trajectory_id"] != tid), None)
        mine = next((r for r in reviews if r["reviewer"] == ctx.user.name), None)
        others = [p for p in await run(agreement.pairs, store, t["task_id"]) if tid in (p.a, p.b)]
        current = reviews and max(reviews, key=lambda r: (r["reviewed_at"], r["reviewer"]))
        return page(request, "review_detail.html", ctx, t=t, steps=steps, reviews=reviews, tags=REVIEW_TAGS,
                    saved=request.query_params.get("saved") == "1", next_id=nxt, final=await _final_state(t),
                    mine=mine, current=current or None, judge_failed=not (t.get("verdict") or {}).get("passed"),
                    error=request.query_params.get("error") == "override", others=others)

    @guard(ROLE_REVIEW, api=True)
    async def review_shot(request: Request, ctx: Ctx) -> Response:
        tid, n = request.path_params["tid"], request.path_params["n"]
        if not TRAJECTORY_ID.match(tid):
            return Response(status_code=404)
        t = await run(trajectories.get, tid)
        if t is None or not 0 <= n < len(t["steps"]):
            return Response(status_code=404)
        png = t["steps"][n]["observation"].get("screenshot")
        if not png:
            return Response(status_code=404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @guard(ROLE_REVIEW, api=False)
    async def review_agreement(request: Request, ctx: Ctx) -> Response:
        """Agreement per template between labelers of the same task, and the pairs that disagree."""
        compared = await run(agreement.pairs, store)
        return page(request, "review_agreement.html", ctx, rows=agreement.table(compared),
                    pairs=sorted((p for p in compared if not p.agrees),
                                 key=lambda p: (p.same_outcome, p.step_agreement, p.template_id, p.task_id)))

    @guard(ROLE_REVIEW, api=True)
    async def review_final_shot(request: Request, ctx: Ctx) -> Response:
        tid = request.path_params["tid"]
        t = await run(trajectories.get, tid) if TRAJECTORY_ID.match(tid) else None
        shot = (await _final_shot(t))[0] if t is not None else None
        if not shot:
            return Response(status_code=404)
        return Response(shot, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @guard(ROLE_REVIEW, api=False)
    async def review_post(request: Request, ctx: Ctx) -> Response:
        tid = request.path_params["tid"]
        t = await run(trajectories.get, tid) if TRAJECTORY_ID.match(tid) else None
        if t is None:
            raise HttpError(404, "no such trajectory")
        form = await request.form()
        verdict = form.get("verdict")
        if verdict not in ("accept", "reject"):
            raise HttpError(400, "choose accept or reject")
        override = _override(form, verdict, judge_failed=not (t.get("verdict") or {}).get("passed"))
        if override == "":
            # accepting what the judge failed is an override, said so and why; the form keeps the page
            return RedirectResponse(f"/review/{tid}?error=override", status_code=303)
        tags = [t for t in form.getlist("tags") if isinstance(t, str) and t in REVIEW_TAGS]
        extra = form.get("extra_tags")
        if isinstance(extra, str):
            for tag in extra.split(","):
                tag = tag.strip().lower()[:40]
                if tag and tag not in tags:
                    tags.append(tag)
        comment = form.get("comment")
        comment = comment.strip()[:4000] if isinstance(comment, str) else ""
        if override and "judge-wrong" not in tags:
            tags.insert(0, "judge-wrong")
        await run(store.add_review, tid, ctx.user.name, verdict, tags[:20], comment, override)
        log.info("review", extra={"user": ctx.user.name, "trajectory": tid, "verdict": verdict,
                                  "override_judge": override is not None})
        nxt = form.get("next")
        if nxt == "1":
            rows, reviewed = await _review_index()
            after = next((r["trajectory_id"] for r in _ordered(rows, reviewed) if r["trajectory_id"] not in reviewed), None)
            if after:
                return RedirectResponse(f"/review/{after}", status_code=303)
            return RedirectResponse("/review", status_code=303)
        return RedirectResponse(f"/review/{tid}?saved=1", status_code=303)

    # ------------------------------------------------------------ admin

    @guard(ROLE_ADMIN, api=False)
    async def admin(request: Request, ctx: Ctx) -> Response:
        await run(store.expire_leases)
        reviews = await run(store.latest_reviews)
        verdicts = {"accept": 0, "reject": 0}
        for r in reviews:
            verdicts[r["verdict"]] += 1
        return page(
            request, "admin.html", ctx, counts=await run(store.counts), people=await run(store.per_labeler),
            templates=await run(store.by_template), skips=await run(store.recent_skips), verdicts=verdicts,
            episodes=len(recorder.episodes), lease_seconds=settings.lease_seconds,
        )

    async def static_file(request: Request) -> Response:
        found = static.get(request.path_params["name"])
        if found is None:
            return Response(status_code=404)
        data, media = found
        return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})

    # ------------------------------------------------------------ lifecycle

    async def sweep() -> None:
        """Return expired leases to the queue and close their episodes."""
        while True:
            await asyncio.sleep(max(0.5, min(5.0, settings.lease_seconds / 4)))
            try:
                n = await run(store.expire_leases)
                if n:
                    log.info("leases expired", extra={"count": n})
                live = await run(store.live_leases)
                for item_id, ep in list(recorder.episodes.items()):
                    if (item_id, ep.user_id) not in live:
                        await recorder.close(item_id)
            except Exception as e:  # noqa: BLE001 - the sweeper must keep going
                log.warning("sweep failed", extra={"error": str(e)})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await recorder.start()
        sweeper = asyncio.create_task(sweep())
        log.info("serving", extra={"db": str(settings.db), "out": str(settings.out_dir), "lease_s": settings.lease_seconds})
        try:
            yield
        finally:
            sweeper.cancel()
            await recorder.stop()

    routes = [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", home, methods=["GET"]),
        Route("/label", label_page, methods=["GET"]),
        Route("/api/state", api_state, methods=["GET"]),
        Route("/api/next", api_next, methods=["POST"]),
        Route("/api/heartbeat", api_heartbeat, methods=["POST"]),
        Route("/api/reclaim", api_reclaim, methods=["POST"]),
        Route("/api/act", api_act, methods=["POST"]),
        Route("/api/undo", api_undo, methods=["POST"]),
        Route("/api/submit", api_submit, methods=["POST"]),
        Route("/api/skip", api_skip, methods=["POST"]),
        Route("/api/screenshot", api_screenshot, methods=["GET"]),
        Route("/review", review_list, methods=["GET"]),
        Route("/review/agreement", review_agreement, methods=["GET"]),
        Route("/review/{tid:str}", review_detail, methods=["GET"]),
        Route("/review/{tid:str}", review_post, methods=["POST"]),
        Route("/review/{tid:str}/step/{n:int}.png", review_shot, methods=["GET"]),
        Route("/review/{tid:str}/final.png", review_final_shot, methods=["GET"]),
        Route("/admin", admin, methods=["GET"]),
        Route("/static/{name:str}", static_file, methods=["GET"]),
    ]

    limits = {"max_body_size": MAX_BODY} if "max_body_size" in inspect.signature(Starlette).parameters else {}
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(SecurityHeaders)], **limits)

    app.state.store = store
    app.state.recorder = recorder
    return app
