"""Print a new RSA signing key for single sign-on (PEM), for FACELOGIN_OIDC_KEY(_FILE)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from portal.oidc_keys import generate_pem


class Command(BaseCommand):
    help = "Print a new RSA private key (PEM) for FACELOGIN_OIDC_KEY; docs/sso.md explains rotating keys."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bits", type=int, default=3072, choices=[2048, 3072, 4096])

    def handle(self, *args, bits: int, **options) -> None:
        self.stdout.write(generate_pem(bits), ending="")
