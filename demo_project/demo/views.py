"""Demo pages."""

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST


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


def live(request: HttpRequest) -> HttpResponse:
    """The pub/sub demo: the news feed for anyone, a room with presence after logging in (/ws/live)."""
    return render(request, "demo/live.html")


@require_POST
async def live_news(request: HttpRequest) -> HttpResponse:
    """Staff publish to ``news`` (clients may not: its rule says publish nobody)."""
    from rockstar_ws import default_server

    user = await request.auser()
    if not user.is_staff:
        return JsonResponse({"error": "log in to the admin as a staff user (admin / admin-password)"}, status=403)
    title = str(json.loads(request.body or b"{}").get("title", "")).strip()[:200]
    if not title:
        return JsonResponse({"error": "title is empty"}, status=400)
    result = await default_server.publish("news", {"title": title, "by": user.get_username()})
    pos = result.position
    return JsonResponse({"offset": pos.offset if pos else None, "epoch": pos.epoch if pos else None})
