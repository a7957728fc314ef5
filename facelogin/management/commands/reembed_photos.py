"""Re-embed every enrolled photo with the face model in FACELOGIN_MODEL (or --model), then retrain."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from facelogin.pipeline.errors import ModelUnavailable
from facelogin.services.enrolment import photos_reembed
from facelogin.services.training import retrain_request


class Command(BaseCommand):
    help = "Embed all accepted photos again with another face model (run before switching FACELOGIN_MODEL)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", default=None, help="sface, casia-webface, vggface2 or file (default: FACELOGIN_MODEL)")
        parser.add_argument("--path", default=None, help="with --model file: the state-dict path")

    def handle(self, *args, model: str | None, path: str | None, **options) -> None:
        model = model or settings.FACELOGIN["MODEL"]
        path = path or settings.FACELOGIN["MODEL_PATH"]
        with tqdm(desc=f"re-embedding for {model}", unit="photo", disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                result = photos_reembed(model=model, path=path, progress=progress)
            except ModelUnavailable as exc:
                raise CommandError(str(exc)) from exc
        retrain_request(reason=f"re-embedded {result.count} photo(s) for {model}", countdown=0)
        self.stdout.write(
            self.style.SUCCESS(
                f"re-embedded {result.count} photo(s) with {model} "
                f"({result.from_crops} from their stored crop, {result.from_originals} from the kept original); retrain requested"
            )
        )
        if result.needs_new_photo:
            self.stdout.write(
                self.style.WARNING(
                    f"{len(result.needs_new_photo)} photo(s) could not be re-embedded: their crop was cut for another "
                    f"model and no original was kept (FACELOGIN_KEEP_ORIGINALS). These students need a new photo "
                    f"before they can sign in with {model}: {', '.join(result.students_needing_photo)}"
                )
            )
