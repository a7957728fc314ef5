"""Retention of classifier versions: old stored models are cleared, the rows and what they need stay.

Versions are trained for real on real faces (ORL people and the Johns, with their real embeddings);
what each version stores is read back from the database.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from facelogin.models import BiometricAction, ClassifierVersion, EnrolmentPhoto
from facelogin.services import classifier_store, training
from tests import faces
from tests.conftest import REPO

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_loaded_model")]


@pytest.fixture
def incremental(settings):
    """Incremental retraining for test-sized galleries; retrains keep every version unless a test says."""
    settings.FACELOGIN = {
        **settings.FACELOGIN, "INCREMENTAL_MIN_STUDENTS": 0, "INCREMENTAL_MAX_CHANGED": 0.25, "KEEP_CLASSIFIER_VERSIONS": 100,
    }


def stored_sizes() -> dict[int, int | None]:
    """Every version's stored model size (head and parts), straight from the database (None: no model)."""
    sizes = ClassifierVersion.objects.annotate(size=classifier_store.stored_bytes()).values_list("pk", "size")
    return {pk: size or None for pk, size in sizes}


def enrol_background(make_student) -> None:
    faces.enrol_background(make_student)
    _age_photos()


def enrol_john(make_student, index: int):
    """One more real student (a John), enrolled with their first six photos."""
    person = faces.johns()[index]
    student = make_student(f"2026J{index:03d}", full_name=person.name)
    assert faces.enrol_accepted(student, faces.enrol_photos(person)) >= 3
    return student


def _age_photos() -> None:
    # Processed a day ago: an incremental retrain reloads only students whose photos changed since.
    EnrolmentPhoto.objects.update(processed_at=timezone.now() - timedelta(days=1))


def retrain(make_student, *, john: int | None = None, full: bool = False) -> ClassifierVersion:
    if john is not None:
        enrol_john(make_student, john)
    version = training.classifier_train(trigger="test", full=full)
    _age_photos()
    assert version.is_active, version.error
    assert ("incremental" in version.metrics) is (not full and john is not None)
    return version


def history(make_student) -> dict[str, ClassifierVersion]:
    """f1 <- i1;  f2 <- i2;  f3;  f4 <- i4a <- i4b (active). f: full retrains, i: stored as changes."""
    enrol_background(make_student)
    versions = {"f1": retrain(make_student, full=True)}
    versions["i1"] = retrain(make_student, john=0)
    versions["f2"] = retrain(make_student, full=True)
    versions["i2"] = retrain(make_student, john=1)
    versions["f3"] = retrain(make_student, full=True)
    versions["f4"] = retrain(make_student, full=True)
    versions["i4a"] = retrain(make_student, john=2)
    versions["i4b"] = retrain(make_student, john=3)
    for name, base in {"i1": "f1", "i2": "f2", "i4a": "f4", "i4b": "i4a"}.items():
        assert versions[name].metrics["incremental"]["base_version"] == versions[base].pk
    assert all(size for size in stored_sizes().values())  # nothing pruned yet (keep is 100)
    return versions


def named(report_ids, versions) -> set[str]:
    by_pk = {v.pk: name for name, v in versions.items()}
    return {by_pk[pk] for pk in report_ids}


