"""The pure core: events, the store and the log record codec. No I/O here."""

from tuco.core.codec import FORMAT_VERSION, HEADER_SIZE, RecordDecoder, encode_header, encode_record
from tuco.core.events import Event, EventType
from tuco.core.store import Store

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "Event",
    "EventType",
    "RecordDecoder",
    "Store",
    "encode_header",
    "encode_record",
]
