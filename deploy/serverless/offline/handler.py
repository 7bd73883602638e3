"""serverless-offline imports handlers from the service directory: these are tuco's."""

from tuco.serverless import delete_key, get_key, handler, put_key

__all__ = ["delete_key", "get_key", "handler", "put_key"]
