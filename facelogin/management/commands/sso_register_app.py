"""Register a campus app for single sign-on from the command line (the admin does the same)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import AbstractApplication, get_application_model

from facelogin.models import CampusApp


class Command(BaseCommand):
    help = (
        "Register a campus app (an OpenID Connect client) and print its client ID and, for a confidential "
        "app, its client secret: shown once, stored hashed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the app's name, as students see it")
        parser.add_argument("--redirect-uri", action="append", required=True, help="a callback URI (repeat for several)")
        parser.add_argument("--public", action="store_true", help="a public client (no secret; PKCE protects the code)")
        parser.add_argument("--trusted", action="store_true", help="a first-party app: no consent screen")
        parser.add_argument("--post-logout-redirect-uri", action="append", default=[], help="where RP-initiated logout may return")
        parser.add_argument("--backchannel-logout-uri", default="", help="where the portal POSTs logout tokens")
        parser.add_argument("--description", default="", help="one line for the consent screen")
        parser.add_argument("--no-pkce", action="store_true", help="confidential apps only: do not require PKCE")

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        if options["no_pkce"] and options["public"]:
            raise CommandError("a public app must use PKCE")
        secret = "" if options["public"] else generate_client_secret()
        application = get_application_model()(
            name=options["name"],
            client_type=AbstractApplication.CLIENT_PUBLIC if options["public"] else AbstractApplication.CLIENT_CONFIDENTIAL,
            authorization_grant_type=AbstractApplication.GRANT_AUTHORIZATION_CODE,
            algorithm=AbstractApplication.RS256_ALGORITHM,
            redirect_uris=" ".join(options["redirect_uri"]),
            post_logout_redirect_uris=" ".join(options["post_logout_redirect_uri"]),
            skip_authorization=options["trusted"],
            client_secret=secret,
            hash_client_secret=True,
        )
        campus_app = CampusApp(
            description=options["description"],
            backchannel_logout_uri=options["backchannel_logout_uri"],
            require_pkce=not options["no_pkce"],
        )
        try:
            application.full_clean(exclude=["client_secret"] if options["public"] else None)
            campus_app.full_clean(exclude=["application"])
        except ValidationError as exc:
            raise CommandError("; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())) from None
        application.save()
        campus_app.application = application
        campus_app.save()
        self.stdout.write(f"client_id={application.client_id}")
        if secret:
            self.stdout.write(f"client_secret={secret}")
