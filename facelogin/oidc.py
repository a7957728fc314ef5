"""django-oauth-toolkit's request validator, adapted to the portal (glue: the rules are in services.sso).

One validator instance serves every request of a process (DOT caches its oauthlib server), so nothing
per-request is kept on ``self``: it travels on the oauthlib request object.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timezone as dt_timezone

from django.conf import settings
from jwcrypto import jws
from oauth2_provider.models import AbstractApplication, get_access_token_model, get_refresh_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator

from facelogin.auth import ActiveStudentBackend
from facelogin.models import CampusApp
from facelogin.services import sso
from facelogin.services.audit import sso_event_record

logger = logging.getLogger(__name__)

# The oauthlib request attributes the authorization view sets (through DOT's "credentials").
AUTH_CONTEXT_ATTR = "portal_auth"
SID_ATTR = "portal_sid"
ISSUER_ATTR = "portal_issuer"
IP_ATTR = "portal_ip"


def _ip(request) -> str | None:
    headers = getattr(request, "headers", None) or {}
    return headers.get("REMOTE_ADDR") or getattr(request, IP_ATTR, None) or None


def _may_sign_in(user) -> bool:
    return user is not None and ActiveStudentBackend().user_can_authenticate(user)


class PortalValidator(OAuth2Validator):
    oidc_claim_scope = dict(sso.CLAIM_SCOPE)

    # --- who the person is -----------------------------------------------------------------------
    def get_claim_dict(self, request):
        return {"sub": sso.subject_of(user=request.user), **sso.claims_of(user=request.user)}

    def get_additional_claims(self, request):
        return sso.claims_of(user=request.user)

    def get_discovery_claims(self, request):
        return ["sub", *sso.CLAIM_SCOPE, "acr", "amr", "auth_time", "sid"]

    # --- authorization endpoint -----------------------------------------------------------------
    def validate_silent_login(self, request) -> bool:
        return True  # prompt=none: the portal's authorization view answers login_required itself

    def validate_silent_authorization(self, request) -> bool:
        return True  # ... and consent_required

    def is_pkce_required(self, client_id, request) -> bool:
        client = request.client if isinstance(request.client, AbstractApplication) else None
        if client is None:
            client = self._load_application(client_id, request)
        if client is None or client.client_type != AbstractApplication.CLIENT_CONFIDENTIAL:
            return True
        return not CampusApp.objects.filter(application=client, require_pkce=False).exists()

    def save_authorization_code(self, client_id, code, request, *args, **kwargs):
        context = getattr(request, AUTH_CONTEXT_ATTR, None)
        if context is None:  # only the portal's authorization view issues codes
            raise RuntimeError("an authorization code was requested without the portal's sign-in context")
        super().save_authorization_code(client_id, code, request, *args, **kwargs)
        sso.authorization_record(
            code=code["code"],
            application=request.client,
            user=request.user,
            context=context,
            sid=getattr(request, SID_ATTR),
            scopes=request.scopes,
            issuer_url=getattr(request, ISSUER_ATTR, ""),
            ip=getattr(request, IP_ATTR, None),
        )

    # --- token endpoint ---------------------------------------------------------------------------
    def validate_code(self, client_id, code, client, request, *args, **kwargs):
        authorization = sso.authorization_claim(code=code, application=client)
        if authorization is None:
            replayed = sso.authorization_replayed(code=code, application=client, ip=_ip(request))
            request.portal_refusal = "code_replayed" if replayed is not None else "unknown_code"
            return False
        request.portal_authorization = authorization
        if not super().validate_code(client_id, code, client, request, *args, **kwargs):
            request.portal_refusal = "code_expired"
            return False
        if not _may_sign_in(request.user):
            request.portal_refusal = "user_inactive"
            return False
        return True

    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs):
        if not settings.SSO["REFRESH_TOKENS"]:
            return False
        if not super().validate_refresh_token(refresh_token, client, request, *args, **kwargs):
            return False
        instance = getattr(request, "refresh_token_instance", None)
        request.portal_authorization = sso.authorization_of_refresh(token_family=getattr(instance, "token_family", None))
        return _may_sign_in(request.user) and request.portal_authorization is not None

    def get_id_token_dictionary(self, token, token_handler, request):
        claims, expiration_time = super().get_id_token_dictionary(token, token_handler, request)
        authorization = getattr(request, "portal_authorization", None)
        if authorization is None:
            raise RuntimeError("an ID token was requested without the authorization it answers")
        claims.update(
            # The sign-in the code was issued for; a refreshed ID token keeps it (OIDC Core §12.2).
            auth_time=int(authorization.auth_time.astimezone(dt_timezone.utc).timestamp()),
            amr=list(authorization.amr),
            acr=authorization.acr,
            sid=authorization.sid,
        )
        return claims, expiration_time

    def save_bearer_token(self, token, request, *args, **kwargs):
        if not settings.SSO["REFRESH_TOKENS"]:
            token.pop("refresh_token", None)  # generated by oauthlib, never stored or sent
        refreshing = request.grant_type == "refresh_token"
        result = super().save_bearer_token(token, request, *args, **kwargs)
        authorization = getattr(request, "portal_authorization", None)
        access_token = get_access_token_model().objects.filter(token_checksum=_checksum(token["access_token"])).first()
        refresh_token = (
            get_refresh_token_model().objects.filter(access_token=access_token, revoked__isnull=True).first()
            if access_token is not None
            else None
        )
        if authorization is not None and not refreshing:
            sso.authorization_tokens_link(
                authorization=authorization,
                access_token=access_token,
                refresh_token=refresh_token,
                issuer_url=self.get_oidc_issuer_endpoint(request),  # as the app's server sees the portal
            )
        sso_event_record(
            "refresh" if refreshing else "token",
            application=request.client,
            user=request.user,
            ip=_ip(request),
            scope=token.get("scope", ""),
            refresh_token=refresh_token is not None,
            authorization=getattr(authorization, "pk", None),
        )
        return result

    def revoke_token(self, token, token_type_hint, request, *args, **kwargs):
        super().revoke_token(token, token_type_hint, request, *args, **kwargs)
        if getattr(request.client, "pk", None) is not None:
            sso_event_record("revoke", application=request.client, ip=_ip(request), token_type_hint=token_type_hint or "")

    # --- userinfo and ID tokens the portal signed -------------------------------------------------
    def validate_bearer_token(self, token, scopes, request):
        if not super().validate_bearer_token(token, scopes, request):
            return False
        return request.user is None or _may_sign_in(request.user)

    def _get_key_for_token(self, token):
        """The published key the token names (``kid``): ID tokens signed before a key rotation still
        verify, e.g. as an id_token_hint at logout. DOT's own lookup knows only the current key."""
        unverified = jws.JWS()
        unverified.deserialize(token)
        header = unverified.jose_header if isinstance(unverified.jose_header, dict) else {}
        if header.get("alg") != "RS256":
            return None
        claims = json.loads(unverified.objects["payload"].decode("utf-8"))
        if "aud" not in claims or self._get_client_by_audience(claims["aud"]) is None:
            return None
        return sso.jwk_for_kid(header.get("kid"))


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
