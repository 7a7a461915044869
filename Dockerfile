# calbridge as a container image: the daemon as an unprivileged user, state on a volume, secrets
# from Docker/Podman secrets, a health check on /healthz of the admin listener. See the README,
# "Container".
#
#   docker build -t calbridge .
#   docker run -d --name calbridge -p 127.0.0.1:8765:8765 \
#       -v /srv/calbridge/config.toml:/etc/calbridge/config.toml:ro \
#       -v calbridge-state:/var/lib/calbridge \
#       -v /srv/calbridge/secrets:/run/secrets:ro calbridge
#
# tests/deploy/test_container.py runs this file's ENTRYPOINT, CMD, ENV, USER and HEALTHCHECK as
# a plain process, and builds the image where a container engine is available.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY . /src
RUN pip install /src && rm -rf /src \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/calbridge \
        --no-create-home --shell /usr/sbin/nologin calbridge \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/calbridge \
    && install -d -m 0755 /etc/calbridge

# The config is mounted at /etc/calbridge/config.toml (no secrets in it); each *_credential
# names a file in /run/secrets; the state lives in the volume. Feeds listen on every interface of
# the container; /healthz and /metrics (the admin listener) only on the container's own loopback,
# where the HEALTHCHECK reaches them and nothing outside does. To let Prometheus scrape, run with
# -e CALBRIDGE_HTTP__ADMIN_LISTEN=0.0.0.0:8766 -p 127.0.0.1:8766:8766 (README, "Container").
ENV STATE_DIRECTORY=/var/lib/calbridge \
    CREDENTIALS_DIRECTORY=/run/secrets \
    CALBRIDGE_HTTP__LISTEN=0.0.0.0:8765 \
    CALBRIDGE_HTTP__ADMIN_LISTEN=127.0.0.1:8766
VOLUME ["/var/lib/calbridge"]
EXPOSE 8765
USER 10001:10001
WORKDIR /var/lib/calbridge

# 200 while ok or degraded (Canvas down: the last good feeds are still served), else unhealthy.
# It asks the admin listener (a wildcard address is reached on loopback) and sends the bearer token
# when CALBRIDGE_HTTP__ADMIN_TOKEN_FILE names one.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; host, _, port = os.environ['CALBRIDGE_HTTP__ADMIN_LISTEN'].rpartition(':'); host = {'0.0.0.0': '127.0.0.1', '[::]': '[::1]'}.get(host, host); token = os.environ.get('CALBRIDGE_HTTP__ADMIN_TOKEN_FILE'); headers = {'Authorization': 'Bearer ' + open(token).read().strip()} if token else {}; r.urlopen(r.Request(f'http://{host}:{port}/healthz', headers=headers), timeout=4)"]

ENTRYPOINT ["calbridge"]
CMD ["run", "--config", "/etc/calbridge/config.toml"]
