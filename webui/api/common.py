"""What the HTTP APIs share: who is calling, errors as JSON in the page's words, a job as JSON,
and image URLs that open without a key until they expire (signed per image and expiry time,
as object stores sign theirs)."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

from webui.access import Access
from webui.jobs.record import JobRecord
from webui.jobs.service import JobService
from webui.jobs.views import Identity, JobView, job_json
from webui.keys import UrlKey
from webui.words import Message, Words, words

# The page's words for a refusal, by the status an API answers with.
TOO_MANY = {"queue_full", "per_person_cap"}  # 429: try again later
UNAVAILABLE = {"restarting_submit", "shutting_down", "stalled"}  # 503
FORBIDDEN = {"not_yours", "admins_only"}  # 403


@dataclass(frozen=True)
class ApiContext:
    """The server's parts the API routes use."""

    service: JobService
    access: Access
    url_key: UrlKey  # signs image URLs
    url_lifetime_s: float

    def caller(self, request: Request) -> Identity:
        """Who calls: the person of the Bearer key when a login is on (401 otherwise), else the
        calling address (the API is then as open as the page)."""
        if not self.access.login_on:
            return Identity(client=f"api {request.client.host if request.client else '?'}")
        person = self.access.person_of(request.headers.get("authorization"))
        if person is None:
            raise ApiError(401, words("api_key_needed"), headers={"WWW-Authenticate": "Bearer"})
        return Identity(user=person, admin=self.access.is_admin(person))

    def check_workers(self) -> None:
        """503 with Retry-After when no worker can take work (distributed mode): said at once,
        rather than a job that waits without a word."""
        notice = self.service.runner.notice()
        if notice:
            raise ApiError(503, notice, headers={"Retry-After": "30"})

    def record(self, job_id: str) -> JobRecord:
        record = self.service.record(job_id)
        if record is None:
            raise ApiError(404, words("no_job_id", job=job_id))
        return record

    def signature(self, job_id: str, index: int, expires: int) -> str:
        message = f"{job_id}/{index}/{expires}".encode()
        return hmac.new(self.url_key.current(), message, hashlib.sha256).hexdigest()[:32]

    def image_url(self, request: Request, job_id: str, index: int) -> str:
        expires = int(time.time() + self.url_lifetime_s)
        query = f"exp={expires}&sig={self.signature(job_id, index, expires)}"
        return f"{str(request.base_url).rstrip('/')}/api/v1/jobs/{job_id}/images/{index}.png?{query}"

    def signed(self, job_id: str, index: int, expires: str, sig: str) -> bool:
        """Whether `sig` signs this image until `expires` (a Unix time), and that is not past."""
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12) or int(expires) < time.time():
            return False
        expected = self.signature(job_id, index, int(expires)).encode()
        return hmac.compare_digest(sig.encode("utf-8", "replace"), expected)

    def job_json(self, request: Request, record: JobRecord, view: JobView | None) -> dict[str, Any]:
        """A job as the REST API shows it (the page's `/job` shape), its images by signed URL."""
        return job_json(record, view, url_of=lambda n: self.image_url(request, record.id, n))


class ApiError(HTTPException):
    """A refusal with its words: JSON {"error": {"message", "code"}} and a status."""

    def __init__(self, status: int, message: Any, headers: dict[str, str] | None = None) -> None:
        words_of = message.words if isinstance(message, Message) else message
        code = words_of.key if isinstance(words_of, Words) else None
        super().__init__(status, {"message": str(message), "code": code}, headers)


def refusal(error: Message) -> ApiError:
    """A request the job service refused, with the status its words call for."""
    key = error.words.key
    status = 429 if key in TOO_MANY else 503 if key in UNAVAILABLE else 403 if key in FORBIDDEN else 400
    return ApiError(status, error, headers={"Retry-After": "30"} if status in (429, 503) else None)
