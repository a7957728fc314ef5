"""How a session was authenticated, read as campus apps get it (amr, acr, auth_time): plain values,
no database. The requests are stand-ins holding only a session dict, as auth_event_record needs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from facelogin.services import auth_context as ac
from facelogin.services.sso import Requirement, RequestRefused, authorization_decide, requirement_parse

NOW = 1_800_000_000


def session_of(*events, user="7"):
    request = SimpleNamespace(session={"_auth_user_id": user})
    for method, at, liveness in events:
        ac.auth_event_record(request=request, method=method, liveness=liveness, at=at)
    return request.session


def test_each_method_earns_its_level():
    assert ac.auth_context_of(session_of(("pwd", NOW, None))) == ac.AuthContext(("pwd",), ac.ACR_PWD, NOW)
    assert ac.auth_context_of(session_of(("face", NOW, False))).acr == ac.ACR_FACE
    assert ac.auth_context_of(session_of(("face", NOW, True))).acr == ac.ACR_FACE_LIVENESS


def test_face_and_password_in_one_session_are_mfa_timed_by_the_later():
    context = ac.auth_context_of(session_of(("face", NOW, True), ("pwd", NOW + 30, None)))
    assert context == ac.AuthContext(("face", "pwd", "mfa"), ac.ACR_MFA, NOW + 30)


def test_max_age_counts_only_recent_sign_ins():
    session = session_of(("face", NOW - 4000, True), ("pwd", NOW - 10, None))
    assert ac.auth_context_of(session, max_age=600, now=NOW).amr == ("pwd",)
    assert ac.auth_context_of(session, max_age=5, now=NOW) is None


def test_events_of_another_user_or_a_signed_out_session_count_for_nothing():
    session = session_of(("pwd", NOW, None), user="7")
    session["_auth_user_id"] = "8"  # someone else now (login() empties the session; belt and braces)
    assert ac.auth_context_of(session) is None
    assert ac.auth_context_of({}) is None
    assert ac.auth_context_of({"_auth_user_id": "7", "auth_events": [{"method": "pwd"}, "junk", {"method": "otp", "at": 1}]}) is None


def test_an_unknown_method_is_refused_and_the_list_stays_short():
    with pytest.raises(ValueError):
        session_of(("otp", NOW, None))
    session = session_of(*[("pwd", NOW + i, None) for i in range(20)])
    assert len(session["auth_events"]) == ac.MAX_EVENTS and ac.auth_context_of(session).auth_time == NOW + 19


def test_the_session_id_for_apps_is_stable_and_not_the_session_key():
    session = session_of(("pwd", NOW, None))
    sid = session[ac.SID_SESSION_KEY]
    ac.auth_event_record(request=SimpleNamespace(session=session), method="face", liveness=False, at=NOW + 1)
    assert session[ac.SID_SESSION_KEY] == sid and len(sid) >= 32


def test_levels_are_ordered_for_step_up():
    assert [ac.acr_level(a) for a in ac.ACR_LEVELS] == [0, 1, 2, 3]
    mfa = ac.auth_context_of(session_of(("face", NOW, False), ("pwd", NOW, None)))
    assert all(mfa.satisfies(a) for a in ac.ACR_LEVELS)
    with pytest.raises(ac.UnknownAcr):
        ac.acr_level("urn:example:gold")


@pytest.mark.parametrize(
    ("session_events", "acr", "step_up"),
    [
        ([("pwd", NOW, None)], ac.ACR_FACE, "face"),
        ([("pwd", NOW, None)], ac.ACR_MFA, "face"),
        ([("face", NOW, True)], ac.ACR_MFA, "pwd"),
        ([("face", NOW, False)], ac.ACR_FACE, None),
        ([], None, "any"),
    ],
)
def test_the_decision_names_the_sign_in_that_is_missing(session_events, acr, step_up):
    context = ac.auth_context_of(session_of(*session_events))
    requirement = Requirement(acr=acr, max_age=None, login=False, none=False, consent=False)
    decision = authorization_decide(context=context, requirement=requirement, liveness_on=True, face_possible=True)
    assert decision.step_up == step_up


def test_requirements_are_parsed_strictly():
    assert requirement_parse(acr_values=f"{ac.ACR_MFA} {ac.ACR_FACE}", claims=None, max_age="60", prompt="login").acr == ac.ACR_FACE
    for bad in ({"acr_values": "gold"}, {"max_age": "soon"}, {"max_age": "-1"}, {"claims": {"id_token": {"acr": {"values": ["x"]}}}}):
        with pytest.raises(RequestRefused) as refused:
            requirement_parse(**{"acr_values": None, "claims": None, "max_age": None, "prompt": "", **bad})
        assert refused.value.error == "invalid_request"
