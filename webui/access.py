"""Who may use the server, and who a request is: the page's logins (per-person ones from
webui/users.py, and the single ZIMAGE_AUTH_USER one), API keys (webui/keys.py), admins, and
failed logins slowed down per address.

A login is "on" when the single login is set or any person has been added. Then the page asks
for a name and password, and every API route wants `Authorization: Bearer KEY`. Without one the
page and the API are open (loopback by default, with a warning when exposed).
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
import time
from collections import defaultdict, deque
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from webui.keys import Keys
from webui.settings import Settings
from webui.users import Users

logger = logging.getLogger(__name__)

MAX_FAILED_LOGINS = 5  # from one address within FAILED_LOGIN_WINDOW_S; then refused until older ones age out
FAILED_LOGIN_WINDOW_S = 300
_address: contextvars.ContextVar[str] = contextvars.ContextVar("login_address", default="?")


class Access:
    """Logins, keys and admins of one installation."""

    def __init__(self, settings: Settings, state_dir: Path) -> None:
        self.settings = settings
        self.users, self.keys = Users(state_dir), Keys(state_dir)
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    @property
    def login_on(self) -> bool:
        return bool(self.settings.auth_user) or bool(self.users.people())

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
        """The person an `Authorization: Bearer KEY` header stands for, or None."""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self.keys.person(key.strip())

    def blocked_for(self, address: str) -> float:
        """Seconds until `address` may try to log in again; 0 when it may now."""
        now, failures = time.monotonic(), self._failures[address]
        while failures and now - failures[0] > FAILED_LOGIN_WINDOW_S:
            failures.popleft()
        if len(failures) < MAX_FAILED_LOGINS:
            return 0.0
        return FAILED_LOGIN_WINDOW_S - (now - failures[0])

    def _failed(self, address: str) -> None:
        self._failures[address].append(time.monotonic())


class LoginGuard:
    """ASGI middleware on the page's login route: an address with too many recent failures is
    refused (429) before its password is checked; the check then knows the address to log."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/") == "/login":
            address = (scope.get("client") or ("?", 0))[0]
            wait = self.access.blocked_for(address)
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
        await self.app(scope, receive, send)
