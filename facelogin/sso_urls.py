"""Single sign-on URLs, in django-oauth-toolkit's namespace (its views reverse ``oauth2_provider:*``).

Discovery sits at the site root, so the issuer is the portal's own address; the endpoints under /o/.
"""

from __future__ import annotations

from django.urls import path
from oauth2_provider import views as dot_views

from facelogin import sso_views

app_name = "oauth2_provider"

urlpatterns = [
    path(".well-known/openid-configuration", sso_views.DiscoveryView.as_view(), name="oidc-connect-discovery-info"),
    path("o/authorize/", sso_views.AuthorizeView.as_view(), name="authorize"),
    path("o/token/", sso_views.TokenView.as_view(), name="token"),
    path("o/revoke/", sso_views.RevokeTokenView.as_view(), name="revoke-token"),
    path("o/userinfo/", dot_views.UserInfoView.as_view(), name="user-info"),
    path("o/jwks/", dot_views.JwksInfoView.as_view(), name="jwks-info"),
    path("o/logout/", sso_views.LogoutView.as_view(), name="rp-initiated-logout"),
]
