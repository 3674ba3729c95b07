"""Who may use the server, and who a request is: the page's logins (per-person ones from
webui/users.py, and the single ZIMAGE_AUTH_USER one), API keys (webui/keys.py), admins, and
failed logins slowed down per address.

A login is "on" when the single login is set or any person has been added. Then the page asks
for a name and password, every route of Gradio's wants the session its login made, and every
API route wants `Authorization: Bearer KEY`. Without one the page and the API are open
(loopback by default, with a warning when exposed).

Gradio keeps the sessions (a token in a cookie -> a name, in its app's `tokens`); a session
whose person has been removed ends at its next request, here.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from webui.keys import Keys
from webui.settings import Settings
from webui.users import Users

logger = logging.getLogger(__name__)

MAX_FAILED_LOGINS = 5  # from one address within FAILED_LOGIN_WINDOW_S; then refused until older ones age out
FAILED_LOGIN_WINDOW_S = 300
CHECKING_WAIT_S = 1  # what a refusal says while the checks under way use up the attempts
LOGIN_ROUTE = "/login"
GRADIO_ROUTES = "/gradio_api/"
# Gradio's routes that answer without a session (what the login page itself asks).
OPEN_GRADIO_ROUTES = {f"/gradio_api/{name}" for name in ("login_check", "app_id", "user", "token")}
_address: contextvars.ContextVar[str] = contextvars.ContextVar("login_address", default="?")


class Access:
    """Logins, keys and admins of one installation."""

    def __init__(
        self, settings: Settings, state_dir: Path, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`clock`: seconds for the failed-login window (a test passes its own)."""
        self.settings, self._clock = settings, clock
        self.users, self.keys = Users(state_dir), Keys(state_dir)
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self.failed_logins = 0
        self._checking: Counter[str] = Counter()  # login checks under way, per address
        self.gradio: Any = None  # Gradio's app (its session tokens), set once the page is mounted

    @property
    def login_on(self) -> bool:
        return bool(self.settings.auth_user) or bool(self.users.people())

    def is_login(self, name: str) -> bool:
        """Whether `name` may log in now: the single login, or a person not removed."""
        single = bool(self.settings.auth_user) and name == self.settings.auth_user
        return single or self.users.get(name) is not None

    def session_user(self, cookies: Mapping[str, str]) -> str | None:
        """The person of a page's session cookie; None without one. The sessions of a person who
        is no longer a login end here (Gradio forgets their tokens)."""
        app = self.gradio
        if app is None:
            return None
        token = cookies.get(f"access-token-{app.cookie_id}") or cookies.get(
            f"access-token-unsecure-{app.cookie_id}"
        )
        name = app.tokens.get(token) if token else None
        if name is None or self.is_login(name):
            return name
        ended = [t for t, person in list(app.tokens.items()) if person == name]
        for t in ended:
            app.tokens.pop(t, None)
        logger.info("Ended %d session(s) of %s, who is no longer a login", len(ended), name)
        return None

    def is_admin(self, name: str | None) -> bool:
        """The single login is an admin; a person is when added with --admin."""
        if not name:
            return False
        if self.settings.auth_user and name == self.settings.auth_user:
            return True
        person = self.users.get(name)
        return person is not None and person.admin

    async def check_login(self, name: str, password: str) -> bool:
        """Gradio's login check: the single login, or a person's (scrypt, off the event loop)."""
        s = self.settings
        ok = bool(s.auth_user) and hmac.compare_digest(
            f"{name}\0{password}".encode(), f"{s.auth_user}\0{s.auth_password}".encode()
        )
        ok = ok or await asyncio.to_thread(self.users.verify, name, password) is not None
        if not ok:
            address = _address.get()
            self._failed(address)
            logger.warning("Failed login for %r from %s", name, address)  # never the password
        return ok

    def person_of(self, authorization: str | None) -> str | None:
        """The person an `Authorization: Bearer KEY` header stands for, or None. A key may
        belong to a name without a login (a script's); removing a person revokes theirs."""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self.keys.person(key.strip())

    def begin_login(self, address: str) -> float:
        """Start a login check for `address`: 0 when it may go on (then `end_login` after it),
        else the seconds until it may try again. Checks under way count with the failures, so
        that many at once cannot get past the limit before the first of them fails."""
        now, failures = self._clock(), self._failures[address]
        while failures and now - failures[0] > FAILED_LOGIN_WINDOW_S:
            failures.popleft()
        for stale in [a for a, f in self._failures.items() if not f or now - f[-1] > FAILED_LOGIN_WINDOW_S]:
            if stale != address:
                del self._failures[stale]  # addresses whose failures all aged out
        if len(failures) + self._checking[address] < MAX_FAILED_LOGINS:
            self._checking[address] += 1
            return 0.0
        return FAILED_LOGIN_WINDOW_S - (now - failures[0]) if failures else CHECKING_WAIT_S

    def end_login(self, address: str) -> None:
        self._checking[address] -= 1
        if self._checking[address] <= 0:
            del self._checking[address]

    def _failed(self, address: str) -> None:
        self._failures[address].append(self._clock())
        self.failed_logins += 1  # since the start, for the metrics


class LoginGuard:
    """ASGI middleware for the page's logins.

    - The login route: an address with too many failed or unfinished checks gets 429 before
      its password is checked; the check then knows the address to log. The address is the
      connection's, or what a trusted proxy forwarded (uvicorn's proxy headers, set from
      ZIMAGE_TRUSTED_PROXIES).
    - With a login on, Gradio's routes want a session: Gradio itself leaves a few open
      (cancel, heartbeat, reset, streams), and a removed person's session ends here.
    """

    def __init__(self, app: ASGIApp, access: Access, login_on: bool) -> None:
        # As Gradio's login page was made at start-up: a person added to an open server counts
        # from its next start.
        self.app, self.access, self.login_on = app, access, login_on

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.login_on:
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        if scope["method"] == "POST" and path == LOGIN_ROUTE:
            await self._login(scope, receive, send)
            return
        user = self.access.session_user(HTTPConnection(scope).cookies)
        if user is None and path.startswith(GRADIO_ROUTES) and path not in OPEN_GRADIO_ROUTES:
            await JSONResponse({"detail": "Not authenticated"}, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = (scope.get("client") or ("?", 0))[0]
        wait = self.access.begin_login(address)
        if wait > 0:
            logger.warning(
                "Login refused for %s: %d failed logins in %d s",
                address,
                MAX_FAILED_LOGINS,
                FAILED_LOGIN_WINDOW_S,
            )
            message = f"Too many failed logins from this address; try again in {wait:.0f} s."
            await JSONResponse({"detail": message}, status_code=429)(scope, receive, send)
            return
        _address.set(address)
        try:
            await self.app(scope, receive, send)
        finally:
            self.access.end_login(address)
