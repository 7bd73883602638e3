"""A TLS client certificate as tuco sees it: one identity, named by its kind, valid until the certificate's notAfter.

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

import ipaddress
import ssl
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["Peer", "peer_of"]

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
