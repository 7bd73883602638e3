"""The deployment pages' commands (docs/deployment/), as the container tests run them
(tests/container/test_recipes_in_docs.py checks that each one is on those pages word for word).

The tests run them in a temporary directory with fresh names: :func:`adapt` swaps the container name, the
volume, the published port and the image tag, and nothing else.
"""

from __future__ import annotations

import re

BUILD = "scripts/build-image tuco"
TOKEN = "python3 -c 'import secrets; print(secrets.token_hex(24), end=\"\")' > admin.token"
RUN = (
    "docker run -d --name tuco --init --stop-timeout 20 -p 127.0.0.1:8080:8080 -v tuco-data:/data"
    " -e TUCO_AUTH=token -e TUCO_BOOTSTRAP_TOKEN_FILE=/run/secrets/tuco_bootstrap_token"
    ' -v "$PWD/admin.token:/run/secrets/tuco_bootstrap_token:ro" tuco'
)
PUT = 'curl -sS -X PUT -H "Authorization: Bearer $(cat admin.token)" --data-binary hello http://127.0.0.1:8080/v1/key/greeting'
GET = 'curl -sS -H "Authorization: Bearer $(cat admin.token)" http://127.0.0.1:8080/v1/key/greeting'
CLI_GET = 'docker exec -e TUCO_TOKEN="$(<admin.token)" tuco tuco get greeting'
STOP = "docker stop tuco"
REMOVE = "docker rm tuco"
TLS_FILES = "chown 10001 tls/key.pem && chmod 0600 tls/key.pem"
TLS_RUN = (
    "docker run -d --name tuco --init --stop-timeout 20 -p 127.0.0.1:8443:8443 -v tuco-data:/data"
    " -e TUCO_PORT=8443 -e TUCO_AUTH=token -e TUCO_BOOTSTRAP_TOKEN_FILE=/run/secrets/tuco_bootstrap_token"
    " -e TUCO_TLS_CERT_FILE=/run/secrets/tls/cert.pem -e TUCO_TLS_KEY_FILE=/run/secrets/tls/key.pem"
    ' -v "$PWD/admin.token:/run/secrets/tuco_bootstrap_token:ro" -v "$PWD/tls:/run/secrets/tls:ro" tuco'
)
TLS_GET = (
    'curl -sS --cacert tls/ca.pem -H "Authorization: Bearer $(cat admin.token)" https://localhost:8443/v1/key/greeting'
)

COMPOSE_SECRETS = "deploy/make-secrets"
COMPOSE_UP = "docker-compose -f deploy/compose.yaml up -d"
COMPOSE_PUT = (
    'curl -sS -X PUT -H "Authorization: Bearer $(cat deploy/secrets/tuco_bootstrap_token)" --data-binary hello'
    " http://127.0.0.1:8080/v1/key/greeting"
)
COMPOSE_STOP_ONE = "docker-compose -f deploy/compose.yaml stop tuco2"
COMPOSE_START_ONE = "docker-compose -f deploy/compose.yaml start tuco2"
COMPOSE_DOWN = "docker-compose -f deploy/compose.yaml down -v"

KUBERNETES_VALIDATE = "kubernetes-validate --strict deploy/kubernetes/*.yaml"

ALL = [value for name, value in sorted(globals().items()) if name.isupper() and isinstance(value, str)]

_CONTAINER_AFTER = {"exec", "stop", "rm", "start", "logs", "inspect"}
_TAKES_VALUE = {"-e", "--env"}


def adapt(command: str, *, container: str = "", volume: str = "", port: int = 0, image: str = "") -> str:
    """The command with the test's container name, volume, port (8080 or 8443 in the README) and image tag."""
    words = command.split(" ")
    out: list[str] = []
    expect_container = False
    skip_value = False
    for index, word in enumerate(words):
        previous = words[index - 1] if index else ""
        if skip_value:
            skip_value = False
        elif previous == "--name" and container:
            word = container
        elif expect_container and word.startswith("-"):
            skip_value = word in _TAKES_VALUE
        elif expect_container:
            expect_container = False
            if container:
                word = container
        elif word in _CONTAINER_AFTER and previous == "docker":
            expect_container = True
        if word == "tuco-data:/data" and volume:
            word = f"{volume}:/data"
        if port:
            word = re.sub(r"(127\.0\.0\.1|localhost):(8080|8443)\b", rf"\g<1>:{port}", word)
        out.append(word)
    if image and words[:2] == ["docker", "run"] and out[-1] == "tuco":
        out[-1] = image
    return " ".join(out)
