from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class StrictPageSizeMixin:
    """DRF silently falls back to the default page size for a page_size that is not a positive integer; answer 400
    instead, so a client learns its mistake (larger sizes are capped at max_page_size, as documented)."""

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw in (None, ""):
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise ValidationError(
                {self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size} is required."]}
            )
        return min(size, self.max_page_size)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = f"Results per page, 1 to {self.max_page_size} (larger values are capped)."
        return parameters


class TaskPagination(StrictPageSizeMixin, PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class LogPagination(StrictPageSizeMixin, PageNumberPagination):
    page_size = 200
    page_size_query_param = "page_size"
    max_page_size = 1000
