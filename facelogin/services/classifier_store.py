"""Where a classifier version's model is stored: a sealed head on the version's row, its arrays in parts.

A full model is 1,028 MB at 100,000 students (5 photos each): more than one database value holds
(SQLite refuses a blob over 1,000,000,000 bytes, PostgreSQL's ``bytea`` stops at 1 GB). So the model
is split by ``TrainedModel.to_parts``: ``ClassifierVersion.artifact`` holds the head (the pickle
without its large arrays: about 2 MB at 100,000 students) and ``ClassifierArtifactPart`` rows hold
the arrays' bytes, at most ``FACELOGIN_CLASSIFIER_PART_MB`` each. Every part is sealed on its own,
with its version and index as the authenticated context, so a part cannot stand in for another.

Reading fills the model's arrays part by part (``TrainedModel.from_parts``): a loading process holds
the arrays and one part, never the model's bytes (and their decryption) beside them, which took a
100,000-student load to 3.64 GB. Versions stored before 0011 (the whole model sealed in
``artifact``, ``artifact_parts`` 0) are read as they were.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import BigIntegerField, Count, Max, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce, Length

from facelogin.models import ClassifierArtifactPart, ClassifierVersion
from facelogin.services import biometrics

HEAD_CONTEXT = b"classifier"  # as the whole model was sealed before it was stored in parts


def part_context(version_id: int, index: int) -> bytes:
    return b"classifier-part:%d:%d" % (version_id, index)


def classifier_model_write(*, version: ClassifierVersion, model) -> None:
    """Store ``model`` as ``version``'s: its parts, then its sealed head in ``version.artifact`` and
    ``version.artifact_parts`` (the caller saves the row, in the same transaction, so a version never
    has a head without its parts). Parts the version had are replaced."""
    head, parts = model.to_parts(part_bytes=settings.FACELOGIN["CLASSIFIER_PART_BYTES"])
    with transaction.atomic():
        ClassifierArtifactPart.objects.filter(version_id=version.pk).delete()
        for index, data in enumerate(parts):
            sealed = biometrics.seal(data, context=part_context(version.pk, index))
            ClassifierArtifactPart.objects.create(version_id=version.pk, index=index, data=sealed)
    version.artifact = biometrics.seal(head, context=HEAD_CONTEXT)
    version.artifact_parts = len(parts)


def classifier_model_read(*, version_id: int):
    """The version's stored TrainedModel, None when it stores none (never stored, or pruned).

    Raises ``ModelUnavailable`` when a part is missing, extra, of the wrong size or fails
    authentication, and ``biometrics.SealError`` when no configured key opens the head.
    """
    from facelogin.pipeline.decide import TrainedModel
    from facelogin.pipeline.errors import ModelUnavailable

    sealed = ClassifierVersion.objects.filter(pk=version_id).values_list("artifact", flat=True).first()
    if not sealed:
        return None
    head = biometrics.unseal(sealed, context=HEAD_CONTEXT)
    del sealed  # a version stored before 0011 holds the whole model here
    count, _ = TrainedModel.parts_in(head)
    if ClassifierArtifactPart.objects.filter(version_id=version_id, index__gte=count).exists():
        raise ModelUnavailable(
            f"classifier version {version_id}'s stored model is unreadable: it has parts beyond its {count}", version=version_id
        )

    def part(index: int) -> bytes:
        # One query per part: each row is tens of MB, and no backend then holds two of them.
        sealed = (
            ClassifierArtifactPart.objects.filter(version_id=version_id, index=index).values_list("data", flat=True).first()
        )
        if sealed is None:
            raise ModelUnavailable(f"part {index + 1} of {count} is missing", part=index)
        try:
            return biometrics.unseal(sealed, context=part_context(version_id, index))
        except biometrics.SealError as exc:
            raise ModelUnavailable(f"part {index + 1} of {count} cannot be opened: {exc}", part=index) from exc

    try:
        return TrainedModel.from_parts(head, part)
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"classifier version {version_id}'s stored model is unreadable: {exc}", version=version_id) from exc


def classifier_model_problem(*, version_id: int) -> str | None:
    """Why the version's stored parts cannot make its model (parts missing or extra), or None when
    every part its row counts is stored. Reads no part and unseals nothing: activation asks this of
    every version it needs. A part whose bytes were damaged is found when it is read (each part is
    authenticated, and the parts' sizes must fill the arrays the sealed head describes)."""
    expected = ClassifierVersion.objects.filter(pk=version_id, artifact__isnull=False).values_list("artifact_parts", flat=True).first()
    found = ClassifierArtifactPart.objects.filter(version_id=version_id).aggregate(count=Count("pk"), last=Max("index"))
    if expected is None or found["count"] == expected == 0:
        return None
    if found["count"] != expected or found["last"] != expected - 1:
        return f"{found['count']} of its {expected} parts are stored"
    return None


def classifier_model_clear(*, version_ids: list[int]) -> None:
    """Delete the versions' stored models (head and parts); their rows stay."""
    ClassifierArtifactPart.objects.filter(version_id__in=version_ids).delete()
    ClassifierVersion.objects.filter(pk__in=version_ids).update(artifact=None, artifact_parts=0)


def stored_bytes():
    """A query expression: the bytes a version's stored model takes (head and parts), 0 for none."""
    parts = (
        ClassifierArtifactPart.objects.filter(version_id=OuterRef("pk"))
        .order_by()
        .values("version_id")
        .annotate(total=Sum(Length("data")))
        .values("total")
    )
    # Length of a cleared (NULL) head is NULL, and so is the sum: a pruned version stores 0.
    return Coalesce(
        Length("artifact") + Coalesce(Subquery(parts, output_field=BigIntegerField()), 0),
        0,
        output_field=BigIntegerField(),
    )


def stored_model_bytes(version_id: int) -> int:
    return ClassifierVersion.objects.filter(pk=version_id).annotate(size=stored_bytes()).values_list("size", flat=True).get()
