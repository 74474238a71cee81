"""OpenAPI generation: drf-spectacular's AutoSchema, plus the error responses a client of each operation can meet.

Without them the schema promised only 200/201 (and 409), while every operation also answers 401/403, lookups 404,
input 400, bodies 415 and task creation 429; schemathesis (tests/test_schemathesis.py) holds the API to this list.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent

DETAIL_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "description": "Why the request was refused.",
}
MESSAGES = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
VALIDATION_SCHEMA = {
    "oneOf": [
        {"type": "object", "additionalProperties": MESSAGES,
         "description": "Each invalid field (or `detail`, `non_field_errors`) with its messages."},
        {"type": "array", "items": {"type": "string"}},
    ],
}


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description, schema in self._error_responses():
            responses.setdefault(code, {
                "description": description,
                "content": {"application/json": {"schema": schema}},
            })
        return responses

    def _error_responses(self):
        detail = self._component("ErrorDetail", DETAIL_SCHEMA)
        has_body = self.method in ("POST", "PUT", "PATCH")
        has_query = any(parameter.get("in") == "query" for parameter in self._get_parameters())
        if has_body or has_query:
            yield "400", "Invalid input: every problem, by field.", self._component("ValidationError",
                                                                                    VALIDATION_SCHEMA)
        yield "401", "No credentials, or invalid ones (session or `Authorization: Token <key>`).", detail
        yield "403", "Not allowed (for a session: the CSRF token is missing or wrong).", detail
        if "{" in self.path or has_query:
            yield "404", "No such task among those you may see, or no such page.", detail
        if has_body:
            yield "415", "The body's content type is not JSON, form or multipart.", detail
        if self._is_create_operation() and self.view.get_throttles():
            yield "429", "Too many tasks created; the Retry-After header says when to try again.", detail

    def _component(self, name, schema):
        component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema)
        self.registry.register_on_missing(component)
        return component.ref
