"""The single sign-on endpoints: django-oauth-toolkit's views, made the portal's (thin; rules in services.sso).

The authorization endpoint decides, before any code is issued, whether the session's sign-in is
enough for what the campus app asked (acr_values, max_age, prompt) and otherwise sends the student to
sign in again ("step-up"), with the authorization request as ``next``.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode, urlsplit

from django import forms
from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider import views as dot_views
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.forms import AllowForm
from oauth2_provider.models import get_application_model
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2.rfc6749 import errors as oauth_errors

from facelogin.auth import student_of
from facelogin.oidc import AUTH_CONTEXT_ATTR, IP_ATTR, ISSUER_ATTR, SID_ATTR
from facelogin.services import auth_context, sso
from facelogin.services.audit import sso_event_record
from facelogin.services.enrolment import face_ready
from facelogin.services.signins import client_ip
from facelogin.services.throttle import token_request_start

# prompt=login: the student signs in again, and comes back with prompt=login replaced by this max_age,
# so that only a sign-in of the last few minutes counts (and a reload cannot loop).
FRESH_SIGN_IN_SECONDS = 600
STEP_UP_PARAM = "step_up"


class SsoEnabledMixin:
    def dispatch(self, request, *args, **kwargs):
        if not settings.SSO["ENABLED"]:
            raise Http404("single sign-on is not configured (FACELOGIN_OIDC_KEY)")
        return super().dispatch(request, *args, **kwargs)


class PortalAllowForm(AllowForm):
    max_age = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput())


def _oauth_error(error_class, credentials: dict, description: str, error: str | None = None) -> OAuthToolkitError:
    kwargs = {"description": description, "state": credentials.get("state")}
    oauthlib_error = error_class(error, **kwargs) if error else error_class(**kwargs)
    return OAuthToolkitError(error=oauthlib_error, redirect_uri=credentials["redirect_uri"])


def face_possible(user) -> bool:
    student = student_of(user)
    return student is not None and not student.face_login_blocked and face_ready(student=student)


@method_decorator(never_cache, name="dispatch")
class AuthorizeView(SsoEnabledMixin, dot_views.AuthorizationView):
    template_name = "facelogin/sso_authorize.html"
    form_class = PortalAllowForm

    # --- signed out: straight to the right sign-in page --------------------------------------------
    def handle_no_permission(self):
        request = self.request
        if "none" in request.GET.get("prompt", "").split():
            return super().handle_no_permission()  # DOT: login_required to the app, after validating it
        checked = self._checked_request()
        if isinstance(checked, HttpResponse):
            return checked
        _scopes, credentials, application, requirement = checked
        try:
            decision = sso.authorization_decide(
                context=None, requirement=requirement, liveness_on=settings.FACELOGIN["LIVENESS"], face_possible=None
            )
        except sso.RequestRefused as refused:
            return self._refuse(refused, credentials, application)
        return self._step_up(decision, requirement, application)

    # --- signed in ---------------------------------------------------------------------------------
    def get(self, request, *args, **kwargs):
        checked = self._checked_request()
        if isinstance(checked, HttpResponse):
            return checked
        scopes, credentials, application, requirement = checked
        context = auth_context.auth_context_of(request.session, max_age=requirement.max_age)
        try:
            decision = sso.authorization_decide(
                context=context,
                requirement=requirement,
                liveness_on=settings.FACELOGIN["LIVENESS"],
                face_possible=face_possible(request.user),
            )
        except sso.RequestRefused as refused:
            return self._refuse(refused, credentials, application)
        if decision.step_up:
            return self._step_up(decision, requirement, application)
        self.portal_context = decision.context
        remembered = not requirement.consent and sso.consent_covers(user=request.user, application=application, scopes=scopes)
        if application.skip_authorization or remembered:
            try:
                uri, _headers, _body, _status = self.create_authorization_response(
                    request=request, scopes=" ".join(scopes), credentials=credentials, allow=True
                )
            except OAuthToolkitError as error:
                return self.error_response(error, application)
            return self.redirect(uri, application)
        if requirement.none:
            return self._refuse(sso.RequestRefused("consent_required", "the student has not let this app in yet"), credentials, application)
        return super().get(request, *args, **kwargs)

    def form_valid(self, form):
        # The consent screen's answer. The sign-in it stands on is read again from the session.
        self.portal_context = auth_context.auth_context_of(self.request.session, max_age=form.cleaned_data.get("max_age"))
        if self.portal_context is None:
            return self.render_to_response({"error": oauth_errors.LoginRequired(description="the sign-in expired; start again from the app")}, status=400)
        return super().form_valid(form)

    def get_initial(self):
        return {**super().get_initial(), "max_age": self.request.GET.get("max_age") or None}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        application = context.get("application")
        context["scope_lines"] = sso.scope_lines(context.get("scopes") or [])
        context["campus_app"] = getattr(application, "campus_app", None) if application is not None else None
        return context

    def create_authorization_response(self, request, scopes, credentials, allow):
        credentials = {
            **credentials,
            AUTH_CONTEXT_ATTR: getattr(self, "portal_context", None),
            SID_ATTR: auth_context.session_sid(request.session),
            ISSUER_ATTR: oauth2_settings.oidc_issuer(request) if allow else "",
            IP_ATTR: client_ip(request),
        }
        return super().create_authorization_response(request, scopes, credentials, allow)

    # --- helpers -----------------------------------------------------------------------------------
    def _checked_request(self):
        """(scopes, credentials, application, requirement), or the error response to send."""
        try:
            scopes, credentials = self.validate_authorization_request(self.request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        application = get_application_model().objects.select_related("campus_app").get(client_id=credentials["client_id"])
        if "openid" not in scopes:
            error = _oauth_error(oauth_errors.InvalidScopeError, credentials, "campus apps sign people in with the openid scope")
            return self.error_response(error, application)
        try:
            requirement = sso.requirement_parse(
                acr_values=self.request.GET.get("acr_values"),
                claims=credentials.get("claims"),
                max_age=self.request.GET.get("max_age"),
                prompt=self.request.GET.get("prompt", ""),
            )
        except sso.RequestRefused as refused:
            return self._refuse(refused, credentials, application)
        return scopes, credentials, application, requirement

    def _refuse(self, refused: sso.RequestRefused, credentials: dict, application) -> HttpResponse:
        user = self.request.user if self.request.user.is_authenticated else None
        sso_event_record("refused", application=application, user=user, ip=client_ip(self.request), error=refused.error, description=refused.description)
        error = _oauth_error(oauth_errors.CustomOAuth2Error, credentials, refused.description, error=refused.error)
        return self.error_response(error, application)

    def _step_up(self, decision: sso.Decision, requirement: sso.Requirement, application) -> HttpResponse:
        request = self.request
        query = [(k, v) for k, v in parse_qsl(urlsplit(request.get_full_path()).query, keep_blank_values=True)]
        if requirement.login:
            prompts = [p for p in requirement_prompts(query) if p != "login"]
            age = min(requirement.max_age if requirement.max_age is not None else FRESH_SIGN_IN_SECONDS, FRESH_SIGN_IN_SECONDS)
            query = [(k, v) for k, v in query if k not in ("prompt", "max_age")]
            query += [("prompt", " ".join(prompts))] if prompts else []
            query += [("max_age", str(age))]
        next_url = f"{request.path}?{urlencode(query)}"
        page = "face_login" if decision.step_up == auth_context.FACE else "login"
        if request.user.is_authenticated:
            sso_event_record(
                "step_up", application=application, user=request.user, ip=client_ip(request), method=decision.step_up, acr=decision.target_acr or ""
            )
        return redirect(f"{reverse(page)}?{urlencode({'next': next_url, STEP_UP_PARAM: '1'})}")


def requirement_prompts(query) -> list[str]:
    return [p for k, v in query if k == "prompt" for p in v.split()]


@method_decorator(csrf_exempt, name="dispatch")  # called by apps' servers, authenticated by client credentials
@method_decorator(never_cache, name="dispatch")
class TokenView(SsoEnabledMixin, dot_views.TokenView):
    """DOT's token endpoint, throttled and all-or-nothing (a failure midway issues nothing)."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        client_id = request.POST.get("client_id") or _basic_auth_client_id(request)
        ip = client_ip(request)
        verdict = token_request_start(client_id=client_id, ip=ip)
        if not verdict.allowed:
            sso_event_record("throttled", ip=ip, client_id=client_id or "", scope=verdict.scope)
            response = JsonResponse(
                {"error": "temporarily_unavailable", "error_description": f"too many token requests from this {verdict.scope}; retry later"},
                status=429,
            )
            response["Retry-After"] = str(verdict.retry_after)
            response["Cache-Control"] = "no-store"
            return response
        with transaction.atomic():
            response = super().post(request, *args, **kwargs)
        if response.status_code != 200:
            try:
                body = json.loads(response.content or b"{}")
            except ValueError:
                body = {}
            application = get_application_model().objects.filter(client_id=client_id).first() if client_id else None
            sso_event_record(
                "token_refused",
                application=application,
                client_id=client_id or "",
                ip=ip,
                error=body.get("error", ""),
                description=str(body.get("error_description", ""))[:200],
                grant_type=request.POST.get("grant_type", "")[:40],
            )
        return response


