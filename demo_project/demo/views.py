"""Demo pages."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def index(request: HttpRequest) -> HttpResponse:
    """The demo's start page: what to try, and a tiny echo client."""
    return render(request, "demo/index.html")


def private(request: HttpRequest) -> HttpResponse:
    """The browser flow of the Authenticated WebSocket example: log in, get a token from
    /api/token/, open /ws/private with the token as a subprotocol."""
    return render(request, "demo/private.html")


def chat_room(request: HttpRequest, room: str) -> HttpResponse:
    """The browser client of the chat room ``room`` (WebSocket ``/ws/rooms/<room>``)."""
    return render(request, "demo/chat.html", {"room": room})
