# Stand-in for the official haproxy:2.6 image (built by scripts/standins where no registry is reachable): Debian's
# HAProxy 2.6, reading its configuration where the official image does and running as the haproxy user.
FROM python:3.11-slim
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /usr/local/etc/haproxy /var/lib/haproxy \
 && chown haproxy:haproxy /var/lib/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
ENTRYPOINT ["haproxy", "-W", "-db"]
CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]
