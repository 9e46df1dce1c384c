FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dialer dialer
COPY workers workers
COPY models models
COPY campaigns campaigns
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
