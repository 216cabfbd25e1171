from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from playground.core import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("login/link/<str:token>/", views.login_link, name="login-link"),
]
