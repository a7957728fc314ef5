"""Clear the stored models of classifier versions nothing needs any more (the rows stay).

Every retrain that activates a version does this already; the command is for operators: to see what
would go (``--dry-run``) or to keep fewer or more roll-back targets than FACELOGIN_KEEP_CLASSIFIER_VERSIONS.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from facelogin.services.training import prune_classifier_artifacts


class Command(BaseCommand):
    help = (
        "Clear the stored models of old classifier versions. The active version, the versions it is built on "
        "and the newest N other full retrains (with incremental versions built on them) keep theirs."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--keep", type=int, default=None, metavar="N",
            help="full versions to keep besides the active one (default: FACELOGIN_KEEP_CLASSIFIER_VERSIONS)",
        )
        parser.add_argument("--dry-run", action="store_true", help="only report what would be pruned")

    def handle(self, *args, keep: int | None, dry_run: bool, **options) -> None:
        try:
            report = prune_classifier_artifacts(keep=keep, dry_run=dry_run)
        except ValueError as refused:  # the service checks --keep
            raise CommandError(str(refused)) from refused
        self.stdout.write(str(report))
