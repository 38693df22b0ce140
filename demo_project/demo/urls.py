"""Pages of the demo, and SimpleJWT's token views for WebSocket clients."""

from django.urls import path
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from . import views

urlpatterns = [
    path("", views.index, name="demo-index"),
    path("private/", views.private, name="demo-private"),
    path("api/token/", TokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("api/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("chat/<slug:room>/", views.chat_room, name="demo-chat"),
    path("live/", views.live, name="demo-live"),
    path("live/news/", views.live_news, name="demo-live-news"),
]
