# The flyte_lab worker / base image: what `--cluster k8s` runs (scheduler and workers) and what any
# remote `dask worker` needs: flyte_lab with papermill, ipykernel and Dask. Build from a clone:
#   docker build -f docker/worker.Dockerfile -t REGISTRY/flyte-lab-worker:0.1.0 .
# Add the packages your notebooks' setup cells import in a derived image (or point `--image` at one).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FLYTE_LAB_HOME=/home/flyte/.flyte_lab

RUN useradd --create-home --uid 1000 flyte

WORKDIR /opt/flyte_lab
COPY pyproject.toml README.md ./
COPY flyte_lab ./flyte_lab
# installing the project itself from the build context: its versions are pinned by pyproject.toml
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[k8s]" \
    && python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3"

USER 1000
WORKDIR /home/flyte
# dask-kubernetes sets the command (dask-scheduler / dask-worker …); this default starts a worker shell
CMD ["dask", "worker", "--help"]
