# babelforge image: the pipeline, its CLI, Prefect worker and Ray (head or worker) in one image.
# CPU build by default; a CUDA build by argument (the same TORCH_SPEC / TORCH_INDEX as the Makefile):
#   docker build -t babelforge:cpu .
#   docker build -t babelforge:cu128 --build-arg TORCH_SPEC="torch==2.9.1" \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# Used by deploy/compose.yaml (local stack) and deploy/k8s/ (KubeRay, Prefect Kubernetes work pool).
FROM python:3.11-slim

ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=

ENV PYTHONUNBUFFERED=1 \
    TOKENIZERS_PARALLELISM=false \
    PREFECT_LOGGING_EXTRA_LOGGERS=pipeline \
    BABELFORGE_HOME=/opt/babelforge \
    PREFECT_HOME=/opt/babelforge/.prefect

RUN apt-get update && apt-get install -y --no-install-recommends git libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/babelforge
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY flows ./flows
COPY tasks ./tasks
COPY configs ./configs
COPY deploy ./deploy
COPY data/sample ./data/sample

# the install the Makefile (and so CI) runs: pip upgraded, then torch and the project in one resolve
RUN python -m pip install --quiet --upgrade pip \
    && python -m pip install --quiet $(if [ -n "$TORCH_INDEX" ]; then echo --extra-index-url "$TORCH_INDEX"; fi) \
       "$TORCH_SPEC" -e ".[dev]"

# no secrets in the image: AWS_*, MLFLOW_TRACKING_URI, PREFECT_API_URL, RAY_AUTH_TOKEN come from the environment.
# No ENTRYPOINT: the command is the program (`docker run babelforge:cpu babelforge run --config ...`),
# as Prefect's Kubernetes worker (args = `prefect flow-run execute`) and KubeRay (`ray start`) expect.
CMD ["babelforge", "--help"]
