"""Form fields drawn from a pydantic JSON schema (a method's settings from ``/v1/catalog``, the
recipe), so a method registered tomorrow gets its form with no page change. Scalars (numbers,
booleans, choices, text) become inputs, one level of nested objects is flattened
(``optimizer.lr``, ``clipping.threshold``); whatever is left (lists, tuples, optional objects,
and a nested object's lists such as ``optimizer.betas``, under the object's name) is edited in
the form's JSON box, which starts with those fields' defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCALARS = {"integer", "number", "boolean", "string"}


@dataclass
class FormField:
    path: str  # dotted: "image_lr", "clipping.threshold"
    label: str
    kind: str  # number | checkbox | select | text
    default: Any = None
    required: bool = False
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    step: str = "any"
    options: list[str] = field(default_factory=list)
    description: str = ""


@dataclass
class FormLayout:
    fields: list[FormField]
    json_defaults: dict[str, Any]  # the fields left to the JSON box, with their defaults


def _resolve(prop: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The property's own schema ($ref followed, Optional[X] unwrapped) and whether null is allowed."""
    nullable = False
    if "anyOf" in prop:
        options = [o for o in prop["anyOf"] if o.get("type") != "null"]
        nullable = len(options) < len(prop["anyOf"])
        if len(options) == 1:
            prop = {**{k: v for k, v in prop.items() if k != "anyOf"}, **options[0]}
    if "$ref" in prop:
        target = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
        prop = {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop, nullable


def _scalar(path: str, prop: dict[str, Any], nullable: bool, required: bool, default: Any) -> FormField | None:
    kind = prop.get("type")
    choices = prop.get("enum") or ([prop["const"]] if "const" in prop else None)
    label = path.replace(".", ": ").replace("_", " ")
    common = {"path": path, "label": label, "default": default, "required": required,
              "nullable": nullable, "description": prop.get("description", "")}
    if choices is not None and all(isinstance(c, str) for c in choices):
        return FormField(kind="select", options=list(choices), **common)
    if kind in ("integer", "number"):
        low = prop.get("minimum", prop.get("exclusiveMinimum"))
        high = prop.get("maximum", prop.get("exclusiveMaximum"))
        return FormField(kind="number", minimum=low, maximum=high,
                         step="1" if kind == "integer" else "any", **common)
    if kind == "boolean":
        return FormField(kind="checkbox", **common)
    if kind == "string":
        return FormField(kind="text", **common)
    return None


def form_layout(schema: dict[str, Any], defaults: dict[str, Any], *, skip: tuple[str, ...] = ()) -> FormLayout:
    defs = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    fields: list[FormField] = []
    rest: dict[str, Any] = {}
    for name, raw in schema.get("properties", {}).items():
        if name in skip:
            continue
        prop, nullable = _resolve(raw, defs)
        default = defaults.get(name, raw.get("default"))
        made = _scalar(name, prop, nullable, name in required, default) if prop.get("type") in SCALARS \
            or "enum" in prop or "const" in prop else None
        if made is not None:
            fields.append(made)
            continue
        inner = prop.get("properties")
        if prop.get("type") == "object" and inner and not nullable:
            inner_defaults = default if isinstance(default, dict) else {}
            left: dict[str, Any] = {}
            for k, v in inner.items():
                sub_default = inner_defaults.get(k, v.get("default"))
                sub = _scalar(f"{name}.{k}", *(_resolve(v, defs)), k in prop.get("required", ()), sub_default)
                if sub is not None:
                    fields.append(sub)
                else:  # a list or tuple of the object (optimizer.betas): the JSON box, nested
                    left[k] = sub_default
            if left:
                rest[name] = left
            continue
        rest[name] = default
    return FormLayout(fields, rest)
