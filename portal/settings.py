"""Settings for the face-login portal, read from environment variables with safe embedded defaults.

Every variable is listed in the README's configuration table. Embedded defaults: SQLite under
``data/``, an in-process channel layer and Celery tasks run in-process. ``DATABASE_URL`` switches to
PostgreSQL, ``REDIS_URL`` to the Redis channel layer, a shared cache and a real Celery broker.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from portal.env import env, env_bool, env_choice, env_float, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env("FACELOGIN_DATA_DIR") or BASE_DIR / "data").resolve()
(DATA_DIR / "static").mkdir(parents=True, exist_ok=True)  # SQLite and WhiteNoise need them to exist

DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env("DJANGO_SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set when DJANGO_DEBUG is off. "
            "`./portal.sh serve` generates a local one under data/ for the embedded run."
        )
    SECRET_KEY = "insecure-debug-only-key"  # noqa: S105 - only ever used with DJANGO_DEBUG=1

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

# Behind TLS (production), cookies are secure, HSTS is on and plain HTTP redirects.
HTTPS = env_bool("DJANGO_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", HTTPS)
if env_bool("DJANGO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_SECONDS", 8 * 3600, minimum=60)
SESSION_ENGINE = "portal.sessions"
# Threads serving HTTP requests in each daphne process (portal.asgi_http); each keeps a database connection.
HTTP_THREADS = env_int("DJANGO_HTTP_THREADS", 8, minimum=1)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "facelogin",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------------
SQLITE_PATH = DATA_DIR / "portal.sqlite3"
DATABASE_URL = env("DATABASE_URL")
# Connections are kept for a minute by the threads that opened them (HTTP pool, socket database thread,
# workers): opening one cost ~1 ms of CPU on SQLite (Django registers its SQL functions every time).
CONN_MAX_AGE = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=CONN_MAX_AGE, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            "CONN_MAX_AGE": CONN_MAX_AGE,
            # WAL and a generous timeout: daphne's threads and in-process tasks write concurrently.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, shared cache, Celery broker -----------------------------------------
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    # channels-redis polls with a 5 s blocking pop; redis-py 8 times reads out at 5 s by default,
    # which killed idle websockets (close 1011) after ~5 s. Give reads room above the poll.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}]},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None  # results live on the database rows the tasks update
# Without Redis the tasks run in-process (the embedded default); with it, a separate worker runs them.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300, minimum=10)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A killed worker's unacknowledged task comes back after this long (Redis visibility timeout).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=5)}

# --- auth -------------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = ["facelogin.auth.ActiveStudentBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- i18n -------------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("ko", _("Korean"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = env("DJANGO_TIME_ZONE", "Asia/Seoul")
USE_TZ = True

# --- static -----------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# --- mail -------------------------------------------------------------------------------------
EMAIL_BACKEND = env("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25)
EMAIL_TIMEOUT = 10  # seconds: a mail server that does not answer must not hold a worker (or, embedded, a request)
DEFAULT_FROM_EMAIL = env("DJANGO_DEFAULT_FROM_EMAIL", "portal@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

if CELERY_TASK_ALWAYS_EAGER:
    # In-process tasks would log a line per photo into management commands' output.
    LOGGING["loggers"]["celery.app.trace"] = {"level": "WARNING"}

# --- face login -------------------------------------------------------------------------------
# Read once here; facelogin.services.recognition turns them into pipeline objects.
FACELOGIN = {
    "SIGNIN_STATUSES": env_list("FACELOGIN_SIGNIN_STATUSES", "enrolled"),
    "MODEL": env("FACELOGIN_MODEL", "casia-webface"),
    "MODEL_PATH": env("FACELOGIN_MODEL_PATH"),
    "MODEL_DIR": Path(env("FACELOGIN_MODEL_DIR") or DATA_DIR / "models"),
    "TORCH_THREADS": env_int("FACELOGIN_TORCH_THREADS", 1, minimum=1),
    # FaceNet backend: "onnx" (ONNX Runtime; exported from the same weights and checked against torch
    # at load) or "torch". Chosen by bench.latency and bench.accuracy; see the README.
    "EMBEDDER": env_choice("FACELOGIN_EMBEDDER", "onnx", ("torch", "onnx")),
    # Login frames are detected on a copy with this long side (0: the detector's 640). bench.accuracy
    # on webcam-style frames: the same sign-in results at 320 as at 640, for half the detection cost.
    "LOGIN_DETECT_SIDE": env_int("FACELOGIN_LOGIN_DETECT_SIDE", 320, minimum=0),
    "RECOGNITION_THREADS": env_int("FACELOGIN_RECOGNITION_THREADS", 1, minimum=1),
    "CLASSIFIER": env("FACELOGIN_CLASSIFIER", "centroid"),
    "TARGET_FPIR": env_float("FACELOGIN_TARGET_FPIR", 0.001),
    # "identify": the face alone; "verify": the student number first, then the face, compared with
    # that student only (the admin recommends it when a stranger would too often match someone).
    "MODE": env_choice("FACELOGIN_MODE", "identify", ("identify", "verify")),
    # Optional ceiling on the calibrated threshold (1.0: none). Above it genuine students are mostly
    # refused; when it binds, the stranger-match chance exceeds the target and the admin says so.
    "MAX_THRESHOLD": env_float("FACELOGIN_MAX_THRESHOLD", 1.0),
    "MIN_HOLDOUT_ACCURACY": env_float("FACELOGIN_MIN_HOLDOUT_ACCURACY", 0.9),
    "MIN_FRAMES": env_int("FACELOGIN_MIN_FRAMES", 3, minimum=1),
    # How an attempt's frames add up (facelogin/pipeline/decide.py, AttemptDecider): "track" fuses the
    # face track's frames into one embedding; "votes" needs MIN_FRAMES frames voting one by one.
    "FUSION": env_choice("FACELOGIN_FUSION", "track", ("track", "votes")),
    "MAX_FRAMES": env_int("FACELOGIN_MAX_FRAMES", 40, minimum=1),
    "ATTEMPT_SECONDS": env_int("FACELOGIN_ATTEMPT_SECONDS", 30, minimum=3),
    "MAX_FRAME_BYTES": env_int("FACELOGIN_MAX_FRAME_BYTES", 512 * 1024, minimum=1024),
    "MAX_FRAMES_PER_SECOND": env_float("FACELOGIN_MAX_FRAMES_PER_SECOND", 12.0),
    "MAX_UPLOAD_BYTES": env_int("FACELOGIN_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1024),
    "MAX_PIXELS": env_int("FACELOGIN_MAX_PIXELS", 40_000_000, minimum=10_000),
    "MIN_PHOTOS": env_int("FACELOGIN_MIN_PHOTOS", 3, minimum=1),
    "TICKET_SECONDS": env_int("FACELOGIN_TICKET_SECONDS", 30, minimum=5),
    "THROTTLE_IP_ATTEMPTS": env_int("FACELOGIN_THROTTLE_IP_ATTEMPTS", 30, minimum=1),
    "THROTTLE_SESSION_ATTEMPTS": env_int("FACELOGIN_THROTTLE_SESSION_ATTEMPTS", 10, minimum=1),
    "THROTTLE_STUDENT_ATTEMPTS": env_int("FACELOGIN_THROTTLE_STUDENT_ATTEMPTS", 10, minimum=1),
    "THROTTLE_WINDOW_SECONDS": env_int("FACELOGIN_THROTTLE_WINDOW_SECONDS", 600, minimum=1),
    "THROTTLE_FAILURES_BEFORE_COOLDOWN": env_int("FACELOGIN_THROTTLE_FAILURES", 5, minimum=1),
    "THROTTLE_COOLDOWN_SECONDS": env_int("FACELOGIN_THROTTLE_COOLDOWN_SECONDS", 300, minimum=1),
    "RETRAIN_DEBOUNCE_SECONDS": env_int("FACELOGIN_RETRAIN_DEBOUNCE_SECONDS", 10, minimum=0),
    # Incremental retraining (facelogin/services/training.py). Below this many students a full retrain
    # costs seconds and also refreshes the held-out check, so it always runs.
    "INCREMENTAL_MIN_STUDENTS": env_int("FACELOGIN_INCREMENTAL_MIN_STUDENTS", 2_000, minimum=0),
    # More students changed than this fraction of the gallery (a bulk import): retrain fully, so the
    # held-out check covers them.
    "INCREMENTAL_MAX_CHANGED": env_float("FACELOGIN_INCREMENTAL_MAX_CHANGED", 0.05),
    # A full retrain at least this often (on the first enrolment change after it): it refits the
    # classifier and measures it on held-out photos again; incremental versions carry its measurement.
    "FULL_RETRAIN_HOURS": env_int("FACELOGIN_FULL_RETRAIN_HOURS", 24, minimum=0),
    # Loading a version with no model in memory applies every step since its full retrain, one by one
    # (tens of milliseconds each at 30,000 students): bound the walk.
    "INCREMENTAL_MAX_STEPS": env_int("FACELOGIN_INCREMENTAL_MAX_STEPS", 200, minimum=0),
    # Retention (after every retrain that activates a version, and `manage.py prune_classifiers`): the
    # stored models of versions no longer needed are cleared, the rows stay. The active version, what it
    # is built on, and the newest this many other full retrains (roll-back targets, with the small
    # incremental versions built on them) keep theirs. A full model is about 300 MB at 30,000 students.
    "KEEP_CLASSIFIER_VERSIONS": env_int("FACELOGIN_KEEP_CLASSIFIER_VERSIONS", 3, minimum=1),
    "MODEL_REFRESH_SECONDS": env_float("FACELOGIN_MODEL_REFRESH_SECONDS", 2.0),
    "KEEP_ORIGINALS": env_bool("FACELOGIN_KEEP_ORIGINALS", False),
    # Active liveness (a random head-movement challenge). Off only by this explicit switch; the
    # admin and the sign-in page then show a warning.
    "LIVENESS": env_bool("FACELOGIN_LIVENESS", True),
    # Appearance drift (facelogin/services/drift.py): face templates learnt from a student's own sign-ins
    # that passed liveness, at most this many per student (0: off), taken into the gallery by a retrain
    # no sooner than DRIFT_RETRAIN_MINUTES after the newest version.
    "DRIFT_TEMPLATES": env_int("FACELOGIN_DRIFT_TEMPLATES", 5, minimum=0),
    "DRIFT_RETRAIN_MINUTES": env_int("FACELOGIN_DRIFT_RETRAIN_MINUTES", 60, minimum=0),
    # The version of the consent text students agree to (templates/facelogin/consent_text.html);
    # change it whenever the text changes.
    "CONSENT_VERSION": env("FACELOGIN_CONSENT_VERSION", "2026-1"),
    "AUDIT_RETENTION_DAYS": env_int("FACELOGIN_AUDIT_RETENTION_DAYS", 365, minimum=1),
    "WARM_UP": env_bool("FACELOGIN_WARM_UP", True),
    # Test hook: wait this long at the start of each training (the crash-recovery test kills the
    # worker inside it). Always 0 in production.
    "TRAINING_PAUSE_SECONDS": env_float("FACELOGIN_TRAINING_PAUSE_SECONDS", 0.0),
}
