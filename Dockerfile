FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng sox ffmpeg festival festvox-ru fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir .
ENV IVR_AGI__HOST=0.0.0.0 IVR_WEB__HOST=0.0.0.0
CMD ["ivr", "serve"]
