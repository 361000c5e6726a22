"""The OpenAPI contract check of the e2e suite (docs/testing.md, "The OpenAPI contract").

Loads every docs/openapi/*.yaml (OpenAPI 3.1), inlines their $refs (also across files), and checks
one HTTP answer at a time: the operation that the method and path select (in any document), then
the status code, the documented headers (required ones present, every present one matching its
schema, the internal ones absent), the content type and the body against its JSON Schema
(Draft 2020-12, as OpenAPI 3.1 uses).

A request that no operation matches is checked against the answers of `x-paygate-unrouted` (the
route table's 404/405/...); a document with a server path of its own (`/v1`) may have its own
`x-paygate-unrouted`, which answers in its place under that path. Answers nginx gives before
routing (`x-paygate-before-routing`) are possible for any request. Nothing is skipped: an answer
that no document describes is a violation.

The documents describe the default paths. The prefix directives of the nginx under test
(paygate_callback_prefix, paygate_partner_api_prefix, paygate_merchant_api_prefix) move a
surface; `use_prefixes()` tells the check, which maps a path back as route_path() in the module
does (the default path of a moved surface is then unrouted).

Not a test file (no test_ prefix). Used by e2e_base (which hooks it into every way the suite sends
HTTP) and by test_openapi.py (which checks the documents themselves).
"""

from __future__ import annotations

import copy
import decimal
import json
import re
import threading
import urllib.parse
from pathlib import Path
from typing import Iterable, Optional

import jsonschema
import yaml

SOURCE_DIR = Path(__file__).resolve().parents[2]
DOCS_DIR = SOURCE_DIR / "docs" / "openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Paths the suite asks for that are no surface of paygate, each with why. Nothing else is
# skipped; docs/testing.md lists these too.
EXEMPT_PATHS = {
    "/__paygate_status": "nginx's own stub_status, in a location test_client_abort.py adds to count "
                         "parked requests (its Writing); plain text from nginx, not a paygate answer",
}

# The prefix directives and the route table's own prefix each moves (ngx_module/paygate_module.hpp).
PREFIX_DIRECTIVES = {"paygate_callback_prefix": "/callbacks",
                     "paygate_partner_api_prefix": "/partners",
                     "paygate_merchant_api_prefix": "/v1"}


def _under(path: str, prefix: str) -> bool:
    return path.startswith(prefix + "/")


class DocumentError(Exception):
    """A document that is not usable: a $ref that does not resolve, a schema that does not compile."""


def _pointer_get(doc, pointer: str, where: str):
    node = doc
    if pointer in ("", "/"):
        return node
    for raw in pointer.lstrip("/").split("/"):
        part = urllib.parse.unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise DocumentError(f"{where}: $ref pointer {pointer!r} does not resolve")
    return node


