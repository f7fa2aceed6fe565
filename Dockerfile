# Production image: the API only (`busstats serve`), configured by BUSSTATS_* and AWS_* variables.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir "pdm[locked]==2.29.3"
WORKDIR /app
COPY pyproject.toml pdm.lock README.md ./
COPY src ./src
RUN PDM_CHECK_UPDATE=false pdm sync --prod --no-editable --quiet

FROM python:3.11-slim
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    BUSSTATS_STORE=/data
RUN mkdir /data && chown nobody /data
USER nobody
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health')"
CMD ["busstats", "serve", "--host", "0.0.0.0", "--port", "8080"]
