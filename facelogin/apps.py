from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FaceloginConfig(AppConfig):
    name = "facelogin"
    verbose_name = _("Face login")

    def ready(self) -> None:
        from facelogin import signals  # connects the sign-in recorder

        signals.connect_campus_app_signals()
