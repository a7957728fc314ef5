"""Thin HTTP views: they parse the request, call a service and render."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST, require_safe
from django.utils.translation import gettext_lazy as _

from facelogin.auth import student_of
from facelogin.models import FaceConsent, SignIn
from facelogin.services import consent, devices, operations, sso
from facelogin.services.auth_context import FACE, PWD, SID_SESSION_KEY, auth_event_record
from facelogin.services.enrolment import face_ready
from facelogin.services.faceflow import claim_forget, claim_store, face_page_context, safe_next
from facelogin.services.reports import ReportRefused, sign_in_report_not_me
from facelogin.services.signins import METHOD_ATTR, SCORES_ATTR, client_ip, recent_sign_ins
from facelogin.services.tickets import TicketRefused, ticket_redeem

STEP_UP_PARAM = "step_up"

TICKET_REFUSED_MESSAGES = {
    "unknown": _("That sign-in link is not valid. Please try again."),
    "used": _("That sign-in was already used. Please try again."),
    "expired": _("That sign-in took too long to complete. Please try again."),
    "other_session": _("That sign-in belongs to another browser. Please try again."),
    "inactive": _("This account cannot sign in. Please contact the registrar's office."),
}


@login_required
def home(request: HttpRequest) -> HttpResponse:
    student = student_of(request.user)
    return render(
        request,
        "facelogin/home.html",
        {
            "student": student,
            "sign_ins": recent_sign_ins(user=request.user),
            "consent": consent.consent_active(student=student) if student else None,
            "face_ready": face_ready(student=student) if student else False,
            "campus_apps": sso.apps_let_in(user=request.user) if settings.SSO["ENABLED"] else [],
            "browsers": devices.browsers_of(student=student, request=request) if student else [],
            "device_policy": settings.FACELOGIN["DEVICE_POLICY"],
        },
    )


@login_required
@require_POST
def browser_revoke(request: HttpRequest, browser_id: int) -> HttpResponse:
    """The student stops face sign-in on one of their remembered browsers."""
    student = student_of(request.user)
    revoked = devices.browser_revoke(student=student, browser_id=browser_id, actor=request.user) if student else None
    if revoked is None:
        messages.error(request, _("That browser could not be found."))
    else:
        messages.success(request, _("Face sign-in alone is switched off on %(browser)s. Your password will be asked for there.") % {"browser": revoked.label})
    return redirect("home")


@login_required
@require_POST
def campus_app_revoke(request: HttpRequest, consent_id: int) -> HttpResponse:
    """The student takes back a campus app's access (its tokens revoked, its session ended)."""
    revoked = sso.consent_revoke(user=request.user, consent_id=consent_id, ip=client_ip(request))
    if revoked is None:
        messages.error(request, _("That app could not be found."))
    else:
        messages.success(request, _("%(app)s can no longer sign you in or read your details. It will ask you again next time.") % {"app": revoked.application.name})
    return redirect("home")


def step_up_requested(request: HttpRequest) -> bool:
    """A campus app asked for a fresh or stronger sign-in: the sign-in pages then serve a signed-in
    person too, instead of sending them home."""
    return (request.POST.get(STEP_UP_PARAM) or request.GET.get(STEP_UP_PARAM)) == "1"


def end_other_session(request: HttpRequest, user) -> None:
    """``login()`` empties the session when someone else signs in over it: first end the campus-app
    sessions the previous person had from it, as a sign-out would."""
    current = getattr(request, "user", None)
    if current is not None and current.is_authenticated and current.pk != user.pk:
        sso.session_logout(user=current, sid=request.session.get(SID_SESSION_KEY), ip=client_ip(request))


@login_required
def consent_page(request: HttpRequest) -> HttpResponse:
    """The consent text; the student gives or withdraws consent here."""
    student = student_of(request.user)
    if student is None:
        return redirect("home")
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "give":
            consent.consent_record(student=student, method=FaceConsent.Method.PORTAL, actor=request.user)
            messages.success(request, _("Thank you. Your consent is recorded; the registrar's office can now enrol your photos."))
        elif action == "withdraw" and request.POST.get("confirm") == "yes":
            consent.consent_withdraw(student=student, actor=request.user)
            messages.success(request, _("Your consent is withdrawn and your face data is deleted. Sign in with your password."))
        else:
            messages.error(request, _("Tick the box to confirm that your face data will be deleted."))
            return redirect("consent")
        return redirect("home")
    return render(
        request,
        "facelogin/consent.html",
        {"consent": consent.consent_active(student=student), "version": consent.current_text_version()},
    )


