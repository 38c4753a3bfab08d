"""Minimal Django settings (and URLconf) for the session engine tests."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, Any] = {}
USE_TZ = True
ROOT_URLCONF = "tests.django_settings"
SESSION_ENGINE = "dynamo_sessions.django"
MIDDLEWARE = ["dynamo_sessions.django.SessionMiddleware"]
DYNAMO_SESSIONS: dict[str, Any] = {}  # tests override it with a table and a moto client


def untouched(request: HttpRequest) -> HttpResponse:
    return HttpResponse("untouched")


def incr(request: HttpRequest) -> HttpResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(str(request.session["n"]))


def get(request: HttpRequest) -> HttpResponse:
    return HttpResponse(repr(dict(request.session.items())))


def login(request: HttpRequest) -> HttpResponse:
    request.session.cycle_key()
    request.session["user"] = "ada"
    return HttpResponse("ok")


def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return HttpResponse("ok")


urlpatterns = [
    path("untouched", untouched), path("incr", incr), path("get", get),
    path("login", login), path("logout", logout),
]
