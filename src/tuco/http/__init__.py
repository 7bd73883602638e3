"""HTTP front ends: the native httptools server and the ASGI app, over one request handler."""

from tuco.http.api import KeyValueAPI
from tuco.http.messages import Request, Response, StreamResponse
from tuco.http.routes import ROUTES, Route

__all__ = ["ROUTES", "KeyValueAPI", "Request", "Response", "Route", "StreamResponse"]
