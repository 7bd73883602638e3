"""Handlers by resource: each module answers one resource's routes over the :class:`~tuco.service.Service`."""
