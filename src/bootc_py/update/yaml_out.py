"""A small YAML emitter for the status document (dicts, lists, str, int, bool, None).

Strings that YAML could read as something else are written as JSON strings, which are valid
YAML double-quoted scalars, so the output always reads back as the same document.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./:@+-]*$")  # a leading digit could be a date
_SPECIAL = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if (_PLAIN.match(text) and text.lower() not in _SPECIAL and not _numeric(text)
            and ": " not in text and not text.endswith(":")):
        return text
    return json.dumps(text, ensure_ascii=False)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text.startswith("0x") or text.startswith("0o")
    return True


def _lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict) and item:
                out.append(f"{pad}{_scalar(key)}:")
                out += _lines(item, indent + 1)
            elif isinstance(item, list) and item:
                out.append(f"{pad}{_scalar(key)}:")
                out += _lines(item, indent)
            else:
                empty = "{}" if isinstance(item, dict) else "[]" if isinstance(item, list) \
                    else _scalar(item)
                out.append(f"{pad}{_scalar(key)}: {empty}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                sub = _lines(item, indent + 1)
            else:
                empty = "{}" if isinstance(item, dict) else "[]" if isinstance(item, list) \
                    else _scalar(item)
                sub = [f"{pad}  {empty}"]
            first = sub[0][len(pad) + 2:]
            out.append(f"{pad}- {first}")
            out += sub[1:]
    else:
        out.append(pad + _scalar(value))
    return out


def dump(doc: Any) -> str:
    return "\n".join(_lines(doc, 0)) + "\n"
