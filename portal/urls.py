from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("facelogin.urls")),
    path("", include("facelogin.sso_urls")),  # single sign-on for campus apps (OpenID Connect)
]
