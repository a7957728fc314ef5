"""Re-embed every enrolled photo with the FaceNet model in FACELOGIN_MODEL (or --model), then retrain."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from facelogin.pipeline.errors import ModelUnavailable
from facelogin.services.enrolment import photos_reembed
from facelogin.services.training import retrain_request


class Command(BaseCommand):
    help = "Embed all accepted photos again with another FaceNet model (run before switching FACELOGIN_MODEL)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", default=None, help="casia-webface, vggface2 or file (default: FACELOGIN_MODEL)")
        parser.add_argument("--path", default=None, help="with --model file: the state-dict path")

    def handle(self, *args, model: str | None, path: str | None, **options) -> None:
        model = model or settings.FACELOGIN["MODEL"]
        path = path or settings.FACELOGIN["MODEL_PATH"]
        with tqdm(desc=f"re-embedding for {model}", unit="photo", disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                count = photos_reembed(model=model, path=path, progress=progress)
            except ModelUnavailable as exc:
                raise CommandError(str(exc)) from exc
        retrain_request(reason=f"re-embedded {count} photo(s) for {model}", countdown=0)
        self.stdout.write(self.style.SUCCESS(f"re-embedded {count} photo(s) with {model}; retrain requested"))
