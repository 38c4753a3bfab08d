"""The Django engine's async path as it was before the native one (0.2): every async method
runs the sync store on the loop's default executor (``sync_to_async(thread_sensitive=False)``),
and the middleware is Django's ``MiddlewareMixin`` one, whose async mode runs
``process_request`` / ``process_response`` (so the save) through ``sync_to_async`` on the
thread-sensitive thread.  Kept for the ASGI benchmark's ``thread-pool`` side, the baseline the
native path is measured against::

    SESSION_ENGINE = "tests.django_threadpool_engine"
    MIDDLEWARE = ["tests.django_threadpool_engine.SessionMiddleware"]
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from django.utils.deprecation import MiddlewareMixin

from dynamo_sessions import django as engine
from dynamo_sessions.merge import Number


class SessionStore(engine.SessionStore):
    """The sync engine, its async methods on a worker thread each."""

    async def aload(self) -> dict[str, Any]:
        result: dict[str, Any] = await sync_to_async(self.load, thread_sensitive=False)()
        return result

    async def aexists(self, session_key: str | None) -> bool:
        result: bool = await sync_to_async(self.exists, thread_sensitive=False)(session_key)
        return result

    async def acreate(self) -> None:
        await sync_to_async(self.create, thread_sensitive=False)()

    async def asave(self, must_create: bool = False) -> None:
        await sync_to_async(self.save, thread_sensitive=False)(must_create)

    async def aincrement(self, key: str, by: Number = 1) -> Number:
        result: Number = await sync_to_async(self.increment, thread_sensitive=False)(key, by)
        return result

    async def adelete(self, session_key: str | None = None) -> None:
        await sync_to_async(self.delete, thread_sensitive=False)(session_key)


class SessionMiddleware(engine.SessionMiddleware):
    """The engine's middleware in ``MiddlewareMixin``'s async mode (its hooks on a thread)."""

    def __call__(self, request: HttpRequest) -> Any:
        return MiddlewareMixin.__call__(self, request)
