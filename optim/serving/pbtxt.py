"""Write Triton's `config.pbtxt` (protobuf text format of `inference.ModelConfig`) from plain Python data.

No protobuf dependency: a config is a dict; strings are quoted, `Symbol`s (enum values such as TYPE_FP32,
KIND_CPU) are not, lists of scalars are `[a, b]`, lists of dicts are repeated messages. Tests parse the text
with tritonclient's `model_config_pb2`, so the schema is Triton's own.
"""

from __future__ import annotations

import json


class Symbol(str):
    """A protobuf enum value, written without quotes."""


def _scalar(value: object) -> str:
    if isinstance(value, Symbol):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # protobuf text strings accept JSON's escapes


def render(config: dict, indent: int = 0) -> str:
    """The text-format body of a message given as a dict (keys in insertion order)."""
    pad = "  " * indent
    lines = []
    for key, value in config.items():
        if isinstance(value, dict):
            lines += [f"{pad}{key} {{", render(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for item in value:
                lines += [f"{pad}{key} {{", render(item, indent + 1), f"{pad}}}"]
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(item) for item in value)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)


def parse_with_schema(text: str):
    """Parse config.pbtxt text into Triton's `ModelConfig` message (needs the `client` extra); a field or
    value Triton does not know raises `google.protobuf.text_format.ParseError`."""
    from google.protobuf import text_format

    from optim.serving.triton import model_config_pb2

    return text_format.Parse(text, model_config_pb2().ModelConfig())
