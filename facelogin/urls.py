from __future__ import annotations

from django.urls import path

from facelogin import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.PasswordLoginView.as_view(), name="login"),
    path("login/face/", views.face_login, name="face_login"),
    path("login/face/complete/", views.face_login_complete, name="face_login_complete"),
    path("login/face/confirm/", views.face_confirm, name="face_confirm"),
    path("browsers/<int:browser_id>/revoke/", views.browser_revoke, name="browser_revoke"),
    path("consent/", views.consent_page, name="consent"),
    path("sign-ins/<int:sign_in_id>/not-me/", views.report_not_me, name="report_not_me"),
    path("apps/<int:consent_id>/revoke/", views.campus_app_revoke, name="campus_app_revoke"),
    path("logout/", views.SignOutView.as_view(), name="logout"),
    path("healthz/", views.healthz, name="healthz"),
    path("metrics/", views.metrics, name="metrics"),
]
