from __future__ import annotations

from django.urls import path

from playground.chat.views import conversations, inspector, library

app_name = "chat"
urlpatterns = [
    path("", conversations.index, name="index"),
    path("search/", conversations.search, name="search"),
    path("prompts/", library.library, name="library"),
    path("prompts/new/", library.new, name="prompt-new"),
    path("prompts/<int:template_id>/edit/", library.edit, name="prompt-edit"),
    path("prompts/<int:template_id>/delete/", library.delete, name="prompt-delete"),
    path("presets/", library.save_preset, name="preset-save"),
    path("presets/<int:preset_id>/delete/", library.delete_preset, name="preset-delete"),
    path("<int:conversation_id>/", conversations.conversation, name="conversation"),
    path("<int:conversation_id>/rename/", conversations.rename, name="rename"),
    path("<int:conversation_id>/delete/", conversations.delete, name="delete"),
    path("<int:conversation_id>/export.<str:fmt>", conversations.export, name="export"),
    path("message/<int:message_id>/", conversations.message, name="message"),
    path("<int:conversation_id>/messages/", conversations.messages, name="messages"),
    path("message/<int:message_id>/show/", conversations.show_version, name="message-show"),
    path("message/<int:message_id>/delete/", conversations.delete_message, name="message-delete"),
    path("message/<int:message_id>/tokens/", inspector.message_tokens, name="message-tokens"),
    path("message/<int:message_id>/token/<int:index>/", inspector.message_token, name="message-token"),
]
