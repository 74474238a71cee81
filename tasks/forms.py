"""The create form of the dashboard. It only parses input: the rules live in services.validate_task_input, and their
messages come back from services.task_create and are attached to the fields here."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from . import services, task_types


class TaskCreateForm(forms.Form):
    name = forms.CharField(required=False, max_length=1000,
                           widget=forms.TextInput(attrs={"placeholder": "e.g. Nightly export", "autocomplete": "off"}))
    task_type = forms.CharField(required=False, label="Type", widget=forms.Select())
    execution_time = forms.CharField(required=False, label="Execution time (s)", initial="5",
                                     widget=forms.TextInput(attrs={"inputmode": "decimal"}))
    max_attempts = forms.IntegerField(required=False, label="Max attempts",
                                      initial=settings.TASKRUNNER_DEFAULT_MAX_ATTEMPTS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.types = task_types.all_types()
        self.fields["task_type"].widget.choices = [(t.name, t.name.replace("_", " ")) for t in self.types]
        self.fields["task_type"].initial = "simulated" if "simulated" in task_types.names() else None

    def save(self, *, owner):
        """Create the task through the service; on refusal attach its messages to the fields and return None."""
        try:
            return services.task_create(owner=owner, **self.cleaned_data)
        except ValidationError as error:
            self.add_error(None, error)
            return None