def test_pruning_keeps_the_active_chain_and_the_newest_full_versions_and_clears_the_rest(make_student, incremental):
    versions = history(make_student)
    before = stored_sizes()
    pk = {name: v.pk for name, v in versions.items()}

    # keep=2: f3 and f2 besides the active chain (i4b <- i4a <- f4); i2 is built on f2, so it stays.
    report = training.prune_classifier_artifacts(keep=2)
    assert named(report.pruned, versions) == {"f1", "i1"}
    assert named(report.kept, versions) == {"i4b", "i4a", "f4", "f3", "f2", "i2"}
    assert report.active == pk["i4b"] and not report.dry_run
    assert report.bytes_freed == before[pk["f1"]] + before[pk["i1"]] > 0
    after = stored_sizes()
    assert after[pk["f1"]] is None and after[pk["i1"]] is None
    assert all(after[pk[name]] == before[pk[name]] for name in ("i4b", "i4a", "f4", "f3", "f2", "i2"))

    # keep=1: only f3 besides the active chain; i2 goes with f2, on which it is built.
    report = training.prune_classifier_artifacts(keep=1)
    assert named(report.pruned, versions) == {"f2", "i2"}
    assert report.bytes_freed == before[pk["f2"]] + before[pk["i2"]]
    after = stored_sizes()
    assert {name for name in pk if after[pk[name]] is None} == {"f1", "i1", "f2", "i2"}
    assert all(after[pk[name]] == before[pk[name]] for name in ("i4b", "i4a", "f4", "f3"))

    # The rows stay, with their metrics and thresholds; a pruned one says when it was pruned.
    assert ClassifierVersion.objects.count() == len(versions)
    f1 = ClassifierVersion.objects.get(pk=pk["f1"])
    assert f1.status == "ready" and f1.thresholds == versions["f1"].thresholds
    assert f1.metrics["holdout"] == versions["f1"].metrics["holdout"]
    assert f1.metrics["model_pruned"]["bytes"] == before[pk["f1"]]
    assert BiometricAction.objects.filter(action="delete", detail__classifier_versions=[pk["f1"], pk["i1"]]).exists()

    # A process starting now still builds the active version from its chain; the kept full version loads.
    training.forget_loaded_model()
    model = training.load_trained_model(pk["i4b"])
    assert model.gallery.n_labels == versions["i4b"].gallery_students == 16
    training.forget_loaded_model()
    assert training.load_trained_model(pk["f3"]).gallery.n_labels == versions["f3"].gallery_students
    assert training.load_trained_model(pk["f1"]) is None

    # Nothing more to prune: running again is harmless.
    report = training.prune_classifier_artifacts(keep=1)
    assert report.pruned == () and report.bytes_freed == 0 and stored_sizes() == after


def test_a_rolled_back_full_version_keeps_what_it_needs_and_the_newer_versions(make_student, incremental):
    versions = history(make_student)
    training.classifier_activate(version=versions["f2"])  # roll back past f3 and the f4 chain
    report = training.prune_classifier_artifacts(keep=1)
    # Besides the active f2 (and i2, built on it), the newest full version f4 and its chain stay.
    assert named(report.kept, versions) == {"f2", "i2", "f4", "i4a", "i4b"}
    assert named(report.pruned, versions) == {"f1", "i1", "f3"}
    sizes = stored_sizes()
    assert [name for name in ("f1", "i1", "f3") if sizes[versions[name].pk] is None] == ["f1", "i1", "f3"]


def test_a_dry_run_reports_the_same_and_changes_nothing(make_student, incremental):
    versions = history(make_student)
    before = stored_sizes()
    metrics_before = dict(ClassifierVersion.objects.values_list("pk", "metrics"))
    audit_before = BiometricAction.objects.count()
    dry = training.prune_classifier_artifacts(keep=1, dry_run=True)
    assert dry.dry_run and named(dry.pruned, versions) == {"f1", "i1", "f2", "i2"}
    assert dry.bytes_freed == sum(before[versions[name].pk] for name in ("f1", "i1", "f2", "i2"))
    assert stored_sizes() == before
    assert dict(ClassifierVersion.objects.values_list("pk", "metrics")) == metrics_before
    assert BiometricAction.objects.count() == audit_before
    real = training.prune_classifier_artifacts(keep=1)
    assert (real.pruned, real.bytes_freed, real.kept) == (dry.pruned, dry.bytes_freed, dry.kept)


def test_keep_defaults_to_the_setting_and_is_at_least_one(make_student, incremental, settings):
    versions = history(make_student)
    settings.FACELOGIN = {**settings.FACELOGIN, "KEEP_CLASSIFIER_VERSIONS": 2}
    assert named(training.prune_classifier_artifacts(dry_run=True).pruned, versions) == {"f1", "i1"}
    with pytest.raises(ValueError):
        training.prune_classifier_artifacts(keep=0)


