"""Prepare the FaceNet weights named by FACELOGIN_MODEL (offline for the default casia-webface)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from facelogin.pipeline.errors import ModelUnavailable
from facelogin.services.recognition import prepare_embedding_weights


class Command(BaseCommand):
    help = "Convert or verify the FaceNet weights (cached with their hash under FACELOGIN_MODEL_DIR)."

    def handle(self, *args, **options) -> None:
        try:
            path = prepare_embedding_weights()
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"face model ready: {path}")
