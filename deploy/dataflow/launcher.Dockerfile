# The flex-template launcher: runs `clout run` with the template's parameters, which plans the start
# from Redis and submits the pipeline to Dataflow with the worker image above.
# Build from the repository root: docker build -f deploy/dataflow/launcher.Dockerfile -t clout-launcher:0.1.0 .
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base
WORKDIR /template
COPY pyproject.toml README.md ./
COPY clout ./clout
COPY deploy/dataflow/main.py ./main.py
RUN pip install --no-cache-dir .
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py
