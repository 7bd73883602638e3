# A small image of tuco: the pinned runtime dependencies and the package, nothing else.
# Build: docker build -t tuco .    Run: docker run -p 8080:8080 -v tuco-data:/data tuco
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements/runtime.lock requirements/runtime.lock
RUN python -m venv /opt/tuco && /opt/tuco/bin/pip install --no-cache-dir -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/tuco/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
COPY --from=build /opt/tuco /opt/tuco
RUN useradd --system --uid 10001 tuco && mkdir /data && chown tuco /data
USER tuco
# In a container the published port is the boundary, so listen on every interface.
ENV TUCO_HOST=0.0.0.0 TUCO_PORT=8080 TUCO_DATA_DIR=/data PATH=/opt/tuco/bin:$PATH
VOLUME /data
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["tuco", "serve"]