def _basic_auth_client_id(request: HttpRequest) -> str | None:
    import base64
    from urllib.parse import unquote_plus

    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:]).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return unquote_plus(decoded.split(":", 1)[0]) or None


@method_decorator(csrf_exempt, name="dispatch")
class RevokeTokenView(SsoEnabledMixin, dot_views.RevokeTokenView):
    pass


class DiscoveryView(dot_views.ConnectDiscoveryInfoView):
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        document = json.loads(response.content)
        document.update(sso.discovery_extras())
        document["id_token_signing_alg_values_supported"] = ["RS256"]
        document["token_endpoint_auth_methods_supported"] = ["client_secret_basic", "client_secret_post", "none"]
        document["revocation_endpoint"] = self._get_endpoint_url(request, "revoke-token", required=True)
        document["revocation_endpoint_auth_methods_supported"] = ["client_secret_basic", "client_secret_post", "none"]
        document["scopes_supported"] = list(sso.SCOPE_CLAIMS)
        fresh = JsonResponse(document)
        fresh["Access-Control-Allow-Origin"] = "*"
        fresh["Cache-Control"] = "public, max-age=3600"
        return fresh


class LogoutView(dot_views.RPInitiatedLogoutView):
    """RP-initiated logout: the app's ``end_session_endpoint``. Signing out here ends the portal session,
    which revokes what every campus app got from it and tells them (back-channel logout)."""

    template_name = "facelogin/sso_logout.html"

    def validate_logout_request_user(self, id_token_hint, client_id):
        id_token = super().validate_logout_request_user(id_token_hint, client_id)
        self.hinted_sid = None
        if id_token is not None and id_token_hint:
            from jwcrypto import jws

            token = jws.JWS()
            token.deserialize(id_token_hint)  # verified by DOT above, through the validator's key lookup
            self.hinted_sid = json.loads(token.objects["payload"]).get("sid")
        return id_token

    def do_logout(self, application=None, post_logout_redirect_uri=None, state=None, token_user=None):
        sid = getattr(self, "hinted_sid", None)
        current_sid = self.request.session.get(auth_context.SID_SESSION_KEY)
        if token_user is not None and sid and sid != current_sid:
            # The portal session the app's ID token came from is not this browser's (it ended or
            # lives elsewhere): still revoke what it gave out and tell the other apps.
            sso.session_logout(user=token_user, sid=sid, ip=client_ip(self.request))
        return super().do_logout(application, post_logout_redirect_uri, state, token_user)
