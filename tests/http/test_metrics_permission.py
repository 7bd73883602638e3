"""The metrics permission (a scraper reads /metrics and no key), and 403s that name the grant a request needs."""

from __future__ import annotations

import httpx

from tests.http.test_auth import ADMIN, bearer, create_token, run_asgi
from tuco.core.tokens import Grant, Permission, TokenRecord, decode_record, encode_record
from tuco.service import Service

_ASK = "Ask an admin for a token with that grant"


def test_a_metrics_token_scrapes_metrics_and_reads_no_key() -> None:
    """GET /metrics is 200 with the families; a key, a listing, a watch and a write are 403 naming what is needed."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/app/config", content=b"secret", headers=ADMIN)).status_code == 201
        scraper = bearer(str((await create_token(client, [("", "metrics")]))["token"]))
        scraped = await client.get("/metrics", headers=scraper)
        assert scraped.status_code == 200
        assert "\ntuco_ready 1.0\n" in scraped.text
        refused = {
            "GET /v1/key/app/config": f"the request needs read on app/config; the token has metrics. {_ASK}",
            "PUT /v1/key/app/config": f"the request needs write on app/config; the token has metrics. {_ASK}",
            "GET /v1/keys?prefix=app/": f"the request needs read on app/*; the token has metrics. {_ASK}",
            "GET /v1/watch": f'the request needs read on every key (prefix ""); the token has metrics. {_ASK}',
            "GET /v1/tokens": f'the request needs admin on every key (prefix ""); the token has metrics. {_ASK}',
            "POST /v1/leases": f"the request needs write on some prefix; the token has metrics. {_ASK}",
        }
        for request, message in refused.items():
            method, path = request.split(" ")
            answer = await client.request(method, path, content=b'{"ttl": 5}', headers=scraper)
            assert (answer.status_code, answer.json()) == (403, {"error": "forbidden", "message": message}), request
        assert b"secret" not in scraped.content

    run_asgi(check)


def test_a_403_names_the_permission_needed_and_the_grants_the_token_has() -> None:
    """A read token on app/ writing app/config, and a key token scraping /metrics, learn exactly what is missing."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        reader = bearer(str((await create_token(client, [("app/", "read"), ("logs/", "write")]))["token"]))
        write = await client.put("/v1/key/app/config", content=b"v", headers=reader)
        assert write.json() == {
            "error": "forbidden",
            "message": f"the request needs write on app/config; the token has read on app/*, write on logs/*. {_ASK}",
        }
        scrape = await client.get("/metrics", headers=reader)
        assert (scrape.status_code, scrape.json()["message"]) == (
            403,
            'the request needs metrics (a grant {"permission": "metrics"}, or read on every key); '
            f"the token has read on app/*, write on logs/*. {_ASK}",
        )
        reader_all = bearer(str((await create_token(client, [("", "read")]))["token"]))
        assert (await client.get("/metrics", headers=reader_all)).status_code == 200  # read on "" implies metrics

    run_asgi(check)


def test_a_metrics_grant_on_a_prefix_is_refused() -> None:
    """The metrics permission is on no key, so a prefix with it is a mistake: 400 saying to leave it out."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        body = {"grants": [{"prefix": "app/", "permission": "metrics"}]}
        answer = await client.post("/v1/tokens", json=body, headers=ADMIN)
        assert (answer.status_code, answer.json()) == (
            400,
            {
                "error": "invalid_parameter",
                "message": 'a metrics grant is for /metrics, not for keys: leave its prefix out (not "app/")',
            },
        )

    run_asgi(check)


def test_token_records_of_older_logs_replay_unchanged_and_a_metrics_grant_round_trips() -> None:
    """A TOKEN_CREATE value written before the metrics permission decodes as it did; a new one encodes its label."""
    old = decode_record("abc", b'{"description":"ci","grants":[["app/","read"],["","admin"]],"sha256":"00ff"}', 7)
    assert old.grants == (Grant("app/", Permission.READ), Grant("", Permission.ADMIN))
    assert (old.description, old.sha256) == ("ci", b"\x00\xff")
    scraper = TokenRecord("def", "prometheus", (Grant("", Permission.METRICS),), 0, b"\x01")
    assert encode_record(scraper) == b'{"description":"prometheus","grants":[["","metrics"]],"sha256":"01"}'
    assert decode_record("def", encode_record(scraper), 9).grants == scraper.grants
