"""What the Django engine's async tests share: the async views on ``request.session`` that both
the served app (``tests/asgi_django_app.py``) and the in-process tests' URLconf route to, and
the first steps of the async-methods scenarios (no settings of its own: importing it sets
nothing up)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse


async def untouched(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


async def read_write(request: HttpRequest) -> HttpResponse:
    n = await request.session.aget("n", 0) + 1
    await request.session.aset("n", n)
    return HttpResponse(str(n))


async def read_only(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(await request.session.aget("n", 0)))


async def saved_and_reopened(store_class: Any) -> tuple[Any, Any]:
    """A new session of ``store_class`` given ``x = 1`` and saved with the async methods, and
    a second store opened on its key that reads ``x`` back: (the new one, the second one)."""
    session = store_class()
    await session.aset("x", 1)
    await session.asave()
    key = session.session_key
    assert key is not None and await session.aexists(key)
    other = store_class(key)
    assert await other.aget("x") == 1
    return session, other
