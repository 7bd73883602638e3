"""HTTP front ends: the native httptools server and the ASGI app, over one request handler."""

from tuco.http.api import KeyValueAPI, Limits, Phase, Response

__all__ = ["KeyValueAPI", "Limits", "Phase", "Response"]
