"""manage.py retry_task ID [ID ...]"""

from tasks import maintenance

from ._bulk import BulkCommand


class Command(BulkCommand):
    help = ("Retry failed or cancelled tasks with a fresh budget of attempts. Exit status 1 if any task was refused "
            "or does not exist.")
    action = staticmethod(maintenance.tasks_retry)