def test_a_pruned_version_cannot_be_activated_and_says_why(make_student, incremental):
    versions = history(make_student)
    training.prune_classifier_artifacts(keep=1)
    with pytest.raises(training.TrainingRefused, match=rf"Version {versions['f1'].pk} .*model was pruned"):
        training.classifier_activate(version=versions["f1"])
    with pytest.raises(training.TrainingRefused, match="model was pruned"):
        training.classifier_activate(version=versions["i2"])
    assert ClassifierVersion.objects.get(is_active=True) == versions["i4b"]
    # A version still holding its changes but built on one whose model is gone (pruned while it was
    # being trained) is refused too, naming the version it needs.
    ClassifierVersion.objects.filter(pk=versions["f4"].pk).update(artifact=None)
    with pytest.raises(training.TrainingRefused, match=rf"changes to version {versions['f4'].pk}, whose model was pruned"):
        training.classifier_activate(version=versions["i4a"])
    # Kept versions still roll back.
    assert training.classifier_activate(version=versions["f3"]).is_active


def test_an_incremental_retrain_whose_base_is_pruned_meanwhile_retrains_fully(make_student, incremental, monkeypatch):
    enrol_background(make_student)
    base = retrain(make_student, full=True)
    built_on_changes = training._train_incremental

    def pruned_while_training(**kwargs):
        update = built_on_changes(**kwargs)
        ClassifierVersion.objects.filter(pk=base.pk).update(artifact=None)  # what a concurrent prune does
        return update

    monkeypatch.setattr(training, "_train_incremental", pruned_while_training)
    enrol_john(make_student, 0)
    version = training.classifier_train(trigger="test")
    assert version.is_active and "incremental" not in version.metrics  # a full retrain, not stuck
    assert version.gallery_students == base.gallery_students + 1
    refused = ClassifierVersion.objects.exclude(pk__in=[base.pk, version.pk]).get()
    assert refused.status == ClassifierVersion.Status.FAILED and "model was pruned" in refused.error
    assert not refused.is_active
    # Retention after the full retrain cleared what nothing can use: the refused version's changes.
    assert stored_sizes()[refused.pk] is None and stored_sizes()[version.pk]


def test_retention_clears_a_model_a_failed_or_rejected_version_still_stores(make_student, incremental):
    enrol_background(make_student)
    active = retrain(make_student, full=True)
    rejected = ClassifierVersion.objects.create(
        model_name=active.model_name, classifier=active.classifier, status=ClassifierVersion.Status.REJECTED, artifact=b"x" * 1000
    )
    report = training.prune_classifier_artifacts()
    assert report.pruned == (rejected.pk,) and report.bytes_freed == 1000
    assert stored_sizes() == {active.pk: stored_sizes()[active.pk], rejected.pk: None}
    assert ClassifierVersion.objects.get(pk=rejected.pk).metrics["model_pruned"]["bytes"] == 1000


@pytest.mark.django_db(transaction=True)
def test_the_admin_refuses_to_roll_back_to_a_pruned_version(make_student, incremental, admin_client):
    versions = history(make_student)
    training.prune_classifier_artifacts(keep=1)
    url = "/admin/facelogin/classifierversion/"
    page = admin_client.post(url, {"action": "activate_version", "_selected_action": [versions["f2"].pk]}, follow=True)
    body = page.content.decode()
    assert f"Version {versions['f2'].pk} cannot be activated: its stored model was pruned" in body
    assert body.count("Ready, model pruned (cannot be activated)") >= 1  # the list says so before anyone tries
    assert ClassifierVersion.objects.get(is_active=True) == versions["i4b"]
    page = admin_client.post(url, {"action": "activate_version", "_selected_action": [versions["f3"].pk]}, follow=True)
    assert f"Version {versions['f3'].pk} is now active." in page.content.decode()


def test_a_retrain_that_activates_a_version_prunes_automatically(make_student, settings):
    settings.FACELOGIN = {**settings.FACELOGIN, "KEEP_CLASSIFIER_VERSIONS": 1}
    enrol_background(make_student)
    first = retrain(make_student, full=True)
    second = retrain(make_student, full=True)
    assert stored_sizes()[first.pk]  # the newest full version besides the active one
    # A retrain that is not activated prunes nothing.
    settings.FACELOGIN = {**settings.FACELOGIN, "MIN_HOLDOUT_ACCURACY": 1.01}
    rejected = training.classifier_train(trigger="test", full=True)
    assert rejected.status == "rejected"
    assert stored_sizes()[first.pk]
    settings.FACELOGIN = {**settings.FACELOGIN, "MIN_HOLDOUT_ACCURACY": 0.0}
    third = retrain(make_student, full=True)
    sizes = stored_sizes()
    assert sizes[first.pk] is None and sizes[second.pk] and sizes[third.pk]
    assert sizes[rejected.pk] is None  # a rejected version never stores its model (never activated)
    assert ClassifierVersion.objects.get(pk=first.pk).status == "ready"


