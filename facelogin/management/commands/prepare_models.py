"""Prepare the FaceNet weights named by FACELOGIN_MODEL (offline for the default casia-webface)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from facelogin.pipeline.errors import ModelUnavailable
from facelogin.services.recognition import prepare_embedding_weights


class Command(BaseCommand):
    help = "Convert or verify the FaceNet weights (cached with their hash under FACELOGIN_MODEL_DIR)."

    def handle(self, *args, **options) -> None:
        from django.conf import settings

        from facelogin.pipeline.embed import get_embedder

        backend = settings.FACELOGIN["EMBEDDER"]
        try:
            path = prepare_embedding_weights()
            if backend != "torch":  # export (once, cached beside the weights) and check it against torch now
                get_embedder(path, threads=settings.FACELOGIN["TORCH_THREADS"], backend=backend).warm_up()
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"face model ready: {path} ({backend})")
