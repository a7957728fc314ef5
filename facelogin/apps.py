from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FaceloginConfig(AppConfig):
    name = "facelogin"
    verbose_name = _("Face login")

    def ready(self) -> None:
        from facelogin import signals  # noqa: F401 - connects the sign-in recorder
