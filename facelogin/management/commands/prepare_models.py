"""Prepare the face model named by FACELOGIN_MODEL: SFace's file checked, or FaceNet's weights converted (offline)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from facelogin.pipeline.errors import ModelUnavailable
from facelogin.services.recognition import prepare_embedding_weights


class Command(BaseCommand):
    help = "Check SFace's file, or convert and verify the FaceNet weights (cached with their hash under FACELOGIN_MODEL_DIR)."

    def handle(self, *args, **options) -> None:
        from django.conf import settings

        from facelogin.pipeline.embed import get_embedder

        backend = settings.FACELOGIN["EMBEDDER"]
        try:
            path = prepare_embedding_weights()
            embedder = get_embedder(path, threads=settings.FACELOGIN["TORCH_THREADS"], backend=backend)
            if embedder.backend != "torch":  # load SFace, or export FaceNet (once, cached) and check it against torch, now
                embedder.warm_up()
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"face model ready: {path} ({embedder.backend})")