class Documents:
    """All documents of a folder, $refs inlined."""

    def __init__(self, folder: Path = DOCS_DIR):
        self.folder = Path(folder)
        self.raw: dict[str, dict] = {}
        for path in sorted(self.folder.glob("*.yaml")):
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
            if not isinstance(doc, dict):
                raise DocumentError(f"{path.name}: not a YAML mapping")
            self.raw[path.name] = doc
        if not self.raw:
            raise DocumentError(f"no *.yaml in {self.folder}")
        self.docs = {name: self._inline(name, doc, ()) for name, doc in self.raw.items()}

    def _inline(self, name: str, node, seen: tuple):
        """`node` of document `name` with every $ref replaced by a copy of its target."""
        if isinstance(node, list):
            return [self._inline(name, item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node and isinstance(node["$ref"], str):
            ref = node["$ref"]
            target_file, _, pointer = ref.partition("#")
            target_name = Path(target_file).name if target_file else name
            if target_name not in self.raw:
                raise DocumentError(f"{name}: $ref {ref!r} names a document that is not in {self.folder}")
            key = (target_name, pointer)
            if key in seen:
                raise DocumentError(f"{name}: $ref {ref!r} is circular")
            target = _pointer_get(self.raw[target_name], pointer, f"{name}")
            resolved = self._inline(target_name, copy.deepcopy(target), seen + (key,))
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if siblings and isinstance(resolved, dict):
                resolved = {**resolved, **self._inline(name, siblings, seen)}
            return resolved
        return {k: self._inline(name, v, seen) for k, v in node.items()}


def server_prefix(doc: dict) -> tuple[str, str]:
    """(default path, regex) of the document's first server URL. A URL that is one variable
    (`{callback_prefix}`, a path a directive moves) matches any path of one or more segments;
    its default is the path the route table has."""
    servers = doc.get("servers") or [{"url": ""}]
    url = servers[0].get("url", "")
    m = re.fullmatch(r"\{([A-Za-z_]+)\}", url)
    if m:
        default = servers[0]["variables"][m.group(1)]["default"].rstrip("/")
        return default, "(?:/[^/]+)+"
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    return path, re.escape(path)


def _path_regex(template: str, prefix_regex: str = "") -> re.Pattern:
    parts = []
    for segment in template.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}") and len(segment) > 2:
            parts.append("[^/]+")
        else:
            parts.append(re.escape(segment))
    # routes.hpp: one trailing slash is insignificant
    return re.compile("^" + prefix_regex + "/" + "/".join(parts) + "/?$")


class Operation:
    def __init__(self, document: str, template: str, method: str, spec: dict, prefix=("", "")):
        self.document = document
        self.template = prefix[0] + template   # with the server's default prefix, as routes.cpp has it
        self.method = method.upper()
        self.spec = spec
        self.regex = _path_regex(template, prefix[1])

    def __repr__(self) -> str:
        return f"{self.method} {self.template} ({self.document})"


class Contract:
    """The check itself. `check()` returns the problems of one answer (empty: it conforms)."""

    def __init__(self, folder: Path = DOCS_DIR):
        self.documents = Documents(folder)
        self.operations: list[Operation] = []
        self.before_routing: dict[str, list] = {}
        self.unrouted: dict[str, list] = {}
        self.unrouted_under: list[tuple[str, dict]] = []   # (server path, {status: response})
        self.moves: list[tuple[str, str]] = []   # (served prefix, documented prefix), see use_prefixes
        self.forbidden_headers: set[str] = set()
        self._validators: dict[int, jsonschema.protocols.Validator] = {}
        for name, doc in self.documents.docs.items():
            prefix = server_prefix(doc)
            for template, item in (doc.get("paths") or {}).items():
                for method in METHODS:
                    if method in item:
                        spec = item[method]
                        if item.get("parameters"):   # path-item parameters apply to every operation under it
                            spec = dict(spec, parameters=list(item["parameters"]) + list(spec.get("parameters", [])))
                        self.operations.append(Operation(name, template, method, spec, prefix))
            for status, resp in (doc.get("x-paygate-before-routing") or {}).items():
                self.before_routing.setdefault(str(status), []).append(resp)
            unrouted = {str(status): resp for status, resp in (doc.get("x-paygate-unrouted") or {}).items()}
            if unrouted and prefix[0]:
                self.unrouted_under.append((prefix[0], unrouted))
            else:
                for status, resp in unrouted.items():
                    self.unrouted.setdefault(status, []).append(resp)
            self.forbidden_headers |= {h.lower() for h in doc.get("x-paygate-forbidden-response-headers") or ()}
        self._lock = threading.Lock()
        self.violations: list[str] = []
        self.checked = 0
        self.exempted = 0

    # -- schemas ------------------------------------------------------------------------------

    def validator(self, schema) -> jsonschema.protocols.Validator:
        key = id(schema)
        v = self._validators.get(key)
        if v is None:
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as e:
                raise DocumentError(f"schema does not compile: {e.message}") from e
            v = jsonschema.Draft202012Validator(schema)
            self._validators[key] = v
        return v

    def all_responses(self) -> Iterable[tuple[str, dict]]:
        """(where, response object) of every documented answer, for test_openapi."""
        for op in self.operations:
            for status, resp in (op.spec.get("responses") or {}).items():
                yield f"{op!r} {status}", resp
        for name, table in (("x-paygate-before-routing", self.before_routing), ("x-paygate-unrouted", self.unrouted)):
            for status, resps in table.items():
                for resp in resps:
                    yield f"{name} {status}", resp
        for prefix, table in self.unrouted_under:
            for status, resp in table.items():
                yield f"x-paygate-unrouted {status} under {prefix}", resp

    def use_prefixes(self, nginx_directives: dict) -> None:
        """The prefix directives of the nginx whose answers follow (absent: the default)."""
        moves = []
        for directive, documented in PREFIX_DIRECTIVES.items():
            served = nginx_directives.get(directive, documented)
            if served != documented:
                moves.append((served, documented))
        with self._lock:
            self.moves = moves

    def documented_path(self, path: str) -> Optional[str]:
        """The path as the documents have it; None when a directive moved it away (unrouted)."""
        for served, documented in self.moves:
            if _under(path, served):
                return documented + path[len(served):]
            if _under(path, documented):
                return None
        return path

    # -- matching -----------------------------------------------------------------------------

    def match(self, method: Optional[str], target: Optional[str]):
        """(operation or None, documented methods of the path or None when no document has it)."""
        if target is None:
            return None, None
        path = urllib.parse.urlsplit(target).path if "://" in target else target.split("?", 1)[0]
        path = self.documented_path(path)
        if path is None:
            return None, None
        on_path = [op for op in self.operations if op.regex.match(path)]
        if not on_path:
            return None, None
        for op in on_path:
            if op.method == (method or "").upper():
                return op, None
        return None, sorted({op.method for op in on_path})

    # -- checking -----------------------------------------------------------------------------

    def check(self, method: Optional[str], target: Optional[str], status: int, headers, body: bytes) -> list[str]:
        """Problems of one answer to `method target` (both None when the request had no request
        line nginx could read). `headers`: an http.client.HTTPMessage, a dict or (name, value) pairs."""
        hdrs = _header_map(headers) if headers is not None else None
        problems = [] if hdrs is None else [f"internal header {h!r} reached the client" for h in sorted(self.forbidden_headers) if h in hdrs]
        op, path_methods = self.match(method, target)
        code = str(status)
        candidates = []  # (label, response object)
        if op is not None:
            for resp in _by_status(op.spec.get("responses") or {}, code):
                candidates.append((f"{op!r} {code}", resp))
        else:
            own_prefix, own = self.unrouted_table(target)
            if code in own:
                candidates.append((f"x-paygate-unrouted {code} under {own_prefix}", own[code]))
            else:
                for resp in self.unrouted.get(code, ()):
                    candidates.append((f"x-paygate-unrouted {code}", resp))
        for resp in self.before_routing.get(code, ()):
            only = resp.get("x-paygate-methods")
            if only and method is not None and method.upper() not in only:
                continue
            candidates.append((f"x-paygate-before-routing {code}", resp))
        what = repr(op) if op is not None else ("an unrouted request" if path_methods is None
                                                 else f"a path documented for {', '.join(path_methods)} only")
        if not candidates:
            problems.append(f"status {status} is not documented for {what}")
            return problems
        first_failure = None
        for label, resp in candidates:
            failure = self._check_response(resp, method, hdrs, body)
            if failure is None and path_methods is not None and code == "405" and label.startswith("x-paygate-unrouted"):
                allow = ", ".join(sorted(m.strip() for m in hdrs.get("allow", [""])[0].split(",") if m.strip())) \
                    if hdrs is not None else None
                if allow is not None and allow != ", ".join(path_methods):
                    failure = f"Allow {hdrs.get('allow')} is not the documented methods {path_methods}"
            if failure is None:
                return problems
            first_failure = first_failure or f"{label}: {failure}"
        problems.append(first_failure)
        return problems

    def unrouted_table(self, target: Optional[str]) -> tuple[str, dict]:
        """(server path, x-paygate-unrouted) of the document whose server path holds `target`;
        ("", {}) when none has its own."""
        if target is not None:
            path = urllib.parse.urlsplit(target).path if "://" in target else target.split("?", 1)[0]
            path = self.documented_path(path)
            for prefix, table in self.unrouted_under:
                if path is not None and (path == prefix or _under(path, prefix)):
                    return prefix, table
        return "", {}

    def _check_response(self, resp: dict, method: Optional[str], hdrs: Optional[dict], body: bytes) -> Optional[str]:
        """None when the answer conforms to `resp`; `hdrs` None: headers unknown, not checked."""
        for name, spec in (resp.get("headers") or {}).items() if hdrs is not None else ():
            values = hdrs.get(name.lower())
            if not values:
                if spec.get("required"):
                    return f"header {name} missing"
                continue
            if len(values) > 1:
                return f"header {name} given {len(values)} times"
            if "schema" in spec:
                err = jsonschema.exceptions.best_match(self.validator(spec["schema"]).iter_errors(values[0]))
                if err is not None:
                    return f"header {name}: {values[0]!r}: {err.message}"
        content = resp.get("content")
        if (method or "").upper() == "HEAD":
            return None
        if not content:
            return None if not body else f"a body where none is documented: {body[:200]!r}"
        if hdrs is None:
            ctype = media = next(iter(content))
        else:
            ctype = (hdrs.get("content-type") or [""])[0]
            media = ctype.split(";", 1)[0].strip().lower()
        if media not in content:
            return f"content type {ctype!r} is not one of {sorted(content)}"
        schema = content[media].get("schema")
        if schema is None:
            return None
        if media == "application/json" or media.endswith("+json"):
            try:
                instance = json.loads(body, parse_float=decimal.Decimal, parse_constant=_refuse_constant)
            except ValueError as e:
                return f"body is not JSON ({e}): {body[:200]!r}"
        else:
            instance = body.decode("utf-8", "replace")
        err = jsonschema.exceptions.best_match(self.validator(schema).iter_errors(instance))
        if err is not None:
            where = "/".join(str(p) for p in err.absolute_path) or "(root)"
            return f"body at {where}: {err.message}: {body[:300]!r}"
        return None

    # -- what the suite saw ---------------------------------------------------------------------

    def observe(self, method, target, status, headers, body, via: str = "") -> None:
        """check() and keep the problems for the test's teardown (e2e_base)."""
        if target is not None and target.split("?", 1)[0] in EXEMPT_PATHS:
            with self._lock:
                self.exempted += 1
            return
        problems = self.check(method, target, status, headers, body)
        with self._lock:
            self.checked += 1
            for p in problems:
                self.violations.append(f"{method or '?'} {target or '?'} -> {status}{' via ' + via if via else ''}: {p}")


    def add_violation(self, problem: str) -> None:
        with self._lock:
            self.violations.append(problem)

    def take_violations(self) -> list[str]:
        """The problems seen since the last call (and forgets them)."""
        with self._lock:
            taken, self.violations = self.violations, []
            return taken


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _by_status(responses: dict, code: str) -> list:
    for key in (code, code[0] + "XX", "default"):
        if key in responses:
            return [responses[key]]
    return []


def _header_map(headers) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if headers is None:
        return out
    items = headers.items() if hasattr(headers, "items") else headers
    for name, value in items:
        out.setdefault(str(name).lower(), []).append(str(value).strip())
    return out


def request_line_of(data: bytes) -> tuple[Optional[str], Optional[str]]:
    """Method and target of the first request in raw bytes, or (None, None) when nginx could not
    read one (garbage, a lower-case method...)."""
    line = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    m = re.fullmatch(rb"([A-Z_-]+) (\S+) HTTP/\d\.\d", line)
    if not m:
        return None, None
    return m.group(1).decode(), m.group(2).decode("latin-1")


_shared: Optional[Contract] = None
_shared_lock = threading.Lock()


def shared() -> Contract:
    """The one Contract of this process (documents loaded once)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Contract()
        return _shared
