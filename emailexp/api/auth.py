"""Bearer-key authentication for the API blueprint."""
from __future__ import annotations

from functools import wraps

from flask import abort, g, request

from emailexp.extensions import db
from emailexp.ingestion.apikeys import find_api_key


def require_api_key(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            abort(401, description="send an API key as 'Authorization: Bearer <key>' "
                                   "(create one with: emailexp create-api-key NAME)")
        api_key = find_api_key(db.session, token.strip())
        if api_key is None:
            abort(401, description="the API key is unknown or revoked")
        g.api_key_id = api_key.id
        return view(*args, **kwargs)

    return wrapper
