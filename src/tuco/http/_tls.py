"""TLS on the native server: each connection's handshake, and the client certificate as tuco sees it.

**Starting TLS.** The listening socket is plain and each accepted connection
starts its own handshake (:class:`TlsStart`), so a connection counts against
the server's cap from accept (see :mod:`tuco.http.connection`). The handshake
has a deadline on the server's injectable clock, and bytes that arrive before
the TLS layer takes over are handed to it.

**Peer identity.** A client certificate is one identity, named by its kind,
valid until the certificate's notAfter.

The identity rule, chosen so that no two certificates an issuer told apart
can be mistaken for one another:

* A subject with several common names names no identity: it is refused
  (issuers and parsers disagree about which one counts: Go takes the last).
* Otherwise the first subject alternative name of a kind tuco knows is the
  identity, prefixed with its kind: ``dns:svc-a``, ``uri:spiffe://...``,
  ``email:ops@example.com``, ``ip:10.0.0.7``. The common name is then ignored,
  as RFC 6125 and Go's verifier ignore it beside SANs.
* A certificate without such a SAN is named by its one common name: ``cn:svc-a``.

Grants name an identity the same way (``tuco token create --cert dns:svc-a``),
so ``email:admin``, ``uri:admin`` and ``cn:admin`` are three principals.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple, cast

from tuco.http._clock import Clock

__all__ = ["Peer", "TlsStart", "client_address", "peer_of"]

# A ClientHello is a few KiB; more than this before the TLS layer takes over is not one.
_MAX_EARLY_BYTES: Final = 64 * 1024

_SAN_KINDS = {"DNS": "dns", "URI": "uri", "email": "email", "IP Address": "ip"}


class Peer(NamedTuple):
    """A client certificate: its ``identity`` ("" when it names none, and ``refusal`` says why), its notAfter."""

    identity: str
    not_after: float
    """Unix seconds: the certificate, and every request or stream it carries, is valid until then."""
    refusal: str = ""


def peer_of(cert: Mapping[str, Any]) -> Peer:
    """The peer of a verified certificate as ``SSLObject.getpeercert()`` decodes it."""
    raw_not_after = cert.get("notAfter")
    not_after = float(ssl.cert_time_to_seconds(raw_not_after)) if isinstance(raw_not_after, str) else 0.0
    names = [str(value) for rdn in cert.get("subject", ()) for name, value in rdn if name == "commonName"]
    if len(names) > 1:
        return Peer("", not_after, "several common names")
    for kind, value in cert.get("subjectAltName", ()):
        prefix = _SAN_KINDS.get(kind)
        if prefix is None:
            continue
        text = str(value).strip()
        if prefix == "ip":
            try:
                text = str(ipaddress.ip_address(text))
            except ValueError:
                continue
        return Peer(f"{prefix}:{text}", not_after)
    if names:
        return Peer(f"cn:{names[0]}", not_after)
    return Peer("", not_after, "no name")


def client_address(transport: asyncio.BaseTransport) -> str | None:
    """``host:port`` of the client (``[host]:port`` for IPv6), for audit lines."""
    address = transport.get_extra_info("peername")
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    host = str(address[0])
    return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"


class TlsStart:
    """One connection's TLS handshake, from accept to ``done(transport, early)``; a failed one calls ``done(None)``.

    uvloop starts reading right after ``connection_made`` whatever it did, so
    the start of the ClientHello may reach the protocol before ``start_tls``
    puts the TLS protocol in front; the protocol passes it to :meth:`arrived`.
    Those bytes are handed to the TLS protocol by a callback queued just before
    ``start_tls`` runs: callbacks run in order, so it runs after the swap and
    before the TLS protocol's own ``connection_made``, which finds them in its
    input buffer. And a client may send its first request with its last
    handshake message: the TLS layer decrypts it before the handshake's task
    resumes, so it is kept (:meth:`arrived` again) and given to ``done`` to parse.
    """

    __slots__ = ("_early", "_early_is_tls", "_task", "_timer")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        raw: asyncio.Transport,
        protocol: asyncio.BaseProtocol,
        context: ssl.SSLContext,
        timeout: float,
        clock: Clock,
        done: Callable[[asyncio.Transport | None, bytes], None],
    ) -> None:
        # Bytes that arrived during the handshake: TLS records read before the TLS layer took the transport over
        # (_early_is_tls), then requests decrypted before the handshake's task resumed.
        self._early: list[bytes] = []
        self._early_is_tls = True
        self._timer = clock.call_at(clock.now() + timeout, self.cancel)
        self._task = loop.create_task(self._run(raw, protocol, context, timeout, done))

    def arrived(self, data: bytes) -> None:
        """Keep bytes the protocol received while the handshake runs (a bounded amount of TLS records)."""
        if not self._early_is_tls or sum(map(len, self._early)) < _MAX_EARLY_BYTES:
            self._early.append(data)

    def cancel(self) -> None:
        """Abandon the handshake (its deadline passed, or the server closes): ``done(None)`` follows."""
        self._task.cancel()

    async def _run(
        self,
        raw: asyncio.Transport,
        protocol: asyncio.BaseProtocol,
        context: ssl.SSLContext,
        timeout: float,
        done: Callable[[asyncio.Transport | None, bytes], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(self._hand_over_early_bytes, raw, protocol)
        try:
            transport = await loop.start_tls(raw, protocol, context, server_side=True, ssl_handshake_timeout=timeout)
        except (Exception, asyncio.CancelledError):  # the client's failure, not ours: it just goes
            transport = None
        self._timer.cancel()
        early, self._early = self._early, []
        if transport is None or transport.is_closing():
            raw.abort()
            done(None, b"")
            return
        done(transport, b"".join(early))

    def _hand_over_early_bytes(self, raw: asyncio.Transport, protocol: asyncio.BaseProtocol) -> None:
        early, self._early = self._early, []
        self._early_is_tls = False
        tls_protocol = raw.get_protocol()
        if not early or tls_protocol is protocol:
            return
        data = memoryview(b"".join(early))
        if hasattr(tls_protocol, "buffer_updated"):  # both loops' TLS protocols are buffered ones
            buffered = cast(asyncio.BufferedProtocol, tls_protocol)
            while data:
                buffer = memoryview(buffered.get_buffer(len(data)))
                size = min(len(buffer), len(data))
                buffer[:size] = data[:size]
                buffered.buffer_updated(size)
                data = data[size:]
        else:
            cast(asyncio.Protocol, tls_protocol).data_received(bytes(data))
