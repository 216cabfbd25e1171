from __future__ import annotations

from django.contrib import admin

from playground.inspect.models import TrainedTokenizer


@admin.register(TrainedTokenizer)
class TrainedTokenizerAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "kind", "vocab_size", "actual_vocab_size", "status", "created"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "owner__username"]
    readonly_fields = ["key", "created", "finished", "training_bytes"]
