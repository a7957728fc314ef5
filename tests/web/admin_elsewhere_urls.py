"""A URLconf with the admin under /staff/ (tests/web/test_asgi_http.py: the admin body cap follows it)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

urlpatterns = [path("staff/", admin.site.urls)]
