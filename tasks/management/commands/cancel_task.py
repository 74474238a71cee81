"""manage.py cancel_task ID [ID ...]"""

from tasks import maintenance

from ._bulk import BulkCommand


class Command(BulkCommand):
    help = ("Cancel pending or running tasks (a running one stops at its next cancellation check). Exit status 1 if "
            "any task was refused or does not exist.")
    action = staticmethod(maintenance.tasks_cancel)
