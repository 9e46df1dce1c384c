FROM python:3.11-slim
WORKDIR /app
# The locked, hash-checked versions first (a layer that changes only with the lock), then
# the project without resolving its dependencies again.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY dialer dialer
COPY workers workers
COPY models models
COPY campaigns campaigns
RUN pip install --no-cache-dir --no-deps .
ENV PYTHONUNBUFFERED=1
