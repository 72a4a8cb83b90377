"""Read a YAML spec strictly: UTF-8 text only, bounded size and nesting, and no key given twice.

`yaml.safe_load` keeps the last of two equal keys without a word (a second `variants:` silently drops the
first list); here that is an error, like a file that is binary, in another encoding, or absurdly large.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from optim.errors import OptimError

MAX_BYTES = 1 << 20  # a spec is a page of text; 1 MiB is far beyond any real one
MAX_DEPTH = 32  # a spec nests ~5 levels deep
MAX_NODES = 100_000  # values after expanding YAML aliases (a "billion laughs" file expands to billions)
FIX_SYNTAX = "fix the YAML syntax (indentation, colons, quotes)"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping gives the same key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """`SafeLoader` that refuses a mapping with the same key twice."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports unhashable keys itself
            if key in seen:
                raise DuplicateKeyError(
                    None, None, f"key '{key}' appears twice in one mapping (first at line {seen[key] + 1}); "
                    "YAML would silently keep only the last one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def decode_text(raw: bytes, path: Path) -> str:
    """`raw` as UTF-8 text (a UTF-8 byte-order mark is allowed); any other encoding or binary data is an error."""
    head = raw[:64]
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or (
            len(head) >= 2 and (not any(head[0::2]) or not any(head[1::2]))):  # ASCII in UTF-16: every other byte 0
        raise OptimError("the file is UTF-16 text; specs must be UTF-8", path=path,
                         fix="save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8 FILE > NEW)")
    if b"\x00" in raw:
        raise OptimError("the file is binary (it holds NUL bytes), not a YAML spec", path=path,
                         fix="point at the YAML text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise OptimError(f"the file is not UTF-8 text: byte 0x{raw[error.start]:02x} at line {line} (offset "
                         f"{error.start}) cannot be decoded", path=path,
                         fix="save the file as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8 FILE > NEW)") from error


def _check_shape(data: object, path: Path) -> None:
    """Refuse nesting deeper than MAX_DEPTH or more than MAX_NODES values (counted with aliases expanded)."""
    stack = [(data, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise OptimError(f"the spec expands to more than {MAX_NODES} values (YAML aliases repeated?)", path=path,
                             fix="write a spec without nested alias expansion")
        if depth > MAX_DEPTH:
            raise OptimError(f"the spec is nested more than {MAX_DEPTH} levels deep", path=path,
                             fix="flatten it; a spec needs about 5 levels")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


def load_yaml_strict(path: Path) -> object:
    """The YAML document in `path`, parsed with the rules above; every problem is an `OptimError`."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise OptimError(f"the file is {size} bytes; a spec may be at most {MAX_BYTES}", path=path,
                             fix="point at the YAML spec, not a data file")
        raw = path.read_bytes()
    except OSError as error:
        raise OptimError(f"cannot read the file ({error.strerror})", path=path, fix="check the path and its permissions") \
            from error
    text = decode_text(raw, path)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except RecursionError as error:
        raise OptimError("the spec is nested too deeply to parse", path=path,
                         fix="flatten it; a spec needs about 5 levels") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        duplicate = isinstance(error, DuplicateKeyError)
        raise OptimError(f"{'duplicate key' if duplicate else 'invalid YAML'}{where}: "
                         f"{getattr(error, 'problem', None) or error}", path=path,
                         fix="keep one of the two (merge their contents)" if duplicate else FIX_SYNTAX) from error
    _check_shape(data, path)
    return data
