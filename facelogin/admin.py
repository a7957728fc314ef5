"""Admin pages for registrar staff. Thin: every change goes through a service."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from facelogin.models import SignIn, Student
from facelogin.services.students import student_create


class StudentForm(forms.ModelForm):
    password = forms.CharField(
        label=_("Initial password"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Optional. Without one the student can only sign in by face until a password is set."),
    )

    class Meta:
        model = Student
        fields = ["student_number", "full_name", "department", "status", "face_login_blocked", "face_login_blocked_reason"]


@admin.register(Student)
class StudentAdmin(admin.ModelAdmin):
    form = StudentForm
    list_display = ["student_number", "full_name", "department", "status", "face_login_blocked"]
    list_filter = ["status", "department", "face_login_blocked"]
    search_fields = ["student_number", "full_name", "department", "user__email"]
    readonly_fields = ["created_at", "updated_at"]

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if obj is not None and "password" in fields:
            fields.remove("password")  # passwords of existing students change through the user admin
        return fields

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        created = student_create(
            student_number=form.cleaned_data["student_number"],
            full_name=form.cleaned_data["full_name"],
            department=form.cleaned_data.get("department", ""),
            status=form.cleaned_data["status"],
            password=form.cleaned_data.get("password") or None,
        )
        obj.pk, obj.user_id = created.pk, created.user_id
        obj._state.adding = False


@admin.register(SignIn)
class SignInAdmin(admin.ModelAdmin):
    list_display = ["at", "user", "method", "ip"]
    list_filter = ["method"]
    search_fields = ["user__username", "ip"]
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
