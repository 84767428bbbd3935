# Chorus in a container. Inside it the server listens on all interfaces, which Chorus only
# allows with API keys configured: run it with -e CHORUS_API_KEYS=key1,key2 (and the
# provider keys you use, e.g. -e OPENAI_API_KEY=...).

# The page's third-party code (KaTeX, Prism) from the pinned npm packages: only the built
# files go into the image.
FROM node:20-slim AS web
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/web-packages scripts/
RUN mkdir -p app/static && scripts/web-packages

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /srv/chorus
# The pinned runtime packages first, in a layer of their own that a code change leaves
# cached; then Chorus itself, which adds no package the lock has not pinned.
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY app ./app
COPY --from=web /src/app/static/vendor ./app/static/vendor
COPY providers ./providers
RUN pip install --no-deps . && useradd --system --uid 10001 --home-dir /srv/chorus chorus

USER chorus
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"

CMD ["chorus", "serve", "--host", "0.0.0.0", "--port", "8000"]