class PasswordLoginView(auth_views.LoginView):
    template_name = "facelogin/login.html"
    redirect_authenticated_user = True

    def dispatch(self, request, *args, **kwargs):
        self.redirect_authenticated_user = not step_up_requested(request)
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form):
        end_other_session(self.request, form.get_user())
        response = super().form_valid(form)  # login(): rotates the session key
        auth_event_record(request=self.request, method=PWD)
        student = student_of(form.get_user())
        if student is not None and self.request.POST.get("remember_browser") == "1":
            devices.browser_remember(student=student, request=self.request, response=response)
        return response

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "step_up": step_up_requested(self.request),
            "device_policy": settings.FACELOGIN["DEVICE_POLICY"],
        }


def password_locked_out(request: HttpRequest, original_response=None, credentials: dict | None = None) -> HttpResponse:
    """settings.AXES_LOCKOUT_CALLABLE: the answer to a password sign-in refused during a lock-out
    (portal and admin), saying until when, in the page's language."""
    import math

    from django.utils import timezone

    from facelogin.services.password_lockout import password_locked_until

    until = password_locked_until(request, credentials) or timezone.now()
    seconds = max(1, math.ceil((until - timezone.now()).total_seconds()))
    admin = request.path.startswith(reverse("admin:index"))
    response = render(
        request,
        "facelogin/locked_out.html",
        {
            "until": timezone.localtime(until),
            "minutes": max(1, math.ceil(seconds / 60)),
            "retry_path": request.path,
            "face_link": not admin,
            "next": safe_next(request, request.POST.get("next") or request.GET.get("next")),
        },
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response


@ensure_csrf_cookie
def face_login(request: HttpRequest) -> HttpResponse:
    """The camera page; in verify mode it first asks for the student number (kept in the session)."""
    step_up = step_up_requested(request)
    if request.user.is_authenticated and not step_up:
        return redirect("home")
    if request.method == "POST":  # verify mode's first step, or "not you?"
        if request.POST.get("action") == "change":
            claim_forget(request)
        elif not claim_store(request, request.POST.get("student_number", "")):
            messages.error(request, _("Enter your student number."))
        return redirect(face_login_url(request, request.POST.get("next"), step_up=step_up))
    # The websocket's ticket is bound to this browser's session, so make sure there is one.
    if not request.session.session_key:
        request.session.save()
    return render(request, "facelogin/face_login.html", {**face_page_context(request), "step_up": step_up})


def face_login_url(request: HttpRequest, next_value: str | None, *, step_up: bool) -> str:
    query = {}
    next_url = safe_next(request, next_value)
    if next_url:
        query["next"] = next_url
    if step_up:
        query[STEP_UP_PARAM] = "1"
    target = reverse("face_login")
    return f"{target}?{urlencode(query)}" if query else target


@require_POST
def face_login_complete(request: HttpRequest) -> HttpResponse:
    """Redeem the websocket's ticket and establish the portal session (or, on a browser where the face may
    not sign this student in alone, ask for the password first: FACELOGIN_DEVICE_POLICY)."""
    step_up = step_up_requested(request)
    # One transaction for the ticket, the rotated session, the last-login stamp and the sign-in record:
    # one commit instead of five in the portal's busiest minutes.
    with transaction.atomic():
        try:
            ticket = ticket_redeem(token=request.POST.get("ticket", ""), session_key=request.session.session_key)
        except TicketRefused as refused:  # raised before ticket_redeem writes anything
            messages.error(request, TICKET_REFUSED_MESSAGES.get(refused.reason, TICKET_REFUSED_MESSAGES["unknown"]))
            return redirect(face_login_url(request, request.POST.get("next"), step_up=step_up))
        liveness = bool((ticket.scores or {}).get("liveness"))
        decision = devices.face_alone(student=ticket.student, request=request)
        if not decision.allowed:
            face_pending_store(request, student=ticket.student, liveness=liveness, scores=ticket.scores)
            return redirect(face_confirm_url(request, request.POST.get("next"), step_up=step_up))
        setattr(request, METHOD_ATTR, SignIn.Method.FACE)
        setattr(request, SCORES_ATTR, ticket.scores)
        end_other_session(request, ticket.student.user)
        login(request, ticket.student.user, backend="facelogin.auth.ActiveStudentBackend")  # rotates the session key
        # The ticket says whether this face passed the liveness challenge (campus apps see it in acr).
        auth_event_record(request=request, method=FACE, liveness=liveness)
        devices.face_alone_used(decision=decision)
        if decision.kiosk is not None:  # a shared terminal: short sessions, gone when the browser closes
            request.session.set_expiry(settings.FACELOGIN["KIOSK_SESSION_SECONDS"])
    return redirect(safe_next(request, request.POST.get("next")) or "home")


FACE_PENDING_SESSION_KEY = "face_pending"


def face_pending_store(request: HttpRequest, *, student, liveness: bool, scores: dict) -> None:
    """A face recognised on a browser that must also give the password: held in this browser's session."""
    import time

    request.session[FACE_PENDING_SESSION_KEY] = {"student": student.pk, "at": time.time(), "liveness": liveness, "scores": scores}


def face_pending_of(request: HttpRequest):
    """The student whose face this browser showed, while the password step is still open; else None."""
    import time

    from facelogin.models import Student

    pending = request.session.get(FACE_PENDING_SESSION_KEY)
    if not isinstance(pending, dict) or time.time() - float(pending.get("at", 0)) > settings.FACELOGIN["FACE_CONFIRM_SECONDS"]:
        return None, {}
    student = Student.objects.select_related("user").filter(pk=pending.get("student")).first()
    if student is None or not student.may_sign_in or student.face_login_blocked:
        return None, {}
    return student, pending


def face_confirm_url(request: HttpRequest, next_value: str | None, *, step_up: bool) -> str:
    return face_login_url(request, next_value, step_up=step_up).replace(reverse("face_login"), reverse("face_confirm"), 1)


def masked_number(number: str) -> str:
    """2026••01: enough for the student to see it is their account, not enough to learn someone's."""
    start, end = (4, 2) if len(number) > 6 else (len(number) // 2, 0)
    return number[:start] + "•" * (len(number) - start - end) + (number[len(number) - end :] if end else "")


def face_confirm(request: HttpRequest) -> HttpResponse:
    """The password that completes a face sign-in on a browser not yet known for the student."""
    from django.contrib.auth import authenticate

    student, pending = face_pending_of(request)
    step_up = step_up_requested(request)
    next_value = request.POST.get("next") if request.method == "POST" else request.GET.get("next")
    if student is None:
        request.session.pop(FACE_PENDING_SESSION_KEY, None)
        messages.error(request, _("That sign-in took too long to complete. Please try again."))
        return redirect(face_login_url(request, next_value, step_up=step_up))
    error = ""
    if request.method == "POST":
        user = authenticate(request, username=student.user.get_username(), password=request.POST.get("password", ""))
        if getattr(request, "axes_locked_out", False):
            return password_locked_out(request, credentials={"username": student.user.get_username()})
        if user is not None and user.pk == student.user.pk:
            request.session.pop(FACE_PENDING_SESSION_KEY, None)
            setattr(request, METHOD_ATTR, SignIn.Method.FACE_PASSWORD)
            setattr(request, SCORES_ATTR, pending.get("scores"))
            end_other_session(request, user)
            login(request, user, backend="facelogin.auth.ActiveStudentBackend")
            auth_event_record(request=request, method=FACE, liveness=bool(pending.get("liveness")))
            auth_event_record(request=request, method=PWD)
            response = redirect(safe_next(request, next_value) or "home")
            if request.POST.get("remember_browser") == "1":
                devices.browser_remember(student=student, request=request, response=response)
            return response
        error = _("That password is not right. Try again, or start over with your student number and password.")
    return render(
        request,
        "facelogin/face_confirm.html",
        {"masked_number": masked_number(student.student_number), "next": safe_next(request, next_value), "step_up": step_up, "error": error},
        status=400 if error else 200,
    )


@login_required
@require_POST
def report_not_me(request: HttpRequest, sign_in_id: int) -> HttpResponse:
    student = student_of(request.user)
    if student is None:
        return redirect("home")
    try:
        sign_in_report_not_me(student=student, sign_in_id=sign_in_id)
    except ReportRefused:
        messages.error(request, _("That sign-in could not be found."))
        return redirect("home")
    messages.warning(
        request,
        _("Thank you. Face sign-in is switched off for your account until the registrar's office has looked into it. Please change your password."),
    )
    return redirect("home")


class SignOutView(auth_views.LogoutView):
    pass


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """This process's figures for the operations team's monitoring (facelogin.services.operations)."""
    if not operations.metrics_enabled():
        raise Http404
    if not operations.scrape_allowed(request.headers.get("Authorization", "")):
        response = HttpResponse("A bearer token is needed.\n", status=401, content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(operations.metrics_text(), content_type=operations.CONTENT_TYPE)


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers: answers at once; ``face_engine`` says whether this process's models are warm."""
    from facelogin.services.recognition import engine_ready

    return JsonResponse({"status": "ok", "face_engine": "ready" if engine_ready() else "loading"})
