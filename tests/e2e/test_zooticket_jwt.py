"""ZooTicket merchant API (seed 002): the Bearer JWT checked by the module, through real nginx.

Tokens are minted here in Python (hmac, and `cryptography` for ES256): an implementation apart
from the module's C++, so both must agree on the bytes. A good token reaches paygated, which
answers an unknown payment with the seed's envelope (404); every refusal is a 401 from nginx
itself, in that envelope, with WWW-Authenticate. The token never appears in nginx's logs.
"""

import base64
import hashlib
import hmac
import json
import time
import unittest

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from e2e_base import PaymentStackTestCase, StackTestCase
from stack import MERCHANT_ID, MERCHANT_JWT_ES_KID, MERCHANT_JWT_HS_KID

ISSUER = "https://auth.zooticket.ru"
AUDIENCE = "paygate"
LEEWAY_S = 30
UNKNOWN = "/v1/payments/ZT_0000000001"
UNKNOWN_FOR_405 = "/v1/payments/ZT_0000000405"
NOT_FOUND = {"success": False, "message": "Payment not found", "error": {"code": "not_found"}}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict, claims: dict) -> str:
    return b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())


def sign_hs256(secret: bytes, header: dict, claims: dict) -> str:
    signing_input = compact(header, claims)
    return signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def sign_es256(private_pem: bytes, header: dict, claims: dict) -> str:
    key = load_pem_private_key(private_pem, password=None)
    signing_input = compact(header, claims)
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


