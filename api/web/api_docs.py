"""``/docs``: the API reference, rendered on the server from the app's own OpenAPI document.

Why not Swagger UI: FastAPI's default page loads its JavaScript and CSS from a CDN, so on a
machine without internet (where audits of private models often run) it is a blank page, and
elsewhere every visit tells a third party who reads the docs. This page is plain HTML under the
dashboard's strict CSP: every endpoint with its parameters, body, responses and errors, and every
schema with its fields, types, limits and defaults. ``/openapi.json`` stays the machine-readable
form (clients, code generators).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.web.render import page

router = APIRouter(include_in_schema=False)
METHODS = ("get", "post", "put", "patch", "delete")
LIMITS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"),
          ("minLength", "min length"), ("maxLength", "max length"), ("minItems", "min items"),
          ("maxItems", "max items"))


@dataclass
class TypeText:
    """A type as text pieces, each linking to its schema where it names one."""

    pieces: list[tuple[str, str | None]] = field(default_factory=list)  # (text, schema anchor)

    def add(self, text: str, ref: str | None = None) -> None:
        self.pieces.append((text, ref))


def type_text(schema: dict[str, Any], out: TypeText | None = None) -> TypeText:
    out = out or TypeText()
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        out.add(name, name)
    elif "anyOf" in schema or "oneOf" in schema:
        for i, option in enumerate(schema.get("anyOf") or schema["oneOf"]):
            if i:
                out.add(" | ")
            type_text(option, out)
    elif "enum" in schema:
        out.add(" | ".join(json.dumps(v) for v in schema["enum"]))
    elif "const" in schema:
        out.add(json.dumps(schema["const"]))
    elif schema.get("type") == "array":
        out.add("array of ")
        if "prefixItems" in schema:
            out.add(f"[{', '.join(p.get('type', 'any') for p in schema['prefixItems'])}]")
        else:
            type_text(schema.get("items", {}), out)
    elif schema.get("type") == "object" and "additionalProperties" in schema:
        out.add("object of ")
        extra = schema["additionalProperties"]
        type_text(extra if isinstance(extra, dict) else {}, out)
    else:
        out.add(schema.get("type", "any"))
    return out


def limits_text(schema: dict[str, Any]) -> str:
    return ", ".join(f"{word} {schema[key]}" for key, word in LIMITS if key in schema)


@dataclass
class FieldDoc:
    name: str
    where: str  # path, query, header, body field
    type: TypeText
    required: bool
    limits: str
    default: str
    description: str


def _field(name: str, where: str, schema: dict[str, Any], required: bool, description: str = "") -> FieldDoc:
    default = json.dumps(schema["default"]) if "default" in schema else ""
    return FieldDoc(name, where, type_text(schema), required, limits_text(schema), default,
                 description or schema.get("description", ""))


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    description: str
    anchor: str
    parameters: list[FieldDoc]
    body: list[tuple[str, TypeText]]  # (content type, schema)
    responses: list[tuple[str, str, TypeText | None]]  # (status, description, schema)


def operations(spec: dict[str, Any]) -> list[Operation]:
    ops = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            params = [_field(p["name"], p["in"], p.get("schema", {}), p.get("required", False),
                             p.get("description", "")) for p in op.get("parameters", [])]
            body = [(ctype, type_text(content.get("schema", {})))
                    for ctype, content in op.get("requestBody", {}).get("content", {}).items()]
            responses = []
            for status, resp in op.get("responses", {}).items():
                content = next(iter(resp.get("content", {}).values()), {})
                schema = content.get("schema")
                responses.append((status, resp.get("description", ""), type_text(schema) if schema else None))
            ops.append(Operation(method.upper(), path, op.get("summary", ""), op.get("description", ""),
                                 op.get("operationId", f"{method}-{path}"), params, body, responses))
    return ops


@dataclass
class Schema:
    name: str
    description: str
    fields: list[FieldDoc]
    kind: str  # "object", or the type of a schema without fields (an enum, ...)


def schemas(spec: dict[str, Any]) -> list[Schema]:
    out = []
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        required = set(schema.get("required", ()))
        fields = [_field(k, "field", v, k in required) for k, v in schema.get("properties", {}).items()]
        kind = "object" if fields or schema.get("type") == "object" else \
            "".join(text for text, _ in type_text(schema).pieces)
        out.append(Schema(name, schema.get("description", ""), fields, kind))
    return out


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    spec = request.app.openapi()
    return page(request, "api_docs.html", None, title="API documentation", spec_info=spec.get("info", {}),
                operations=operations(spec), schemas=schemas(spec))
