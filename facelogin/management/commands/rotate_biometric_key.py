"""Re-encrypt all biometric data with the first key of FACELOGIN_BIOMETRIC_KEYS.

Rotation: put a new key first (``manage.py rotate_biometric_key --new-key`` prints one), keep the old
one after it, run this command, then remove the old key from the environment.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction
from tqdm import tqdm

from facelogin.models import ClassifierArtifactPart, ClassifierVersion, DriftTemplate, EnrolmentPhoto
from facelogin.services import biometrics
from facelogin.services.classifier_store import HEAD_CONTEXT, part_context


def _same(context: bytes):
    return lambda row: context


# (model, field, the row's context) for every sealed column.
SEALED = [
    (EnrolmentPhoto, "embedding", _same(b"embedding")),
    (EnrolmentPhoto, "crop", _same(b"crop")),
    (EnrolmentPhoto, "original", _same(b"original")),
    (DriftTemplate, "embedding", _same(b"embedding")),
    (ClassifierVersion, "artifact", _same(HEAD_CONTEXT)),
    (ClassifierArtifactPart, "data", lambda part: part_context(part.version_id, part.index)),
]
CONTEXT_FIELDS = {ClassifierArtifactPart: ("version", "index")}


class Command(BaseCommand):
    help = "Re-encrypt embeddings, face crops, originals and classifiers with the current (first) key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--new-key", action="store_true", help="only print a fresh key to put first in FACELOGIN_BIOMETRIC_KEYS")

    def handle(self, *args, new_key: bool, **options) -> None:
        if new_key:
            self.stdout.write(biometrics.new_key())
            return
        current = biometrics.current_key_id()
        rotated = 0
        for model, field, context in SEALED:
            ids = list(model.objects.exclude(**{f"{field}__isnull": True}).values_list("pk", flat=True))
            for pk in tqdm(ids, desc=f"{model._meta.model_name}.{field}", unit="row", disable=None):
                with transaction.atomic():
                    row = model.objects.select_for_update().only(field, *CONTEXT_FIELDS.get(model, ())).get(pk=pk)
                    sealed = getattr(row, field)
                    if sealed is None or biometrics.sealed_key_id(sealed) == current:
                        continue  # already under the current key: running twice is harmless
                    plain = biometrics.unseal(sealed, context=context(row))
                    model.objects.filter(pk=pk).update(**{field: biometrics.seal(plain, context=context(row))})
                    rotated += 1
        self.stdout.write(self.style.SUCCESS(f"re-encrypted {rotated} value(s) with the current key"))
