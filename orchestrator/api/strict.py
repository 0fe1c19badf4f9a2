"""Unknown input is an error (422), on every route: a query parameter the route does not declare
(`/search?type=audio` must not quietly search every type), or a body sent to a route that takes none.
Body fields get the same rule from their models (`extra="forbid"`, api/schemas.py).

One app-wide dependency (create_app) instead of a query model per route: it reads the parameters the
matched route declares (its own and its dependencies'), so a new route is covered without doing anything.
"""

from __future__ import annotations

from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from starlette.requests import HTTPConnection


def declared_query_names(dependant: Dependant) -> set[str]:
    """Names (aliases) of the query parameters a route and its dependencies declare."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= declared_query_names(sub)
    return names


def takes_body(dependant: Dependant) -> bool:
    return bool(dependant.body_params) or any(takes_body(sub) for sub in dependant.dependencies)


def reads_body_itself(route: object) -> bool:
    """A route that streams its body itself (an upload) declares it in `openapi_extra["requestBody"]`."""
    return "requestBody" in (getattr(route, "openapi_extra", None) or {})


def _has_body(conn: HTTPConnection) -> bool:
    length = conn.headers.get("content-length")
    return "transfer-encoding" in conn.headers or (length is not None and length.strip() not in ("", "0"))


def reject_unknown_input(conn: HTTPConnection) -> None:
    route = conn.scope.get("route")
    dependant: Dependant | None = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = declared_query_names(dependant)
    errors: list[dict[str, Any]] = [
        {
            "type": "extra_forbidden",
            "loc": ("query", name),
            "msg": "Unknown query parameter",
            "input": value,
        }
        for name, value in conn.query_params.multi_items()
        if name not in known
    ]
    if (
        conn.scope["type"] == "http"
        and _has_body(conn)
        and not takes_body(dependant)
        and not reads_body_itself(route)
    ):
        errors.append(
            {"type": "extra_forbidden", "loc": ("body",), "msg": "This route takes no body", "input": None}
        )
    if errors:
        if conn.scope["type"] == "websocket":
            raise WebSocketRequestValidationError(errors)
        raise RequestValidationError(errors)
