"""The documents of docs/openapi/ themselves, and the checker every e2e answer goes through.

No stack: the documents must be OpenAPI 3.1 in shape (every $ref resolves, every operation has
responses with descriptions, every schema compiles as JSON Schema Draft 2020-12, path parameters
declared), every route of the route table (ipc/routes.cpp) has its operation (same method, same
path, operationId = the route's name), and the checker (openapi_contract.py) refuses each kind of
drift it exists for. See docs/testing.md, "The OpenAPI contract".
"""

import re
import shutil
import tempfile
import unittest
from pathlib import Path

import jsonschema
import yaml

import openapi_contract
from openapi_contract import METHODS, Contract, DocumentError, Documents

ROUTES_CPP = openapi_contract.SOURCE_DIR / "ipc" / "routes.cpp"
STATUS_KEY = re.compile(r"^([1-5][0-9][0-9]|[1-5]XX|default)$")
RID = "0123456789abcdef0123456789abcdef"
JSON = "application/json"


def route_table(source: str) -> list[tuple[str, str, str]]:
    """(name, METHOD, pattern) of every entry of routes::table() in routes.cpp's text."""
    entry = re.compile(r'\{\s*"([a-z0-9_.]+)"\s*,\s*ipc::Method::(\w+)\s*,\s*"([^"]+)"')
    return [(m.group(1), m.group(2).upper(), m.group(3)) for m in entry.finditer(source)]


class DocumentShapeTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.contract = Contract()

    def test_every_document_is_openapi_3_1(self):
        for name, doc in self.contract.documents.raw.items():
            with self.subTest(document=name):
                self.assertRegex(str(doc.get("openapi")), r"^3\.1\.\d+$")
                self.assertTrue(doc.get("info", {}).get("title"), "info.title")
                self.assertTrue(doc.get("info", {}).get("version"), "info.version")
                self.assertTrue(any(k in doc for k in ("paths", "components", "webhooks")),
                                "3.1 needs paths, components or webhooks")

    def test_every_ref_resolves(self):
        # Documents() inlines them all; here each $ref is also reported on its own
        docs = self.contract.documents
        for name, doc in docs.raw.items():
            for ref in _refs(doc):
                with self.subTest(document=name, ref=ref):
                    target_file, _, pointer = ref.partition("#")
                    target = Path(target_file).name if target_file else name
                    self.assertIn(target, docs.raw, f"{ref}: no such document")
                    openapi_contract._pointer_get(docs.raw[target], pointer, name)

    def test_every_operation_has_described_responses_and_declared_path_parameters(self):
        ids = {}
        for op in self.contract.operations:
            with self.subTest(operation=repr(op)):
                responses = op.spec.get("responses")
                self.assertTrue(responses, "no responses")
                for status, resp in responses.items():
                    self.assertRegex(str(status), STATUS_KEY)
                    self.assertTrue(resp.get("description"), f"{status}: no description")
                self.assertTrue(op.spec.get("operationId"), "no operationId")
                self.assertNotIn(op.spec["operationId"], ids, "operationId used twice")
                ids[op.spec["operationId"]] = op
                declared = {p["name"] for p in op.spec.get("parameters", []) if p.get("in") == "path"
                            and p.get("required") is True}
                self.assertEqual(set(re.findall(r"\{([^}]+)\}", op.template)), declared)
                for status, resp in responses.items():
                    self.assertTrue(str(status)[0] in "23" or "content" in resp,
                                    f"{status}: an error answer without its JSON body documented")

    def test_every_schema_compiles_as_draft_2020_12(self):
        count = 0
        for name, doc in self.contract.documents.docs.items():
            for where, schema in _schemas(doc, name):
                with self.subTest(schema=where):
                    jsonschema.Draft202012Validator.check_schema(schema)
                    count += 1
        self.assertGreater(count, 50)

    def test_every_route_has_its_operation(self):
        routes = route_table(ROUTES_CPP.read_text())
        self.assertGreaterEqual(len(routes), 12, "the route table was not parsed")
        ops = {(op.method, op.template): op for op in self.contract.operations}
        for name, method, pattern in routes:
            with self.subTest(route=name):
                op = ops.get((method, pattern))
                self.assertIsNotNone(op, f"{method} {pattern} ({name}) is in ipc/routes.cpp but in no "
                                         f"docs/openapi/*.yaml")
                # an alias path (ZooTicket's /v1/health) names its route with x-paygate-route, so
                # operationIds stay unique
                self.assertEqual(op.spec.get("x-paygate-route", op.spec.get("operationId")), name)
        # and nothing is documented that the route table does not serve, unless it says why
        routed = {(m, p) for _, m, p in routes}
        for op in self.contract.operations:
            with self.subTest(operation=repr(op)):
                if (op.method, op.template) not in routed:
                    self.assertTrue(op.spec.get("x-paygate-not-routed"),
                                    "documented but not in ipc/routes.cpp (an operation nginx serves without "
                                    "the route table says so with x-paygate-not-routed: <why>)")

    def test_the_route_table_parser_sees_a_new_route(self):
        source = ROUTES_CPP.read_text()
        added = source.replace('{"ping", ipc::Method::Get, "/ping"},',
                               '{"ping", ipc::Method::Get, "/ping"},\n'
                               '        {"payment.new_thing", ipc::Method::Post, "/api/v1/payment/{payment_id}/new_thing",\n'
                               '         Access::Client},')
        self.assertNotEqual(added, source)
        self.assertIn(("payment.new_thing", "POST", "/api/v1/payment/{payment_id}/new_thing"), route_table(added))


