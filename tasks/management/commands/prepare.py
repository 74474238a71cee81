"""Get a machine ready to run Taskrunner: services reachable, database created and migrated, an admin account.

Run by bin/dev before the web server and workers start; safe to run again at any time.
"""

import secrets

import psycopg
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from psycopg import sql


class Command(BaseCommand):
    help = "Check PostgreSQL and Redis, create the database if missing, migrate, and create a first admin account."

    def handle(self, *args, **options):
        self.ensure_database()
        self.check_redis()
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        self.ensure_admin()

    def ensure_database(self):
        db = settings.DATABASES["default"]
        where = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}"
        params = {"host": db.get("HOST") or None, "port": db.get("PORT") or None, "user": db.get("USER") or None,
                  "password": db.get("PASSWORD") or None, "connect_timeout": 5}
        try:
            psycopg.connect(dbname=db["NAME"], **params).close()
            return
        except psycopg.OperationalError as exc:
            if "does not exist" not in str(exc):
                raise CommandError(
                    f"PostgreSQL is not reachable at {where} (DATABASE_URL, user {db.get('USER')!r}): "
                    f"{str(exc).strip()}\nStart it, e.g. `pg_ctlcluster --skip-systemctl-redirect 15 main start` "
                    f"or `sudo systemctl start postgresql`, or point DATABASE_URL at a running server."
                ) from exc
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
        self.stdout.write(f"Created database {db['NAME']!r} on {where}.")

    def check_redis(self):
        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5).ping()
        except redis.RedisError as exc:
            raise CommandError(
                f"Redis is not reachable at {settings.REDIS_URL} (REDIS_URL): {exc}\n"
                f"Start it, e.g. `redis-server --daemonize yes` or `sudo systemctl start redis-server`, or point "
                f"REDIS_URL at a running server."
            ) from exc

    def ensure_admin(self):
        User = get_user_model()
        if User.objects.exists():
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", email="", password=password)
        self.stdout.write(self.style.SUCCESS(
            f"Created the first account: user 'admin', password '{password}' (shown once; change it in /admin/)."
        ))
