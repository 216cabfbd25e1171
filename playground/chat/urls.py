from __future__ import annotations

from django.urls import path

from playground.chat import views

app_name = "chat"
urlpatterns = [
    path("", views.index, name="index"),
    path("search/", views.search, name="search"),
    path("<int:conversation_id>/", views.conversation, name="conversation"),
    path("<int:conversation_id>/rename/", views.rename, name="rename"),
    path("<int:conversation_id>/delete/", views.delete, name="delete"),
    path("<int:conversation_id>/export.<str:fmt>", views.export, name="export"),
    path("message/<int:message_id>/", views.message, name="message"),
]
