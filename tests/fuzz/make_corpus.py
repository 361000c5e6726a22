#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<harness>/ (checked in; run again to regenerate).

    python3 tests/fuzz/make_corpus.py [--seeds DIR] [--clean]

Sources: the JSON examples of the design seeds (DIR, default /work/shared/seeds; skipped when
absent) and of docs/*.md, the e2e tests' request bodies (tests/e2e: the ~100 malformed create
bodies of test_payments_errors, the replay forms of test_idempotency_replay, the callback
bodies), plus hand-written edge cases per format. Files are named by the SHA-1 of their content,
like libFuzzer's own. UUIDs are deterministic, so running it twice gives the same files.
The corpora also hold inputs kept from fuzz runs (`fuzz_H -merge=1 tests/fuzz/corpus/H
build-fuzz/work/H`); they stay unless --clean empties each directory first.
"""

import argparse
import hashlib
import json
import re
import shutil
import struct
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MAX_INPUT = 4096   # what the harnesses are run with (-max_len); longer seeds are left out

_counter = [0]


def fixed_uuid() -> str:
    _counter[0] += 1
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"paygate-fuzz-{_counter[0]}"))


def json_blocks(text: str):
    """Balanced {...} regions of `text` (strings respected), valid JSON or not."""
    depth, start, in_string, escaped = 0, None, False, False
    for i, c in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
            continue
        if c == '"' and depth > 0:
            in_string = True
        elif c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                yield text[start:i + 1]
        elif c == "\n" and depth > 0 and i - start > 8192:
            depth, in_string = 0, False   # never closed: give up on this one


def e2e_bodies():
    """Request bodies of the e2e tests, as the tests send them (bytes)."""
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    import e2e_base
    import test_payments_errors as errors
    e2e_base.new_uuid = fixed_uuid
    errors.new_uuid = fixed_uuid
    encode = e2e_base.PaymentStackTestCase.encode
    bodies = [encode(body) for _, body in errors.create_validation_cases()]
    token = fixed_uuid()
    original = ('{"idempotency_token": "%s", "money_info": {"method_id": "card-7781", '
                '"currency": "USD", "amount": 1.50}, "recipcient": {"recipcient_id": '
                '"merchant-42"}, "sender": {"sender_id": "user-1"}}' % token)
    bodies += [original.encode(), original.replace("1.50", "15e-1").encode(),
               original.replace(token, token.upper()).encode(),
               original.replace('"merchant-42"', '"merchant\\u002d42"').replace('"currency"', '"\\u0063urrency"').encode(),
               original.replace("1.50", '"1.50"').encode()]
    for body in ({"idempotency_token": fixed_uuid(), "money_info": {"method_id": "card-1", "currency": "USD",
                                                                     "amount": "3.00"}},
                 {"idempotency_token": fixed_uuid(), "reason": "user_request"},
                 {"idempotency_token": fixed_uuid(), "reason": "fraud_suspected"},
                 {"idempotency_token": fixed_uuid(), "accept_info": {"k": 1}},
                 {"idempotency_token": fixed_uuid(), "accept_info": {}},
                 {"idempotency_token": fixed_uuid(), "amount": "12.50"},
                 {"idempotency_token": fixed_uuid(), "amount": e2e_base.RawNumber("0.5e1")},
                 {"request_id": fixed_uuid(), "operation": "payment", "status": "COMPLETED"}):
        bodies.append(encode(body))
    for info in ('{"note": "a\\u0000b"}', '{"\\u0000": 1}', '{"n": 1e999999}', '{"n": 1e-999999}',
                 '{"n": 0e-16001}', '{"z": [1.50, {"b": null}], "a": "\\u0041\\n"}'):
        bodies.append(('{"idempotency_token": "%s", "accept_info": %s}' % (fixed_uuid(), info)).encode())
    return bodies


def doc_and_seed_blocks(seeds: Path):
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").rglob("*.md"))]
    if seeds.is_dir():
        texts += [p.read_text(encoding="utf-8") for p in sorted(seeds.glob("*.txt"))]
    else:
        print(f"make_corpus: {seeds} not found, design seeds left out", file=sys.stderr)
    return [b.encode() for t in texts for b in json_blocks(t)]


def json_edge_cases():
    """The strictness rules at their edges, and the JSON grammar's corners."""
    return [s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s for s in [
        "[" * 32 + "]" * 32, "[" * 33 + "]" * 33, '{"a":' * 32 + "1" + "}" * 32,
        '{"a":1,"a":2}', '{"a":1,"b":{"a":1}}', '{"a":1,"\\u0061":2}',
        '"\\ud83d\\ude00"', '"\\ud800"', '"\\udc00"', '"\\ud800\\u0041"', '"\\uD83D\\uDE00"',
        '"\\u0000\\b\\f\\n\\r\\t\\/\\\\\\""', '"\x7f"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', b'"\xc0\xaf"',
        b'\xef\xbb\xbf{}', "-0", "-0.0e-0", "0e00", "1E+2", "1.5e-10", "15e-1", "1.50", "01", "1.", ".5", "-",
        "1e", "+1", "NaN", "Infinity", "-Infinity", "1e99999999999999999999", "1e-99999999999999999999",
        "123456789012345678901234567890", "0.000000000000000000001", "100000000000000000000",
        "1000000000000000000000", "[1,]", "{,}", '{"a":1,}', "[] []", " \t\r\n null \n", "true", "false",
        "nul", '"abc', "{\"a\" 1}", '{"' + "k" * 300 + '":1}', "\x00", "[\"\t\"]",
    ]]


def put(corpus: dict, harness: str, data: bytes):
    if len(data) <= MAX_INPUT:
        corpus.setdefault(harness, set()).add(data)


# -- ipc frames (ipc/include/paygate/ipc.hpp), encoded here from the format description ----------

def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def s(b) -> bytes:
    b = b.encode() if isinstance(b, str) else b
    return varint(len(b)) + b


def pairs(items) -> bytes:
    return varint(len(items)) + b"".join(s(k) + s(v) for k, v in items)


def request_frame(id_, method, route, request_id="", principal="", timeout=5000, sent=0, params=(), headers=(),
                  body=b""):
    return (b"PG\x01\x01" + struct.pack("<Q", id_) + bytes([method]) + s(route) + s(request_id) + s(principal)
            + struct.pack("<I", timeout) + struct.pack("<Q", sent) + pairs(params) + pairs(headers) + s(body))


def reply_frame(id_, status, headers=(), body=b""):
    return b"PG\x01\x02" + struct.pack("<Q", id_) + struct.pack("<H", status) + pairs(headers) + s(body)


def ipc_frames(bodies):
    ct = [("content-type", "application/json")]
    frames = [
        request_frame(1, 1, "health", "f00dfeed", timeout=3000, sent=1_700_000_000_000),
        request_frame(2, 1, "ping"),
        request_frame(3, 2, "payment.create", "a1b2", "client:7", headers=ct, body=bodies[0]),
        request_frame(4, 1, "payment.retrieve", "a1b3", "client:7", params=[("payment_id", fixed_uuid())]),
        request_frame(5, 2, "callback.sky_technologies", "a1b4", "partner:sky-technologies",
                      params=[("operation_id", fixed_uuid())],
                      headers=ct + [("webhook-id", "msg_1")], body=b'{"status":"COMPLETED"}'),
        request_frame(6, 1, "auth.tokens", headers=[("since", "42")]),
        request_frame(2**64 - 1, 5, "x" * 200, timeout=2**32 - 1, sent=2**64 - 1),
        reply_frame(1, 200, ct, b'{"status":"healthy","timestamp":"2026-11-24T10:00:00Z"}'),
        reply_frame(3, 400, ct, b'{"code":"validation_error","message":"money_info.amount: must be greater than zero"}'),
        reply_frame(4, 503, ct + [("x-paygate-idempotency", "stored")], b""),
        reply_frame(7, 599),
        reply_frame(8, 100),
    ]
    # Non-minimal varints and truncations are worth starting from too.
    frames.append(b"PG\x01\x01" + struct.pack("<Q", 9) + b"\x01" + b"\x86\x80\x00health" + b"\x00\x00"
                  + struct.pack("<I", 0) + struct.pack("<Q", 0) + b"\x00\x00\x00")
    frames.append(frames[2][:-3])
    return frames


# -- the other harnesses' inputs ---------------------------------------------------------------------

CURRENCY_BYTE = {"JPY": 0, "USD": 1, "KWD": 2, "CLF": 3, "USDT": 4, "BTC": 5, "ETH": 6}   # fuzz_money.cpp's kCodes


def money_inputs():
    amounts = ["12.50", "12.5", "1.5", "1.50", "15e-1", "0.0015e3", "0.00000001", "0.000000001", "1", "0", "0.00",
               "-1", "-1.50", "-0", "1.001", "1e-3", "1000000000000000", "999999999999999", "999999999999999.99",
               "1e15", "1e14", "1e400", "1e99999999999999999999", "1e-99999999999999999999", "1e2147483648",
               "0e99999999999", ".5", "1.", "1e3", " 1.00", "1,00", "+1.00", "NaN", "Infinity", "", "0x10",
               "1.0.0", "01", "00.5", "1.0000000000000000001", "123456789.123456789012345678"]
    out = []
    for a in amounts:
        for code in ("USD", "JPY", "ETH", "KWD"):
            out.append(bytes([CURRENCY_BYTE[code]]) + a.encode())
            out.append(bytes([CURRENCY_BYTE[code] | 0x80]) + a.encode())
    return out


ROUTE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "get", "", "POS", "GETS"]   # fuzz_routes.cpp


def route_inputs():
    pid = fixed_uuid()
    paths = ["/health", "/health/", "/health//", "/ping", "/", "", "//", "/healthz", "/api/v1/payment/create",
             "/api/v1/payment/create/", f"/api/v1/payment/{pid}/retrieve", f"/api/v1/payment/{pid}/retrieve/status",
             f"/api/v1/payment/{pid}/cancel", f"/api/v1/payment/{pid}/edit", f"/api/v1/payment/{pid}/accept",
             f"/api/v1/payment/{pid}/extra_charge", f"/api/v1/payment/{pid}/refund", "/api/v1/payment//retrieve",
             "/api/v1/payment/x/y/retrieve", "/api/v1/payment/%7Bx%7D/retrieve", "/api/v1/payment/{payment_id}/edit",
             "/callbacks/sky-technologies/v1/on_payment_completed", "/callbacks/sky-technologies/v1/",
             "/api/v1/payment/a\x00b/retrieve", "/api/v1/payment/../cancel", "health"]
    out = []
    for path in paths:
        for m in ("GET", "POST", "DELETE", "get"):
            out.append(bytes([ROUTE_METHODS.index(m)]) + path.encode())
    return out


ROUTES = ["payment.create", "payment.edit", "payment.cancel", "payment.accept", "payment.extra_charge",
          "payment.refund"]   # fuzz_payment_body.cpp: route = byte % 6, content type = byte / 6 % 5


def payment_body_inputs(bodies):
    out = []
    for body in bodies:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        keys = set(doc) if isinstance(doc, dict) else set()
        if "money_info" in keys and "sender" in keys:
            route = 0
        elif "money_info" in keys:
            route = 1
        elif "reason" in keys:
            route = 2
        elif "accept_info" in keys:
            route = 3
        elif "amount" in keys:
            route = 4
        else:
            route = 0
        out.append(bytes([route]) + body)
        out.append(bytes([6 + route]) + body)           # with "; charset=utf-8"
        if route == 4:
            out.append(bytes([5]) + body)                # refund
    out.append(bytes([18]) + bodies[0])                  # text/plain
    out.append(bytes([24]) + bodies[0])                  # no Content-Type
    return out


def fdp_string(s: bytes) -> bytes:
    """FuzzedDataProvider::ConsumeRandomLengthString reads up to a backslash followed by another byte."""
    return s.replace(b"\\", b"\\\\") + b"\\ "


def webhook_inputs(bodies):
    # fuzz_webhook.cpp reads: flags, delta, tolerance choice (integers, from the end) and id,
    # timestamp, header (strings, from the front), then the body.
    ids = [b"msg_2cf6011b57ea0f24", b"msg_" + fixed_uuid().replace("-", "").encode(), b"x"]
    headers = [b"v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
               b"v1e,MIGIAkIBi0Bp6dY8f8dW1k0AH2Pf4lw== v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
               b"v2,abc v1,  v1e,", b"v1,a" + b"A" * 43 + b"=", b" ".join([b"v1,AAAA"] * 17),
               b"v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
    out = []
    for i, header in enumerate(headers):
        for flags in (1, 3, 5, 7, 0x0b):
            front = fdp_string(ids[i % len(ids)]) + fdp_string(b"1700000000") + fdp_string(header)
            body = bodies[-10] if i % 2 else b'{"request_id":"x","operation":"payment","status":"COMPLETED"}'
            # integers are taken from the end: the last byte is the flags
            out.append(front + body + b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00" + bytes([flags]))
    return out


def capability_inputs():
    tag = "A" * 43
    queries = [f"ref={fixed_uuid()}&kid=k2&tag={tag}", f"kid=k1&tag={tag}&ref=op-1", f"tag={tag}&ref=op-1&kid=k2",
               "ref=op-1&kid=k2", f"ref=op-1&kid=k2&tag={tag}&x=1", f"ref=op-1&ref=op-2&tag={tag}",
               f"ref=&kid=k2&tag={tag}", f"ref=op_1&kid=k2&tag={tag}", "ref=a=b&kid=k&tag=" + tag]
    refs = [fixed_uuid(), "op-1", "a", "x" * 64, "x" * 65, "", "op_1", "op 1", "OP-é"]
    rings = ["k2 ZnV6ei1jYXBhYmlsaXR5LWtleS1udW1iZXItdHdvISE=\n",
             "# comment\n\nk2 ZnV6ei1jYXBhYmlsaXR5LWtleS1udW1iZXItdHdvISE=\r\nk1 ZnV6ei1jYXBhYmlsaXR5LWtleS1udW1iZXItb25lLW9mLWZvcnR5\n",
             "k2 ZnV6ei1jYXBhYmlsaXR5LWtleS1udW1iZXItdHdvISE=\nk2 ZnV6ei1jYXBhYmlsaXR5LWtleS1udW1iZXItdHdvISE=\n",
             "k2 c2hvcnQ=\n", "k2\n", "bad id! ZnV6ei1jYXBhYmlsaXR5LWtleS1udW1iZXItdHdvISE=\n", ""]
    return ([b"\x00" + q.encode() for q in queries] + [b"\x01" + r.encode() for r in refs]
            + [b"\x02" + r.encode() for r in rings])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=Path, default=Path("/work/shared/seeds"))
    parser.add_argument("--clean", action="store_true", help="drop everything else in the corpora first")
    args = parser.parse_args()

    bodies = e2e_bodies()
    blocks = doc_and_seed_blocks(args.seeds)
    corpus = {}
    for data in bodies + blocks + json_edge_cases():
        put(corpus, "json", data)
    for data in bodies + blocks:
        put(corpus, "idempotency", data)
    for data in payment_body_inputs(bodies + blocks):
        put(corpus, "payment_body", data)
    for frame in ipc_frames(bodies):
        put(corpus, "ipc_decode", frame)
        put(corpus, "ipc_encode", frame)
    for data in money_inputs():
        put(corpus, "money", data)
    for data in route_inputs():
        put(corpus, "routes", data)
    for data in webhook_inputs(bodies):
        put(corpus, "webhook", data)
    for data in capability_inputs():
        put(corpus, "capability", data)

    for harness, inputs in sorted(corpus.items()):
        d = HERE / "corpus" / harness
        if args.clean:
            shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
        print(f"make_corpus: {harness}: {len(inputs)} seeds ({len(list(d.iterdir()))} inputs in {d.name}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
