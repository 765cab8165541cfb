# thred-bridge: build the wheels, install them into a virtual environment, ship that on a slim runtime.
#   docker build -t thred-bridge .
# The same image runs every role (README, "Deploy"):
#   thred-bridge serve --host 0.0.0.0 --port 8080   (the default command)
#   thred-bridge worker
#   thred-bridge migrate
# tests/integration/test_image_install.py runs this file's `pip` lines in clean virtual environments.

# --- build: the project and every runtime dependency as wheels (binary wheels: no compiler anywhere) --------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .
# Offline from the wheels only: a dependency missing from /wheels fails the build here, not at run time.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheels thred-bridge

# --- runtime: the virtual environment only (no wheels, no pip cache, no compiler), as a non-root user -------
FROM python:3.11-slim
RUN groupadd --system --gid 10001 bridge \
    && useradd --system --no-log-init --uid 10001 --gid bridge --home-dir /data --shell /usr/sbin/nologin bridge \
    && mkdir /data \
    && chown bridge:bridge /data
COPY --from=build /opt/venv /opt/venv
# BRIDGE_DATABASE_URL: a SQLite file in /data for a single container (mount a volume there to keep it);
# set it to postgresql://… to run several web and worker containers. Secrets come from the environment.
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BRIDGE_DATABASE_URL=sqlite:////data/thred-bridge.db
WORKDIR /data
USER 10001:10001
EXPOSE 8080
# Liveness (slim has no curl): `serve` answers on 8080; run a worker with BRIDGE_METRICS_PORT=8080 to answer too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
CMD ["thred-bridge", "serve", "--host", "0.0.0.0", "--port", "8080"]
