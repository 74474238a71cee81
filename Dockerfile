# Taskrunner application image: one image for every app service (daphne, gunicorn, RQ workers, migrations); the
# compose file picks the command. Build: docker compose build (or docker build -t taskrunner .).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# A system user without a login shell runs the app. The code stays owned by root: the app can read it, not change it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .

# Static files are collected at build time: with DEBUG off, WhiteNoise serves them from STATIC_ROOT through the
# manifest (hashed names, pre-compressed copies). The throwaway key only satisfies the settings for this one step.
RUN DEBUG=0 SECRET_KEY=collectstatic-at-build-time-only python manage.py collectstatic --noinput --verbosity 0

USER app

EXPOSE 8000
CMD ["daphne", "--bind", "0.0.0.0", "--port", "8000", "--proxy-headers", "taskrunner_project.asgi:application"]