def test_a_failed_pruning_is_logged_and_the_retrain_still_activates(make_student, settings, caplog):
    enrol_background(make_student)
    first = retrain(make_student, full=True)
    settings.FACELOGIN = {**settings.FACELOGIN, "KEEP_CLASSIFIER_VERSIONS": 0}  # refused by the pruning
    with caplog.at_level(logging.ERROR, logger="facelogin.services.training"):
        second = training.classifier_train(trigger="test", full=True)
    assert second.is_active and ClassifierVersion.objects.get(is_active=True) == second
    assert "pruning old classifier versions failed" in caplog.text
    assert stored_sizes()[first.pk]


def test_the_command_prints_the_report(make_student, incremental):
    versions = history(make_student)
    before = stored_sizes()
    freed = sum(before[versions[name].pk] for name in ("f1", "i1"))
    out = io.StringIO()
    call_command("prune_classifiers", "--keep", "2", "--dry-run", stdout=out)
    ids = f"v{versions['f1'].pk}, v{versions['i1'].pk}"
    assert out.getvalue().startswith(f"dry run: would prune 2 classifier version(s) ({ids}), freeing {freed:,} bytes")
    assert stored_sizes() == before
    out = io.StringIO()
    call_command("prune_classifiers", "--keep", "2", stdout=out)
    assert out.getvalue().startswith(f"pruned 2 classifier version(s) ({ids}), freed {freed:,} bytes")
    assert f"6 ready version(s) keep their models (active: v{versions['i4b'].pk}, keep: 2)" in out.getvalue()
    sizes = stored_sizes()
    assert sizes[versions["f1"].pk] is None and sizes[versions["i1"].pk] is None and sizes[versions["f2"].pk]
    out = io.StringIO()
    call_command("prune_classifiers", "--keep", "2", stdout=out)
    assert out.getvalue().startswith("nothing to prune")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("prune_classifiers", "--keep", "0")


def test_the_limits_come_from_the_environment():
    """A fresh interpreter: the settings are read from the environment once, at start."""
    code = (
        "from django.conf import settings; c = settings.FACELOGIN; "
        "print(c['KEEP_CLASSIFIER_VERSIONS'], c['INCREMENTAL_MIN_STUDENTS'], c['INCREMENTAL_MAX_CHANGED'], "
        "c['FULL_RETRAIN_HOURS'], c['INCREMENTAL_MAX_STEPS'], c['CLASSIFIER_PART_BYTES'])"
    )

    def run(**env: str) -> subprocess.CompletedProcess:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FACELOGIN_") or k == "FACELOGIN_BIOMETRIC_KEYS"}
        return subprocess.run(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", code], cwd=REPO, env={**clean, **env},
            capture_output=True, text=True, timeout=120,
        )

    assert run().stdout.split() == ["3", "2000", "0.05", "24", "200", str(32 * 1024 * 1024)]
    changed = run(
        FACELOGIN_KEEP_CLASSIFIER_VERSIONS="5", FACELOGIN_INCREMENTAL_MIN_STUDENTS="500", FACELOGIN_INCREMENTAL_MAX_CHANGED="0.1",
        FACELOGIN_FULL_RETRAIN_HOURS="6", FACELOGIN_INCREMENTAL_MAX_STEPS="50", FACELOGIN_CLASSIFIER_PART_MB="8",
    )
    assert changed.stdout.split() == ["5", "500", "0.1", "6", "50", str(8 * 1024 * 1024)], changed.stderr
    refused = run(FACELOGIN_KEEP_CLASSIFIER_VERSIONS="0")
    assert refused.returncode != 0 and "FACELOGIN_KEEP_CLASSIFIER_VERSIONS must be at least 1" in refused.stderr
    too_big = run(FACELOGIN_CLASSIFIER_PART_MB="1024")  # more than a database value holds
    assert too_big.returncode != 0 and "FACELOGIN_CLASSIFIER_PART_MB must be at most 512" in too_big.stderr