class MerchantJwtTest(PaymentStackTestCase):
    clients = ("alice",)
    nginx = {"paygate_jwt_issuer": f'"{ISSUER}"', "paygate_jwt_audience": AUDIENCE,
             "paygate_jwt_leeway": f"{LEEWAY_S}s"}

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        keys = cls.shared_stack.merchant_jwt_keys()
        cls.es_private = (keys / "zooticket-es.key").read_bytes()
        cls.es_public = (keys / "zooticket-es.pub").read_bytes()
        cls.hs_secret = (keys / "zooticket-hs.secret").read_text().splitlines()[0].encode()

    def claims(self, **over) -> dict:
        now = int(time.time())
        c = {"merchant_id": MERCHANT_ID, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def es(self, **over) -> str:
        return sign_es256(self.es_private, {"alg": "ES256", "typ": "JWT", "kid": MERCHANT_JWT_ES_KID},
                          self.claims(**over))

    def hs(self, **over) -> str:
        return sign_hs256(self.hs_secret, {"alg": "HS256", "typ": "JWT", "kid": MERCHANT_JWT_HS_KID},
                          self.claims(**over))

    def get_with(self, token, path=UNKNOWN, scheme="Bearer"):
        headers = {} if token is None else {"Authorization": f"{scheme} {token}"}
        return self.stack.http("GET", path, headers=headers)

    def assertPassed(self, token, what):
        st, headers, body = self.get_with(token)
        self.assertEqual(st, 404, f"{what}: {st} {body[:300]!r}")
        self.assertEqual(json.loads(body), NOT_FOUND, what)
        self.assertTrue(headers.get("X-Request-Id"))

    def assertRefused(self, token, reason, message, scheme="Bearer"):
        st, headers, body = self.get_with(token, scheme=scheme)
        self.assertEqual(st, 401, f"{reason}: {st} {body[:300]!r}")
        self.assertTrue(headers.get("Content-Type", "").startswith("application/json"))
        self.assertEqual(json.loads(body), {"success": False, "message": message,
                                            "error": {"code": "unauthorized", "reason": reason}})
        self.assertEqual(headers.get("WWW-Authenticate"),
                         'Bearer realm="paygate"' if reason == "missing_token"
                         else 'Bearer realm="paygate", error="invalid_token"')
        self.assertTrue(headers.get("X-Request-Id"))
        # Only a token long enough to be unique can be looked for: "abc" turns up inside
        # request ids by chance.
        if token and len(token) >= 16:
            self.assertNotIn(token.encode(), self.stack.nginxes["nginx"].error_log.read_bytes())

    # -- accepted ---------------------------------------------------------------------------------

    def test_good_es256_and_hs256_tokens_reach_the_daemon(self):
        self.assertPassed(self.es(), "ES256")
        self.assertPassed(self.hs(), "HS256")
        # aud as an array holding ours; a lower-case scheme name (RFC 7235: case-insensitive)
        self.assertPassed(self.es(aud=["billing", AUDIENCE]), "aud array")
        st, _, body = self.get_with(self.hs(), scheme="bearer")
        self.assertEqual(st, 404, body)

    def test_paygatectl_minted_token_is_accepted(self):
        token = self.stack.mint_merchant_jwt(iss=ISSUER, aud=AUDIENCE)
        self.assertPassed(token, "paygatectl ES256")
        token = self.stack.mint_merchant_jwt(alg="HS256", iss=ISSUER, aud=AUDIENCE)
        self.assertPassed(token, "paygatectl HS256")

    def test_clock_skew_within_the_leeway_is_accepted(self):
        now = int(time.time())
        self.assertPassed(self.es(exp=now - LEEWAY_S // 3), "exp just passed, within leeway")
        self.assertPassed(self.es(nbf=now + LEEWAY_S // 3), "nbf just ahead, within leeway")

    def test_good_token_bad_payment_id_is_422(self):
        st, _, body = self.get_with(self.es(), path="/v1/payments/pay_123")
        self.assertEqual(st, 422, body)
        self.assertEqual(json.loads(body), {"success": False,
                                            "message": "payment_id must be ZT_ followed by 10 digits",
                                            "error": {"code": "validation_error"}})

    # -- refused ----------------------------------------------------------------------------------

    def test_missing_or_not_bearer(self):
        self.assertRefused(None, "missing_token", "Authorization: Bearer <JWT> required")
        self.assertRefused(self.es(), "missing_token", "Authorization: Bearer <JWT> required", scheme="Basic")
        self.assertRefused("", "missing_token", "Authorization: Bearer <JWT> required")

    def test_expired(self):
        now = int(time.time())
        self.assertRefused(self.es(exp=now - LEEWAY_S - 60), "expired", "Token expired")
        self.assertRefused(self.hs(exp=now - 86400), "expired", "Token expired")

    def test_not_yet_valid(self):
        self.assertRefused(self.es(nbf=int(time.time()) + LEEWAY_S + 3600), "not_yet_valid", "Token not yet valid")

    def test_wrong_audience_and_issuer(self):
        self.assertRefused(self.es(aud="someone-else"), "wrong_audience", "Token audience not accepted")
        self.assertRefused(self.es(aud=None), "wrong_audience", "Token audience not accepted")
        self.assertRefused(self.es(iss="https://evil.example"), "wrong_issuer", "Token issuer not accepted")

    def test_bad_signature(self):
        token = self.es()
        head, claims, sig = token.split(".")
        other = self.es(merchant_id="someone-else").split(".")[1]
        self.assertRefused(f"{head}.{other}.{sig}", "bad_signature", "Token signature invalid")
        flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
        self.assertRefused(f"{head}.{claims}.{flipped}", "bad_signature", "Token signature invalid")
        wrong_secret = sign_hs256(b"x" * 40, {"alg": "HS256", "kid": MERCHANT_JWT_HS_KID}, self.claims())
        self.assertRefused(wrong_secret, "bad_signature", "Token signature invalid")

    def test_alg_none(self):
        unsigned = compact({"alg": "none", "kid": MERCHANT_JWT_HS_KID}, self.claims()) + "."
        self.assertRefused(unsigned, "unsupported_alg", "Token algorithm not accepted")

    def test_algorithm_confusion(self):
        # HS256 keyed with the ES256 public key, under the ES256 key's kid.
        forged = sign_hs256(self.es_public, {"alg": "HS256", "typ": "JWT", "kid": MERCHANT_JWT_ES_KID}, self.claims())
        self.assertRefused(forged, "algorithm_mismatch", "Token algorithm does not match its key")

    def test_unknown_kid(self):
        token = sign_hs256(self.hs_secret, {"alg": "HS256", "kid": "zt-hs-0"}, self.claims())
        self.assertRefused(token, "unknown_kid", "Token signing key unknown (kid)")
        token = sign_hs256(self.hs_secret, {"alg": "HS256"}, self.claims())
        self.assertRefused(token, "unknown_kid", "Token signing key unknown (kid)")

    def test_malformed(self):
        for token in ("abc", "a.b.c", self.es() + ".x", self.es().replace(".", ". ", 1)):
            self.assertRefused(token, "malformed", "Token malformed")

    def test_no_merchant_claim(self):
        self.assertRefused(self.es(merchant_id=None), "no_merchant", "Token names no merchant")
        self.assertRefused(self.es(merchant_id="a b"), "no_merchant", "Token names no merchant")

    def test_client_token_is_not_a_merchant_token(self):
        st, _, body = self.stack.http("GET", UNKNOWN, headers={"x_auth_token": self.token})
        self.assertEqual(st, 401, body)

    def test_make_run_writes_a_demo_jwt(self):
        import tempfile
        from pathlib import Path
        from stack import make_demo_tokens
        with tempfile.TemporaryDirectory() as var:
            make_demo_tokens(self.stack, Path(var))
            env = dict(line.split("=", 1) for line in (Path(var) / "demo-credentials.env").read_text().splitlines()
                       if "=" in line and not line.startswith("#"))
        token = env["ZOOTICKET_JWT"]
        head, claims, sig = token.split(".")
        pad = lambda part: base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))  # noqa: E731
        self.assertEqual(json.loads(pad(head)), {"alg": "ES256", "typ": "JWT", "kid": MERCHANT_JWT_ES_KID})
        doc = json.loads(pad(claims))
        self.assertEqual(doc["merchant_id"], MERCHANT_ID)
        self.assertEqual(doc["exp"] - doc["iat"], 86400)
        # This class's nginx also wants iss and aud: the demo token (made for `make run`, which
        # sets neither) is refused here for its issuer, which proves its signature was good.
        self.assertRefused(token, "wrong_issuer", "Token issuer not accepted")

    def test_route_table_errors_use_the_envelope(self):
        st, headers, body = self.stack.http("GET", "/v1/nothing")
        self.assertEqual((st, json.loads(body)), (404, {"success": False, "message": "No such endpoint",
                                                        "error": {"code": "not_found"}}))
        st, headers, body = self.stack.http("POST", UNKNOWN_FOR_405, headers={"Authorization": f"Bearer {self.es()}"})
        self.assertEqual((st, json.loads(body)), (405, {"success": False, "message": "Method POST is not allowed here",
                                                        "error": {"code": "method_not_allowed"}}))
        self.assertEqual(headers.get("Allow"), "GET, PUT, PATCH, DELETE")
        # Outside /v1 the other surfaces keep theirs.
        st, _, body = self.stack.http("GET", "/nothing")
        self.assertEqual((st, json.loads(body)["code"]), (404, "not_found"))

    def test_v1_health_is_an_alias_without_auth(self):
        st, headers, body = self.stack.http("GET", "/v1/health")
        self.assertEqual(st, 200, body)
        doc = json.loads(body)
        self.assertEqual(doc["status"], "healthy")
        self.assertEqual(set(doc), {"status", "timestamp"})


class MerchantPrefixTest(PaymentStackTestCase):
    """paygate_merchant_api_prefix moves the whole /v1 surface; /v1 is then no surface at all."""
    clients = ("alice",)
    prefix = "/zooticket/v1"
    nginx = {"paygate_merchant_api_prefix": prefix}

    def merchant_jwt(self) -> str:
        keys = self.stack.merchant_jwt_keys()
        now = int(time.time())
        return sign_es256((keys / "zooticket-es.key").read_bytes(), {"alg": "ES256", "kid": MERCHANT_JWT_ES_KID},
                          {"merchant_id": MERCHANT_ID, "iat": now, "exp": now + 600})

    def test_the_surface_is_served_under_the_prefix_only(self):
        auth = {"Authorization": f"Bearer {self.merchant_jwt()}"}
        # Under the prefix: the token is checked, the daemon answers in the envelope.
        st, _, body = self.stack.http("GET", self.prefix + "/payments/ZT_0000000001", headers=auth)
        self.assertEqual((st, json.loads(body)), (404, NOT_FOUND))
        st, _, body = self.stack.http("GET", self.prefix + "/payments/ZT_0000000001")
        self.assertEqual((st, json.loads(body)["error"]["reason"]), (401, "missing_token"))
        st, _, body = self.stack.http("GET", self.prefix + "/nothing")
        self.assertEqual((st, json.loads(body)["error"]["code"]), (404, "not_found"))
        st, _, body = self.stack.http("GET", self.prefix + "/health")
        self.assertEqual((st, json.loads(body)["status"]), (200, "healthy"))
        # The default path is not served: the plain route-table 404, nothing forwarded.
        for path in ("/v1/payments/ZT_0000000001", "/v1/health", "/v1/payments/sessions"):
            st, _, body = self.stack.http("GET", path, headers=auth)
            self.assertEqual((st, json.loads(body)), (404, {"code": "not_found", "message": "no such route"}), path)
        # The other surfaces stay where they are.
        st, _, body = self.stack.http("GET", "/health")
        self.assertEqual(st, 200, body)


class MerchantJwtConfigTest(StackTestCase):
    """`nginx -t` refuses what cannot work: bad key files, unknown algorithms, duplicate kids."""

    with_postgres = False
    daemons = ()
    start_nginx_in_setup = False

    def assertConfRefused(self, mentions: str, **directives):
        rc, out = self.stack.check_nginx_conf(daemons=["d1"], **directives)
        self.assertNotEqual(rc, 0, f"{directives} accepted:\n{out}")
        self.assertIn(mentions, out)
        self.assertIn("[emerg]", out)

    def test_bad_keys_are_refused(self):
        keys = self.stack.merchant_jwt_keys()
        short = keys / "short.secret"
        short.write_text("too-short\n")
        cases = [
            ("cannot open", f"k1 ES256 {keys / 'missing.pub'}"),
            ("private key", f"k1 ES256 {keys / 'zooticket-es.key'}"),
            ("not a PEM public key on P-256", f"k1 ES256 {keys / 'zooticket-hs.secret'}"),
            ("at least 32 bytes", f"k1 HS256 {short}"),
            ("PEM file", f"k1 HS256 {keys / 'zooticket-es.pub'}"),
            ("ES256 or HS256", f"k1 RS256 {keys / 'zooticket-es.pub'}"),
            ("ES256 or HS256", f"k1 none {keys / 'zooticket-es.pub'}"),
            ("key id", f"'bad kid' ES256 {keys / 'zooticket-es.pub'}"),
        ]
        for mentions, spec in cases:
            with self.subTest(spec=spec):
                self.assertConfRefused(mentions, paygate_jwt_key=spec)
        twice = f"k1 ES256 {keys / 'zooticket-es.pub'}"
        self.assertConfRefused("given twice", paygate_jwt_key=[twice, twice])

    def test_bad_leeway_and_claim_are_refused(self):
        self.assertConfRefused("paygate_jwt_leeway", paygate_jwt_leeway="11m")
        self.assertConfRefused("paygate_jwt_leeway", paygate_jwt_leeway="soon")
        self.assertConfRefused("paygate_jwt_merchant_claim", paygate_jwt_merchant_claim='"a b"')

    def test_bad_merchant_prefixes_are_refused(self):
        for bad in ("v1", "/v1/", "/", "/a?b"):
            self.assertConfRefused("expected a path", paygate_merchant_api_prefix=bad)
        # Paths of routes that do not move: the client API, the payment page, /health, /ping.
        for bad, taken in (("/api", "/api"), ("/api/v1", "/api"), ("/pay", "/pay"), ("/health", "/health")):
            self.assertConfRefused(f"{taken} is served by paygate already", paygate_merchant_api_prefix=bad)
        # One surface under another's path would route requests to the wrong one: another
        # directive's prefix, or another surface's own path (answered 404 once that one moved).
        self.assertConfRefused("two surfaces under one path", paygate_merchant_api_prefix="/partners")
        self.assertConfRefused("two surfaces under one path", paygate_merchant_api_prefix="/partners/zoo")
        self.assertConfRefused("two surfaces under one path", paygate_merchant_api_prefix="/zoo",
                               paygate_callback_prefix="/zoo/hooks")
        self.assertConfRefused("two surfaces under one path", paygate_merchant_api_prefix="/zoo",
                               paygate_partner_api_prefix="/v1")
        self.assertConfRefused("two surfaces under one path", paygate_merchant_api_prefix="/callbacks",
                               paygate_callback_prefix="/hooks")
        rc, out = self.stack.check_nginx_conf(daemons=["d1"], paygate_merchant_api_prefix="/zoo/v2")
        self.assertEqual(rc, 0, out)

    def test_good_configuration_passes(self):
        rc, out = self.stack.check_nginx_conf(daemons=["d1"], paygate_jwt_leeway="1m", paygate_jwt_issuer="iss",
                                              paygate_jwt_audience="aud")
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
