"""The console's access check, the one every endpoint makes, and the login, logout and
session endpoints.

``Gate.check(request, role, post=...)`` answers the request's ``Identity`` or the refusal
to send instead: 401 with no identity, 403 for identity headers from an address that is
no configured proxy, for a user without the role, and for a POST without the session's
CSRF token. Without a users file and a proxy mapping the console runs with no login
(everyone an operator), which ``Gate`` allows on a loopback bind only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from typing import Final

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.console.agents import Pseudonyms
from worker.console.auth import proxy
from worker.console.auth.audit import Shown, audit
from worker.console.auth.ratelimit import FailureLimit
from worker.console.auth.roles import Identity, Role
from worker.console.auth.sessions import LIFETIME_S, Sessions, load_key
from worker.console.auth.users import Users
from worker.console.hub import ConsoleSettings
from worker.console.web import error, json_body, json_response, refuse_post
from worker.errors import ConfigError

log = structlog.get_logger("console")

COOKIE: Final = "console_session"
CSRF_HEADER: Final = "x-csrf-token"
MAX_LOGIN_BYTES: Final = 4096
# OWASP: refuse a name after a few failures, an address after more (a shared office).
USER_FAILURES: Final = 5
ADDRESS_FAILURES: Final = 20
FAILURE_WINDOW_S: Final = 15 * 60


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Gate:
    def __init__(
        self,
        cs: ConsoleSettings,
        pseudonyms: Pseudonyms,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if bool(cs.trusted_proxies) != (cs.proxy_roles_file is not None):
            raise ConfigError("--trusted-proxy and --proxy-roles-file go together")
        if (cs.certfile is None) != (cs.keyfile is None):
            raise ConfigError("--certfile and --keyfile go together")
        self.users = None if cs.users_file is None else Users.from_file(cs.users_file)
        self.roles = (
            None if cs.proxy_roles_file is None else proxy.RoleMap.from_file(cs.proxy_roles_file)
        )
        self.proxies = proxy.networks(cs.trusted_proxies)
        self.open = self.users is None and self.roles is None
        if self.open and not is_loopback(cs.host):
            raise ConfigError(
                f"the console would serve {cs.host} with no login: give --users-file, or "
                "--trusted-proxy with --proxy-roles-file (docs/console.md: access)"
            )
        self.sessions = Sessions(load_key(cs.session_key_file), clock)
        self.secure = cs.certfile is not None
        self.per_user = FailureLimit(USER_FAILURES, FAILURE_WINDOW_S, clock)
        self.per_address = FailureLimit(ADDRESS_FAILURES, FAILURE_WINDOW_S, clock)
        self.pseudonyms = pseudonyms
        self.shown = Shown()

    @property
    def mode(self) -> str:
        if self.open:
            return "open"
        return "+".join(
            m for m, on in (("standalone", self.users), ("proxy", self.roles)) if on is not None
        )

    def identify(self, request: Request) -> Identity | Response:
        peer = request.client.host if request.client else None
        headers = request.headers
        claimed = any(headers.get(h) for h in proxy.IDENTITY_HEADERS)
        if claimed and self.roles is not None and proxy.trusted(peer, self.proxies):
            found = self.roles.identity(
                headers.get(proxy.USER_HEADER, ""),
                headers.get(proxy.EMAIL_HEADER, ""),
                headers.get(proxy.GROUPS_HEADER, ""),
            )
            if found is None:
                return error(403, "the proxy's user has no role on this console")
            return found
        if claimed and not self.open:
            # Anyone can write these headers: only the proxy's are believed.
            log.warning("identity_header_refused", peer=peer, path=request.url.path)
            return error(403, "identity headers are taken from the configured proxy only")
        if self.open:
            return Identity(None, Role.OPERATOR, "open")
        if self.users is not None:
            found_session = self.sessions.find(request.cookies.get(COOKIE))
            if found_session is not None:
                token, s = found_session
                return Identity(s.user, s.role, "session", token)
        return error(401, "log in first")

    def check(self, request: Request, role: Role, *, post: bool = False) -> Identity | Response:
        """The request's identity if it may do this, else the refusal (401/403)."""
        who = self.identify(request)
        if isinstance(who, Response):
            return who
        if not who.may(role):
            return error(403, f"this needs the {role.label} role; you are {who.role.label}")
        sent = request.headers.get(CSRF_HEADER)
        if post and who.via != "open" and not self.sessions.csrf_ok(self.binding(who), sent):
            log.warning("csrf_refused", user=self.audit_name(who), path=request.url.path)
            return error(403, "missing or wrong CSRF token: reload the page")
        return who

    def binding(self, who: Identity) -> str:
        """What a CSRF token is bound to: the session, or the proxy's user."""
        return who.session if who.session is not None else f"proxy:{who.user}"

    def audit_name(self, who: Identity | str | None) -> str | None:
        """The name an audit line carries: the agent pseudonym when keyed."""
        name = who.user if isinstance(who, Identity) else who
        if name is None or not self.pseudonyms.keyed:
            return name
        try:
            return self.pseudonyms.agent_id(name)
        except ValueError:
            return "(not a name)"

    def agent_id(self, who: Identity, claimed: object) -> str | None:
        """The feedback record's agent id: the logged-in user's, None in the open mode
        (there the body's ``agent`` names it). A body that claims another is
        ignored, and the attempt logged."""
        if who.user is None:
            return None
        agent_id = self.pseudonyms.agent_id(who.user)
        if claimed is not None:
            try:
                claimed_id = self.pseudonyms.agent_id(str(claimed))
            except ValueError:
                claimed_id = "(not an id)"
            if claimed_id != agent_id:
                log.warning("identity_claim_ignored", user=agent_id, claimed=claimed_id)
        return agent_id

    def session_view(self, who: Identity) -> dict[str, object]:
        return {
            "mode": self.mode,
            "user": who.user,
            "role": who.role.label,
            "csrf": None if who.via == "open" else self.sessions.csrf(self.binding(who)),
            "logout": who.via == "session",
        }

    def routes(self, hosts: frozenset[str]) -> list[Route]:
        async def session(request: Request) -> Response:
            who = self.identify(request)
            if isinstance(who, Response):
                if who.status_code == 401:
                    return json_response(
                        {"status": "error", "error": "log in first", "login": True}, 401
                    )
                return who
            return json_response(self.session_view(who))

        async def login(request: Request) -> Response:
            if self.users is None:
                return error(404, "no login here: start the console with --users-file")
            refused = refuse_post(request, hosts)
            if refused is not None:
                return refused
            body = await json_body(request, MAX_LOGIN_BYTES)
            if isinstance(body, Response):
                return body
            if not (
                isinstance(body, dict)
                and isinstance(body.get("user"), str)
                and isinstance(body.get("password"), str)
            ):
                return error(400, 'expected {"user": "...", "password": "..."}')
            name, password = body["user"].strip()[:128], body["password"]
            peer = request.client.host if request.client else "unknown"
            user_key, address_key = f"user:{name.casefold()}", f"address:{peer}"
            wait = max(
                self.per_user.retry_after(user_key), self.per_address.retry_after(address_key)
            )
            if wait > 0:
                audit("login_refused", self.audit_name(name), address=peer)
                refusal = error(429, f"too many failed logins: try again in {int(wait) + 1} s")
                refusal.headers["Retry-After"] = str(int(wait) + 1)
                return refusal
            # Counted before the (slow) check: parallel guesses cannot all slip through.
            self.per_user.failed(user_key)
            self.per_address.failed(address_key)
            user = await asyncio.to_thread(self.users.verify, name, password)
            if user is None:
                audit("login_failed", self.audit_name(name), address=peer)
                return error(401, "wrong name or password")
            self.per_user.succeeded(user_key)
            self.per_address.undo(address_key)
            cookie = self.sessions.start(user.name, user.role)
            who = self.sessions.find(cookie)
            assert who is not None  # just started
            identity = Identity(user.name, user.role, "session", who[0])
            audit("login", self.audit_name(identity), role=user.role.label, address=peer)
            response = json_response(self.session_view(identity))
            response.set_cookie(
                COOKIE,
                cookie,
                max_age=int(LIFETIME_S),
                path="/",
                httponly=True,
                samesite="strict",
                secure=self.secure,
            )
            return response

        async def logout(request: Request) -> Response:
            refused = refuse_post(request, hosts)
            if refused is not None:
                return refused
            who = self.check(request, Role.VIEWER, post=True)
            if isinstance(who, Response):
                return who
            if who.via == "session":
                self.sessions.end(request.cookies.get(COOKIE))
                audit("logout", self.audit_name(who))
            response = json_response({"status": "logged_out"})
            response.delete_cookie(
                COOKIE, path="/", httponly=True, samesite="strict", secure=self.secure
            )
            return response

        return [
            Route("/api/session", session),
            Route("/api/login", login, methods=["POST"]),
            Route("/api/logout", logout, methods=["POST"]),
        ]
