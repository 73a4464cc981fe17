"""The HTTP API of ``mmssl serve``: FastAPI over a :class:`~mmssl.serving.service.Service`.

Needs the ``serve`` extra (``pip install 'mmssl[serve]'``). Endpoints (OpenAPI at ``/docs``):

- ``GET /health``: counts, the index, the cold-start method;
- ``GET /recommend?user=ID&k=20&exclude_seen=true`` and ``POST /recommend`` (a batch of users):
  items with scores and the items table's columns (title, ...);
- ``GET /items/{id}`` and ``GET /items/{id}/similar?k=20``: an item, and the items closest to
  it (cosine of the model's item vectors);
- ``POST /items``: a new item from its features (a vector per modality, or raw text for text
  features made by mmssl's encoder), recommended from then on;
- ``POST /users``: a new user folded in from the items they liked; ``GET /users`` lists ids,
  ``GET /users/{id}/history`` their training items;
- ``GET /``: a page to look at all of this (no build step, nothing from a CDN).

Bad input is a 4xx JSON error ``{"error": "FIELD: what is wrong"}``: 404 for an unknown user or
item, 409 for an id that exists, 422 for anything else (a bad ``k``, malformed JSON, a wrong
feature width, NaN).
"""

from __future__ import annotations

# The hot endpoints return a JSONResponse themselves: FastAPI's jsonable_encoder walk over a
# returned dict costs more than the query.
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mmssl.errors import MmsslError
from mmssl.serving.page import PAGE
from mmssl.serving.service import MAX_BATCH, MAX_K, Conflict, Service, UnknownId

K = Query(20, ge=1, le=MAX_K, description=f"items to return, 1 to {MAX_K}")


class Strict(BaseModel):
    """Request bodies refuse fields they do not know."""

    model_config = ConfigDict(extra="forbid")


class BatchRequest(Strict):
    """A batch of users to recommend for."""

    users: list[str] = Field(min_length=1, max_length=MAX_BATCH, description="original user ids")
    k: int = Field(20, ge=1, le=MAX_K, description="items per user")
    exclude_seen: bool = Field(True, description="leave out each user's training items")


class NewItem(Strict):
    """A new item: an id, its content and what to show about it."""

    id: str = Field(min_length=1, max_length=200, description="the new item's id")
    features: dict[str, list[float]] = Field(
        default_factory=dict, description="modality name -> its feature vector")
    text: dict[str, str] = Field(
        default_factory=dict,
        description="modality name -> raw text, for text features made by mmssl's encoder")
    metadata: dict[str, str] = Field(default_factory=dict, description="e.g. {'title': ...}")


class NewUser(Strict):
    """A new user and the items they liked."""

    id: str = Field(min_length=1, max_length=200, description="the new user's id")
    items: list[str] = Field(min_length=1, max_length=MAX_BATCH, description="item ids")


def create_app(service: Service) -> FastAPI:
    """The FastAPI application answering from ``service``."""
    app = FastAPI(title="mmssl serve", version="1",
                  description=f"Recommendations from the run {service.source}.")

    @app.exception_handler(UnknownId)
    async def _unknown(request: Request, exc: UnknownId):
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict):
        return JSONResponse({"error": str(exc)}, status_code=409)

    @app.exception_handler(MmsslError)
    async def _bad(request: Request, exc: MmsslError):
        return JSONResponse({"error": " ".join(str(exc).split())}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"{where or 'request'}: {first.get('msg', 'invalid')}"
        if first.get("type") == "json_invalid":
            message = f"body: malformed JSON ({first.get('msg')} at character {where})"
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in errors]
        return JSONResponse({"error": message, "detail": detail}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.get("/health")
    def health() -> dict:
        """The service is up: counts, the index, the cold-start method."""
        return {"status": "ok", **service.facts()}

    @app.get("/recommend", response_class=JSONResponse)
    def recommend(user: str = Query(..., min_length=1, description="original user id"), k: int = K,
                  exclude_seen: bool = Query(True, description="leave out training items")):
        """Top-k items of one user, best first, with scores and item metadata."""
        return JSONResponse(service.recommend([user], k, exclude_seen)[0])

    @app.post("/recommend", response_class=JSONResponse)
    def recommend_batch(body: BatchRequest):
        """Top-k items of each user of a batch."""
        return JSONResponse({"results": service.recommend(body.users, body.k, body.exclude_seen)})

    @app.get("/items/{item_id}")
    def item(item_id: str) -> dict:
        """One item: its id and metadata."""
        return service.describe_item(service.item_index(item_id))

    @app.get("/items/{item_id}/similar", response_class=JSONResponse)
    def similar(item_id: str, k: int = K):
        """The k items most similar to this one (cosine of the model's item vectors)."""
        return JSONResponse({"item": service.describe_item(service.item_index(item_id)),
                             "similar": service.similar(item_id, k)})

    @app.post("/items", status_code=201)
    def add_item(body: NewItem) -> dict:
        """Add a new item from its content; it is recommended from now on."""
        return service.add_items([body.model_dump()])[0]

    @app.get("/users")
    def users(limit: int = Query(MAX_K, ge=1, le=100_000, description="ids to list")) -> dict:
        """User ids (trained first, then added)."""
        return {"users": service.user_ids(limit)}

    @app.post("/users", status_code=201)
    def add_user(body: NewUser) -> dict:
        """Add a new user folded in from items they liked (mean of the items' vectors)."""
        return service.add_user(body.id, body.items)

    @app.get("/users/{user_id}/history")
    def history(user_id: str) -> dict:
        """A user's training items (or those a new user was folded in from)."""
        return {"user": user_id, "items": service.history(user_id)}

    return app


def serve(service: Service, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app on uvicorn until interrupted (access log off: it costs more than a query)."""
    import uvicorn

    uvicorn.run(create_app(service), host=host, port=port, log_level="warning", access_log=False)


__all__ = ["BatchRequest", "NewItem", "NewUser", "create_app", "serve"]
