# The API (`busstats serve`) on port 8080. It is configured only through environment
# variables (docs/operations.md); the image sets nothing but BUSSTATS_STORE=/data, a local
# folder for a first run, which a deployment replaces with s3://<bucket>.
#
# Both stages use the same exact Python image: the virtual environment built in the first
# stage points at that image's interpreter. PDM_VERSION matches the one in ./run.

FROM python:3.11.14-slim-bookworm AS build
ENV PDM_CHECK_UPDATE=false \
    PIP_DISABLE_PIP_VERSION_CHECK=1
ARG PDM_VERSION=2.29.3
RUN pip install --no-cache-dir "pdm[locked]==${PDM_VERSION}"
WORKDIR /app
# Dependencies first, exactly as pdm.lock pins them (production group only), so that a
# change to the code alone reuses this layer.
COPY pyproject.toml pdm.lock ./
RUN pdm sync --prod --no-self --quiet
COPY README.md ./
COPY src ./src
RUN pdm sync --prod --no-editable --quiet

FROM python:3.11.14-slim-bookworm
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BUSSTATS_STORE=/data
COPY --from=build /app/.venv /app/.venv
RUN mkdir /data && chown 10001:10001 /data
USER 10001:10001
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
CMD ["busstats", "serve", "--host", "0.0.0.0", "--port", "8080"]
