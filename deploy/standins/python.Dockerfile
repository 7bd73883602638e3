# Stand-in for the official python:3.11 image (built by scripts/standins where no registry is reachable): the
# python:3.11-slim stand-in plus what the full official image adds and the tuco image's build stage needs to compile
# the request path with mypyc: a C compiler and Python's headers.
FROM python:3.11-slim
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends gcc libc6-dev python3-dev \
 && rm -rf /var/lib/apt/lists/*
