"""WSGI entry point: HTTP only (the API and pages), for a WSGI server such as gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskrunner_project.settings")
application = get_wsgi_application()
