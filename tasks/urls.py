from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("tasks/new/", views.task_create, name="task-create"),
    path("tasks/<int:task_id>/", views.task_detail, name="task-detail"),
    path("tasks/<int:task_id>/log/", views.task_log, name="task-log"),
    path("tasks/<int:task_id>/cancel/", views.task_cancel, name="task-cancel"),
    path("tasks/<int:task_id>/retry/", views.task_retry, name="task-retry"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
