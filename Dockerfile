# CPU image serving one exported MODEL_DIR over HTTP (README "Serving a model in a container").
#   docker build -t cellcompare-serve .
#   docker run -p 8000:8000 -v $PWD/results/demo/models/xgboost:/model:ro \
#              -v $PWD/token:/run/secrets/token:ro cellcompare-serve
# The pinned requirements.txt is the one list (torch's PyPI wheel is CUDA-enabled and runs on a
# CPU); tests/test_serve_docker.py checks these commands against the command line.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
WORKDIR /opt/cellcompare
COPY requirements.txt pyproject.toml ./
RUN pip install --upgrade pip && pip install -r requirements.txt
COPY cellcompare ./cellcompare
RUN pip install --no-deps . && useradd --system --uid 10001 --no-create-home serve
USER serve

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
CMD ["cellcompare", "serve", "/model", "--host", "0.0.0.0", "--port", "8000", "--token-file", "/run/secrets/token"]