class DocumentErrorsTest(unittest.TestCase):
    """Broken documents are refused when loaded, not silently half-used."""

    def with_docs(self, **files) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="openapi-"))
        self.addCleanup(shutil.rmtree, folder)
        for name, doc in files.items():
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc))
        return folder

    def test_a_ref_to_nothing_is_refused(self):
        base = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}}
        for ref in ("#/components/schemas/Missing", "other.yaml#/x", "common.yaml#/components/nope"):
            with self.subTest(ref=ref):
                folder = self.with_docs(a=dict(base, components={"schemas": {"A": {"$ref": ref}}}),
                                        common=dict(base, components={}))
                with self.assertRaises(DocumentError):
                    Documents(folder)

    def test_a_circular_ref_is_refused(self):
        doc = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
               "components": {"schemas": {"A": {"$ref": "#/components/schemas/B"},
                                          "B": {"$ref": "#/components/schemas/A"}}}}
        with self.assertRaises(DocumentError):
            Documents(self.with_docs(a=doc))


class CheckerTest(unittest.TestCase):
    """The checker against the real documents: conforming answers pass, each drift is caught."""

    @classmethod
    def setUpClass(cls):
        cls.c = Contract()

    def ok(self, method, target, status, body, **headers):
        hdrs = {"Content-Type": JSON, "X-Request-Id": RID, **headers}
        problems = self.c.check(method, target, status, hdrs, body)
        self.assertEqual(problems, [], f"{method} {target} {status}")

    def bad(self, method, target, status, body, headers=None, expect=""):
        hdrs = {"Content-Type": JSON, "X-Request-Id": RID} if headers is None else headers
        problems = self.c.check(method, target, status, hdrs, body)
        self.assertTrue(problems, f"{method} {target} {status} {body!r} passed")
        self.assertIn(expect, "\n".join(problems))

    def test_conforming_answers_pass(self):
        pid = "6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6b"
        self.ok("GET", "/health", 200, b'{"status":"healthy","timestamp":"2026-11-24T10:00:00Z"}')
        self.ok("GET", "/health", 503, b'{"status":"unhealthy","timestamp":"2026-11-24T10:00:00.5Z",'
                                       b'"reason":"database unavailable"}')
        self.ok("GET", "/ping?x=1", 200, b'{"status":"ok"}')
        self.ok("GET", "/ping/", 200, b'{"status":"ok"}')
        self.ok("POST", "/api/v1/payment/create", 200, b'{"transaction_id":"%s"}' % pid.encode(),
                **{"Idempotent-Replayed": "true"})
        self.ok("GET", f"/api/v1/payment/{pid}/retrieve", 200,
                b'{"payment":{"transaction_id":"%s","sender":{"user_id":"u-1","method_id":null},'
                b'"recipcient":{"user_id":"m-42","method_id":"card-7781"},"currency":"ETH",'
                b'"amount":1.000000000000000001,"captured_amount":0.000000000000000000,'
                b'"refunded_amount":0.000000000000000000,"status":"created","decline_reason":null,'
                b'"created_at":"2026-11-24T10:00:00.123456Z","updated_at":"2026-11-24T10:00:00.123456Z"}}'
                % pid.encode())
        self.ok("POST", f"/api/v1/payment/{pid}/accept", 400, b'{"code":"invalid_state","message":"x"}')
        self.ok("POST", f"/api/v1/payment/{pid}/refund", 200,
                b'{"transaction_id":"%s","payment_status":"completed","operation_id":"%s"}' % (pid.encode(), pid.encode()))
        self.ok("GET", "/nope", 404, b'{"code":"not_found","message":"no such route"}')
        self.ok("DELETE", "/ping", 405, b'{"code":"method_not_allowed","message":"m"}', Allow="GET")
        self.ok("TRACE", "/ping", 405, b'{"code":"method_not_allowed","message":"m"}')
        self.ok(None, None, 400, b'{"code":"validation_error","message":"malformed HTTP request"}')
        self.ok("POST", "/callbacks/sky-technologies/v1/on_payment_completed?ref=x", 401,
                b'{"code":"unauthorized","message":"callback refused: no query"}')
        self.assertEqual(self.c.check("POST", "/callbacks/mserver/notify", 200, None, b'{"status":"duplicate"}'), [])
        # paygate_callback_prefix moves the callbacks (the documents' server variable)
        self.ok("POST", "/hooks/paygate/mserver/notify", 200, b'{"status":"accepted"}')
        # the ZooTicket surface's own envelope for the route table's 404/405 under /v1
        self.ok("GET", "/v1/nothing", 404,
                b'{"success":false,"message":"No such endpoint","error":{"code":"not_found"}}')
        self.ok("POST", "/v1/payments/ZT_0000000001", 405,
                b'{"success":false,"message":"m","error":{"code":"method_not_allowed"}}',
                Allow="DELETE, GET, PATCH, PUT")

    def test_moved_prefixes(self):
        order = b'{"status":"PROCESSING"}'
        try:
            self.c.use_prefixes({"paygate_partner_api_prefix": "/fiat/v2", "paygate_merchant_api_prefix": "/zoo/v1"})
            self.ok("POST", "/fiat/v2/whitebird/orders", 200, order)
            self.ok("POST", "/partners/whitebird/orders", 404, b'{"code":"not_found","message":"no such route"}')
            self.ok("GET", "/zoo/v1/nothing", 404,
                    b'{"success":false,"message":"No such endpoint","error":{"code":"not_found"}}')
            self.ok("GET", "/v1/payments/ZT_0000000001", 404, b'{"code":"not_found","message":"no such route"}')
            self.bad("POST", "/partners/whitebird/orders", 200, order, expect="not documented")
            self.bad("GET", "/zoo/v1/nothing", 404, b'{"code":"not_found","message":"no such route"}',
                     expect="body")
        finally:
            self.c.use_prefixes({})
        self.bad("POST", "/fiat/v2/whitebird/orders", 200, order, expect="not documented")

    def test_each_drift_is_caught(self):
        pid = "6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6b"
        create = "/api/v1/payment/create"
        good = b'{"transaction_id":"%s"}' % pid.encode()
        self.bad("POST", create, 200, b'{"transaction_id":"%s","extra":1}' % pid.encode(), expect="extra")
        self.bad("POST", create, 200, b'{"transaction_id":"%s"}' % pid.upper().encode(), expect="transaction_id")
        self.bad("POST", create, 200, b"{}", expect="required")
        self.bad("POST", create, 200, b"not json", expect="not JSON")
        self.bad("POST", create, 200, good, {"Content-Type": "text/html", "X-Request-Id": RID}, "content type")
        self.bad("POST", create, 200, good, {"Content-Type": JSON}, "X-Request-Id missing")
        self.bad("POST", create, 200, good, {"Content-Type": JSON, "X-Request-Id": RID, "Idempotent-Replayed": "1"},
                 "Idempotent-Replayed")
        self.bad("POST", create, 200, good, {"Content-Type": JSON, "X-Request-Id": RID,
                                             "x-paygate-not-executed": "overloaded"}, "internal header")
        self.bad("POST", create, 201, good, expect="status 201 is not documented")
        self.bad("POST", create, 403, b'{"code":"access_error","message":"x"}', expect="acces_error")
        self.bad("POST", create, 400, b'{"code":"invalid_state","message":"x"}', expect="validation_error")
        self.bad("GET", "/health", 200, b'{"status":"healthy","timestamp":"yesterday"}', expect="timestamp")
        self.bad("GET", "/nope", 200, b'{"status":"ok"}', expect="not documented for an unrouted request")
        self.bad("DELETE", "/ping", 405, b'{"code":"method_not_allowed","message":"m"}',
                 {"Content-Type": JSON, "X-Request-Id": RID, "Allow": "POST"}, "Allow")
        self.bad("GET", "/ping", 404, b'{"code":"not_found","message":"x"}', expect="status 404")
        self.bad("POST", "/callbacks/mserver/notify", 200, b'{"status":"stored"}', expect="status")
        self.assertTrue(self.c.check("POST", "/callbacks/mserver/notify", 200, None, b'{"status":"stored"}'))


