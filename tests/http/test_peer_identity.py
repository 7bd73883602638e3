"""The certificate identity rule over ``getpeercert()`` dictionaries: one identity, named by its kind."""

from __future__ import annotations

import pytest

from tuco.core.tokens import decode_record, identity_problem
from tuco.http._tls import Peer, peer_of

_NOT_AFTER = "Jun  1 12:00:00 2027 GMT"
_SECONDS = 1811851200.0


def _cert(cns: tuple[str, ...] = (), sans: tuple[tuple[str, str], ...] = ()) -> dict[str, object]:
    subject = tuple((("commonName", cn),) for cn in cns)
    return {"subject": subject, "subjectAltName": sans, "notAfter": _NOT_AFTER}


@pytest.mark.parametrize(
    ("cert", "peer"),
    [
        (_cert(("svc-a",)), Peer("cn:svc-a", _SECONDS)),
        (_cert(("admin", "svc-a")), Peer("", _SECONDS, "several common names")),
        (_cert(("admin",), (("DNS", "svc-a"),)), Peer("dns:svc-a", _SECONDS)),
        (_cert((), (("email", "admin"),)), Peer("email:admin", _SECONDS)),
        (_cert((), (("URI", "admin"),)), Peer("uri:admin", _SECONDS)),
        (_cert((), (("URI", "spiffe://example.org/a"), ("DNS", "a"))), Peer("uri:spiffe://example.org/a", _SECONDS)),
        (_cert((), (("DirName", "x"), ("IP Address", "2001:DB8:0:0:0:0:0:1\n"))), Peer("ip:2001:db8::1", _SECONDS)),
        (_cert((), (("othername", "<unsupported>"),)), Peer("", _SECONDS, "no name")),
        (_cert(), Peer("", _SECONDS, "no name")),
    ],
)
def test_a_certificate_has_at_most_one_identity_named_by_its_kind(cert: dict[str, object], peer: Peer) -> None:
    """Several CNs name none; the first SAN of a known kind wins over the CN; without SANs the one CN counts."""
    assert peer_of(cert) == peer


@pytest.mark.parametrize(
    ("identity", "fine"),
    [
        ("dns:svc-a", True),
        ("uri:spiffe://example.org/a", True),
        ("email:ops@example.com", True),
        ("ip:10.0.0.7", True),
        ("cn:svc a", True),
        ("svc-a", False),
        ("DNS:svc-a", False),
        ("san:svc-a", False),
        ("dns:", False),
        ("dns: svc-a", False),
    ],
)
def test_a_grant_names_a_certificate_identity_by_its_kind(identity: str, fine: bool) -> None:
    """kind:value with one of the five kinds, a value without surrounding blanks; anything else is refused."""
    assert (identity_problem(identity) is None) == fine


def test_a_grant_stored_before_kinds_names_a_common_name() -> None:
    """A record from an older build with a bare "svc-a" reads as cn:svc-a; one with a kind is read as it is."""
    legacy = decode_record("00000000000000aa", b'{"grants": [["", "read"]], "cert": "svc-a"}', 1)
    current = decode_record("00000000000000ab", b'{"grants": [["", "read"]], "cert": "uri:spiffe://x/y"}', 2)
    assert (legacy.cert, current.cert) == ("cn:svc-a", "uri:spiffe://x/y")
    assert (legacy.principal.name, current.principal.name) == ("cn:svc-a", "uri:spiffe://x/y")
