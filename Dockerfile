# segstream worker and simulator image; docker-compose.yml runs it next to Kafka and Redis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# README.md* : the project builds without it (setuptools only warns).
COPY pyproject.toml README.md* ./
COPY segmenters ./segmenters
COPY streams ./streams
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 1000 segstream

USER segstream
# Faust keeps its local table data under the working directory.
WORKDIR /home/segstream

# Faust web (segment look-ups, stats); bind it with SEGSTREAM_WEB_HOST=0.0.0.0.
EXPOSE 6066

CMD ["segstream", "worker"]
