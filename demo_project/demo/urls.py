"""Pages of the demo."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="demo-index"),
    path("chat/<slug:room>/", views.chat_room, name="demo-chat"),
]
