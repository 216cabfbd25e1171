from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from playground.apikeys.models import ApiKey, ApiKeyUsage


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Admins change a key's name and limits here; its secret hash and history are read-only, and a key is
    made (secret shown once) or revoked on the API keys page."""

    list_display = ["name", "shown_prefix", "owner", "created", "last_used", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "owner__username"]
    readonly_fields = ["owner", "prefix", "secret_hash", "created", "last_used", "revoked_at", "revoked_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ApiKeyUsage)
class ApiKeyUsageAdmin(admin.ModelAdmin):
    list_display = ["key", "model_name", "day", "requests", "prompt_tokens", "completion_tokens"]
    list_filter = ["day"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