class HooksTest(unittest.TestCase):
    """The hooks e2e_base installs see answers: http_request() (so Stack.http) through
    stack.response_observers, read_response() on raw sockets. A tiny local server stands in for
    nginx, answering a body that breaks the contract (and one that keeps it)."""

    @classmethod
    def setUpClass(cls):
        import e2e_base  # noqa: F401  (installs the hooks)
        cls.e2e_base = e2e_base
        if e2e_base.CONTRACT is None:
            raise unittest.SkipTest("PAYGATE_OPENAPI_CHECK=0")

    def serve(self, status: int, body: bytes, headers=None):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                for k, v in {"Content-Type": JSON, "X-Request-Id": RID, "Content-Length": str(len(body)),
                             **(headers or {})}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return server.server_address[1]

    def test_http_request_answers_are_checked(self):
        e = self.e2e_base
        e.take_contract_violations()
        port = self.serve(200, b'{"status":"ok"}')
        self.assertEqual(e.http_request(port, "GET", "/ping")[0], 200)
        self.assertEqual(e.take_contract_violations(), [])
        port = self.serve(200, b'{"status":"fine"}')
        e.http_request(port, "GET", "/ping")
        problems = e.take_contract_violations()
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("GET /ping -> 200 via http_request", problems[0])

    def test_a_violation_fails_the_test_that_received_it(self):
        e = self.e2e_base

        class Probe(unittest.TestCase):
            def test_receives_a_bad_answer(inner):
                e.watch_contract(inner)
                e.CONTRACT.add_violation("planted drift")
        result = unittest.TestResult()
        Probe("test_receives_a_bad_answer").run(result)
        self.assertEqual(len(result.failures), 1, result.errors)
        self.assertIn("planted drift", result.failures[0][1])
        self.assertEqual(e.take_contract_violations(), [])

    def test_raw_socket_answers_are_checked_and_unknown_requests_reported(self):
        e = self.e2e_base
        e.take_contract_violations()
        port = self.serve(404, b'{"code":"not_found","message":"no such route"}')
        sock = e.raw_request(port, b"GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        with sock:
            self.assertEqual(e.read_response(sock)[0], 404)
        self.assertEqual(e.take_contract_violations(), [])
        port = self.serve(404, b'{"code":"nothing_here","message":"no such route"}')
        sock = e.raw_request(port, b"GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        with sock:
            e.read_response(sock)
        problems = e.take_contract_violations()
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("via raw socket", problems[0])
        # a socket the harness did not send on: the answer cannot be matched, which is itself reported
        import socket
        sock = socket.create_connection(("127.0.0.1", self.serve(200, b'{"status":"ok"}')))
        with sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            e.read_response(sock)
        problems = e.take_contract_violations()
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("whose request is unknown", problems[0])


def _refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _schemas(doc: dict, name: str):
    """(where, schema) of every JSON Schema in an inlined document."""
    for sname, schema in (doc.get("components", {}).get("schemas") or {}).items():
        yield f"{name} components.schemas.{sname}", schema
    items = []
    for template, item in (doc.get("paths") or {}).items():
        for method in METHODS:
            if method in item:
                items.append((f"{name} {method.upper()} {template}", item[method]))
    for where, op in items:
        for p in op.get("parameters", []):
            if "schema" in p:
                yield f"{where} parameter {p['name']}", p["schema"]
        for media, mt in (op.get("requestBody", {}).get("content") or {}).items():
            if "schema" in mt:
                yield f"{where} requestBody {media}", mt["schema"]
        for status, resp in (op.get("responses") or {}).items():
            yield from _response_schemas(f"{where} {status}", resp)
    for ext in ("x-paygate-before-routing", "x-paygate-unrouted"):
        for status, resp in (doc.get(ext) or {}).items():
            yield from _response_schemas(f"{name} {ext} {status}", resp)


def _response_schemas(where: str, resp: dict):
    for hname, h in (resp.get("headers") or {}).items():
        if "schema" in h:
            yield f"{where} header {hname}", h["schema"]
    for media, mt in (resp.get("content") or {}).items():
        if "schema" in mt:
            yield f"{where} {media}", mt["schema"]


if __name__ == "__main__":
    unittest.main()
