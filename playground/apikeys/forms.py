from __future__ import annotations

from django import forms

from playground.apikeys.models import ApiKey


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=ApiKey._meta.get_field("name").max_length,
        strip=True,
        help_text="What the key is for, e.g. the script or machine that uses it.",
    )
