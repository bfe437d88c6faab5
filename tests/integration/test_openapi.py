"""docs/openapi.json against the code: the document is a structurally sound OpenAPI 3.1 document, both
HTTP services serve it byte for byte at GET /openapi.json, it lists exactly the routes of the route
tables in ingest/main.c, api/main.c (and the consumer's, when it has one), and what the running
services answer matches the statuses and schemas it documents.

Every operation carries `x-service`, the list of services serving it (ingest, api, consumer); a path
carries the union of its operations'. The route tables are read from the C sources, so a route
added without documentation (or documented without a route) fails here, not in a client.
"""

import base64
import hashlib
import hmac
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

import harness
from harness import HOST, free_port, http, wait_until

ROOT = harness.ROOT
DOC_PATH = ROOT / "docs" / "openapi.json"
SERVICES = ("ingest", "api", "consumer")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SECRET = "openapi-test-secret-0123456789abcdef"


def load_doc():
    return json.loads(DOC_PATH.read_text(encoding="utf-8"))


DOC = load_doc()


# ---------------------------------------------------------------- the route tables in the C sources

def strip_c_comments(text):
    return re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)


ROUTE_TABLE = re.compile(r"\bph_route_t\s+(\w+)\s*\[\s*\]\s*=\s*\{(.*?)\}\s*;", re.S)
ROUTE_ENTRY = re.compile(r'\{\s*"([A-Z]+)"\s*,\s*"([^"]*)"\s*,\s*(\w+)\s*\}')


def route_tables(*files):
    """{(METHOD, "/openapi/{style}")} of every ph_route_t table in the files, and the tables' names."""
    routes, names = set(), []
    for f in files:
        text = strip_c_comments(Path(f).read_text())
        for m in ROUTE_TABLE.finditer(text):
            names.append(f"{Path(f).relative_to(ROOT)}:{m.group(1)}")
            body = m.group(2)
            assert re.search(r"\{\s*NULL\s*,\s*NULL\s*,\s*NULL\s*\}", body), f"{m.group(1)} in {f} has no {{NULL}} end"
            for method, pattern, _ in ROUTE_ENTRY.findall(body):
                assert not pattern.endswith("*"), f"{f}: wildcard route {pattern} cannot be documented as a path"
                routes.add((method, re.sub(r":(\w+)", r"{\1}", pattern)))
    return routes, names


def source_routes(service):
    files = sorted((ROOT / service).glob("*.c"))
    return route_tables(*files)


def documented_routes(service):
    return {(method.upper(), path) for path, item in DOC["paths"].items() for method, o in item.items()
            if method in METHODS and service in o["x-service"]}


# ---------------------------------------------------------------- the document alone

def walk(node, where="#"):
    """Every (json-pointer, dict) in the document."""
    if isinstance(node, dict):
        yield where, node
        for k, v in node.items():
            yield from walk(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{where}/{i}")


def resolve(ref):
    assert ref.startswith("#/"), f"only local references: {ref}"
    node = DOC
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def deref(node):
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(node["$ref"])
    return node


def operations():
    for path, item in DOC["paths"].items():
        for method, o in item.items():
            if method in METHODS:
                yield path, method, o


def server_urls_of(services):
    """The document's server URLs of these services (ingest :8080, api :8081, consumer :9464), in order."""
    ports = {"ingest": ":8080", "api": ":8081", "consumer": ":9464"}
    return [next(x["url"] for x in DOC["servers"] if x["url"].endswith(ports[s])) for s in services]


def test_document_is_structurally_valid_openapi_3_1():
    assert DOC["openapi"] == "3.1.0"
    assert DOC["info"]["title"] and DOC["info"]["version"]
    version = re.search(r"project\(playhead VERSION (\S+)", (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert DOC["info"]["version"] == version, "info.version must be the project's version (CMakeLists.txt)"
    server_urls = {s["url"] for s in DOC["servers"]}
    assert any(u.endswith(":8080") for u in server_urls) and any(u.endswith(":8081") for u in server_urls)
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    tags = {t["name"] for t in DOC.get("tags", [])}

    for where, node in walk(DOC):  # every reference resolves
        if "$ref" in node and isinstance(node["$ref"], str):
            resolve(node["$ref"])

    op_ids = []
    for path, item in DOC["paths"].items():
        assert path.startswith("/"), path
        item_services = []
        for method, o in item.items():
            if method not in METHODS:
                assert method in ("x-service", "summary", "description", "servers", "parameters"), (path, method)
                continue
            what = f"{method.upper()} {path}"
            op_ids.append(o.get("operationId"))
            assert o.get("summary"), f"{what}: no summary"
            assert o["x-service"] and set(o["x-service"]) <= set(SERVICES), f"{what}: x-service {o.get('x-service')}"
            item_services += [s for s in o["x-service"] if s not in item_services]
            assert [s["url"] for s in o["servers"]] == server_urls_of(o["x-service"]), f"{what}: servers do not match x-service"
            assert set(o.get("tags", [])) <= tags, f"{what}: undeclared tag"
            for sec in o.get("security", DOC.get("security", [])):
                assert set(sec) <= set(schemes), f"{what}: unknown security scheme"
            # responses: present, each with a description, codes as strings
            assert o.get("responses"), f"{what}: no responses"
            for code, resp in o["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d|[1-5]XX|default", code), f"{what}: response code {code!r}"
                resp = deref(resp)
                assert resp.get("description"), f"{what} {code}: no description"
                if code == "503":
                    assert "Retry-After" in resp.get("headers", {}), f"{what}: 503 without Retry-After"
                if code == "401":
                    assert "WWW-Authenticate" in resp.get("headers", {}), f"{what}: 401 without WWW-Authenticate"
                for media, content in resp.get("content", {}).items():
                    assert "schema" in content, f"{what} {code} {media}: no schema"
            assert any(c.startswith("2") or c.startswith("3") for c in o["responses"]), f"{what}: no success response"
            # path parameters: exactly the template's, required
            params = [deref(p) for p in item.get("parameters", []) + o.get("parameters", [])]
            in_path = {p["name"] for p in params if p["in"] == "path"}
            assert in_path == set(re.findall(r"\{(\w+)\}", path)), f"{what}: path parameters {in_path}"
            for p in params:
                assert p["in"] in ("path", "query", "header", "cookie") and "schema" in p, f"{what}: parameter {p}"
                if p["in"] == "path":
                    assert p["required"] is True, f"{what}: path parameter {p['name']} not required"
            if "requestBody" in o:
                assert deref(o["requestBody"])["content"], f"{what}: empty requestBody"
            if method in ("post", "put", "patch") or "requestBody" in o:
                codes = set(o["responses"])
                assert {"413", "415"} <= codes, f"{what}: a body route must document 413 and 415"
        assert item["x-service"] == item_services, f"{path}: x-service must be the union of its operations'"
        # a path's own servers: every service serving it, so that a client (or schemathesis) that reads
        # only path-level servers still sends each path to a service that has it
        assert [s["url"] for s in item.get("servers", [])] == server_urls_of(item_services), f"{path}: path servers"
    assert None not in op_ids and len(op_ids) == len(set(op_ids)), "operationIds must be present and unique"

    # the event schema carries the exact validation rules
    ev = DOC["components"]["schemas"]["Event"]
    ident = DOC["components"]["schemas"]["Id"]
    assert (ident["minLength"], ident["maxLength"], ident["pattern"]) == (1, 128, "^([A-Za-z0-9_:@-][A-Za-z0-9._:@-]{0,127}|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]{0,126}|\\.\\.[A-Za-z0-9._:@-]{1,126})$")
    assert set(ev["required"]) == {"user_id", "video_id", "position"}
    props = ev["properties"]
    assert (props["position"]["minimum"], props["position"]["maximum"]) == (0, 10_000_000)
    assert props["duration"]["exclusiveMinimum"] == 0
    assert props["ts"]["maximum"] == 2**53 - 1 and "integer" in props["ts"]["type"]
    assert deref(props["session_id"]) is ident


def test_schemas_and_examples_are_valid_json_schema():
    jsonschema = pytest.importorskip("jsonschema", reason="python3-jsonschema is needed to check the schemas")
    for name, schema in DOC["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
    checked = 0
    for path, method, o in operations():
        media = []
        if "requestBody" in o:
            media += deref(o["requestBody"])["content"].items()
        for resp in o["responses"].values():
            media += deref(resp).get("content", {}).items()
        for _, content in media:
            examples = ([content["example"]] if "example" in content else []) + \
                       [e["value"] for e in content.get("examples", {}).values()]
            for example in examples:
                validator(content["schema"]).validate(example)
                checked += 1
    for name, schema in DOC["components"]["schemas"].items():
        for example in schema.get("examples", []):
            validator(schema).validate(example)
            checked += 1
    assert checked >= 10


def validator(schema):
    """A JSON Schema 2020-12 validator for a schema of the document (its #/components refs resolve)."""
    import jsonschema
    return jsonschema.Draft202012Validator({**schema, "components": DOC["components"]})


# ---------------------------------------------------------------- the route tables

def test_every_route_is_documented_and_every_documented_route_exists():
    problems = []
    for service in ("ingest", "api"):
        routes, tables = source_routes(service)
        assert tables == [f"{service}/main.c:routes"], f"expected one route table in {service}/main.c, found {tables}"
        documented = documented_routes(service)
        for method, path in sorted(routes - documented):
            problems.append(f"{service}: {method} {path} is in the route table but not in docs/openapi.json")
        for method, path in sorted(documented - routes):
            problems.append(f"{service}: {method} {path} is documented but not in {service}/main.c routes[]")
        assert ("GET", "/openapi.json") in routes, f"{service} does not serve GET /openapi.json"
    assert not problems, "\n".join(problems)


def consumer_help():
    binary = harness.BUILD_DIR / harness.Service.BINARIES["consumer"]
    if not binary.exists():
        pytest.skip(f"{binary} is not built")
    return subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=harness.scaled(10)).stdout


def test_consumer_routes_are_documented(consumer):
    documented = documented_routes("consumer")
    assert documented == {("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/readyz")}
    routes, tables = source_routes("consumer")
    if tables:
        assert routes == documented, f"consumer route tables {tables}: {sorted(routes)} != documented {sorted(documented)}"
    if "--metrics-listen" not in consumer_help():
        if not tables:
            pytest.skip("playhead-consumer has no route table and no --metrics-listen option: its documented routes "
                        "(GET /metrics, /healthz, /readyz) cannot be checked")
        return
    # and the running consumer answers them on its metrics listener
    port = free_port()
    consumer(metrics_listen=f"{HOST}:{port}")
    url = f"http://{HOST}:{port}"
    wait_until(lambda: http("GET", f"{url}/healthz", timeout=2)[0] == 200, 20, "the consumer's GET /healthz")
    for method, path in sorted(documented):
        status, _, body = http(method, url + path)
        assert status not in (404, 405), f"consumer: documented {method} {path} answers {status}"
    wait_until(lambda: http("GET", f"{url}/readyz")[0] == 200, 20, "the consumer ready")
    assert http("GET", f"{url}/readyz")[2] == {"status": "ready", "kafka": "up", "redis": "up"}
    try:
        validator(resolve("#/components/schemas/Ready")).validate(http("GET", f"{url}/readyz")[2])
    except ImportError:
        pass  # no python3-jsonschema: the exact body above is checked anyway
    assert http("GET", f"{url}/no-such-route")[0] == 404, "the consumer answers an undocumented path"


# ---------------------------------------------------------------- the running services

def test_both_services_serve_the_document_byte_for_byte(ingest, api):
    expected = DOC_PATH.read_bytes()
    for svc in (ingest(), api()):
        status, headers, body = http("GET", f"{svc.url}/openapi.json")
        assert status == 200 and headers["content-type"] == "application/json", (svc.name, status, headers)
        assert body == json.loads(expected), f"{svc.name}: GET /openapi.json differs from docs/openapi.json (rebuild?)"
        raw = raw_get(svc.url + "/openapi.json")
        assert raw == expected, f"{svc.name}: GET /openapi.json is not docs/openapi.json byte for byte"


def raw_get(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=harness.scaled(5)) as r:
        return r.read()


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 3600}).encode())
    sig = b64(hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def operation_for(method, url_path):
    """The documented operation whose path template matches url_path (without the query)."""
    for path, item in DOC["paths"].items():
        regex = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$"
        if re.match(regex, url_path) and method.lower() in item:
            return path, item[method.lower()]
    raise AssertionError(f"{method} {url_path}: no documented operation")


def check_conformance(svc, service, method, target, body=None, headers=None, expect=None):
    """Sends the request and checks the answer against the document: its status is documented for the
    operation (and served by `service`), and its JSON body validates against the documented schema."""
    status, resp_headers, resp = http(method, svc.url + target, body, headers=headers)
    url_path = target.split("?")[0]
    path, o = operation_for(method, url_path)
    what = f"{service} {method} {target} -> {status} {resp!r}"
    assert service in o["x-service"], f"{what}: {path} is not documented for {service}"
    if expect is not None:
        assert status == expect, what
    assert str(status) in o["responses"], f"{what}: status not documented for {method} {path}"
    doc_resp = deref(o["responses"][str(status)])
    for name in doc_resp.get("headers", {}):
        if deref(doc_resp["headers"][name]).get("required"):
            assert name.lower() in {k.lower() for k in resp_headers.keys()}, f"{what}: header {name} missing"
    content = doc_resp.get("content")
    if not content:
        assert resp in ("", None), f"{what}: documented without a body"
        return status, resp
    ctype = (resp_headers.get("content-type") or "").split(";")[0]
    media = next((m for m in content if m.split(";")[0] == ctype), None)
    assert media, f"{what}: content-type {ctype!r} not documented ({list(content)})"
    if media == "application/json":
        try:
            import jsonschema
        except ImportError:
            return status, resp
        errors = sorted(validator(content[media]["schema"]).iter_errors(resp), key=str)
        assert not errors, f"{what}: does not match the documented schema: {errors[0].message}"
    return status, resp


JSON = {"Content-Type": "application/json"}


def test_answers_match_the_documented_statuses_and_schemas(ingest, consumer, api, kafka, topic, redis):
    ing = ingest(threads=1)
    consumer()
    a = api(threads=1, stream_limit=1)
    now = int(time.time() * 1000)
    # (no session_id here: the consumer would turn it into a lease heartbeat for the streams checks below)
    ev = {"user_id": "doc-u", "video_id": "v1", "position": 12.5, "duration": 100, "ts": now}
    C = lambda *args, **kw: check_conformance(*args, **kw)  # noqa: E731

    # ingest
    C(ing, "ingest", "POST", "/v1/positions", ev, JSON, expect=202)
    C(ing, "ingest", "POST", "/v1/positions", [ev, {**ev, "video_id": "v2", "position": 99.5},
                                               {**ev, "user_id": "doc-h", "session_id": "tab-1"}], JSON, expect=202)
    C(ing, "ingest", "POST", "/v1/positions", [ev, {**ev, "position": -1}], JSON, expect=400)
    C(ing, "ingest", "POST", "/v1/positions", "{", JSON, expect=400)
    C(ing, "ingest", "POST", "/v1/positions", "x", {"Content-Type": "text/plain"}, expect=415)
    C(ing, "ingest", "POST", "/watching", {"video_id": "v3", "position": 1},
      {**JSON, "Cookie": "user_id=doc-u"}, expect=201)
    C(ing, "ingest", "POST", "/watching", {"video_id": "v3", "position": 1}, JSON, expect=400)
    for route in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        C(ing, "ingest", "GET", route)

    # api, once the consumer applied the events
    wait_until(lambda: http("GET", f"{a.url}/v1/users/doc-u/positions/v3")[0] == 200, 30, "the events applied")
    C(a, "api", "GET", "/v1/users/doc-u/positions/v1", expect=200)
    C(a, "api", "GET", "/v1/users/doc-u/positions/v2", expect=200)  # finished
    C(a, "api", "GET", "/v1/users/doc-u/positions/nope", expect=404)
    C(a, "api", "GET", "/v1/users/bad%20id/positions/v1", expect=400)
    C(a, "api", "GET", "/v1/users/doc-u/continue-watching?limit=5", expect=200)
    C(a, "api", "GET", "/v1/users/doc-u/continue-watching?limit=0", expect=400)
    C(a, "api", "GET", "/watching?video_id=v1", headers={"Cookie": "user_id=doc-u"}, expect=200)
    C(a, "api", "GET", "/watching?video_id=v1", expect=400)
    C(a, "api", "POST", "/v1/users/doc-u/streams", {"session_id": "s-1", "device": "tv"}, JSON, expect=201)
    C(a, "api", "POST", "/v1/users/doc-u/streams", {"session_id": "s-1"}, JSON, expect=200)
    C(a, "api", "POST", "/v1/users/doc-u/streams", {"session_id": "s-2"}, JSON, expect=429)
    C(a, "api", "GET", "/v1/users/doc-u/streams", expect=200)
    C(a, "api", "DELETE", "/v1/users/doc-u/streams/s-1", expect=204)
    C(a, "api", "DELETE", "/v1/users/doc-u/streams/s-1", expect=404)
    C(a, "api", "POST", "/user/stream", {"userId": "doc-c"}, JSON, expect=200)
    C(a, "api", "POST", "/user/stream", {"userId": "doc-c"}, JSON, expect=403)  # quota of 1
    C(a, "api", "GET", "/user/stream?userId=doc-c", expect=403)
    C(a, "api", "DELETE", "/user/stream", {"userId": "doc-c"}, JSON, expect=200)
    C(a, "api", "GET", "/user/stream?userId=doc-c", expect=200)
    C(a, "api", "DELETE", "/user/stream", {"userId": "doc-c"}, JSON, expect=403)
    C(a, "api", "GET", "/", expect=404)  # no --demo-dir
    C(a, "api", "GET", "/dashboard", expect=404)
    C(a, "api", "GET", "/demo-config.json", expect=200)
    C(a, "api", "GET", "/v1/users/doc-u/continue-watching?limit=" + "1" * 3000, expect=414)
    for route in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        C(a, "api", "GET", route)

    # the common answers of the description: 404 for an unknown path, 405 with Allow
    status, headers, body = http("GET", f"{ing.url}/v1/positions")
    assert (status, headers["allow"], list(body)) == (405, "POST", ["error"])
    status, _, body = http("GET", f"{a.url}/no/such/path")
    assert (status, list(body)) == (404, ["error"])


def test_auth_answers_match_the_document(ingest, api, kafka, topic, redis):
    env = {"PLAYHEAD_JWT_SECRET": SECRET}
    ing = ingest(auth="jwt", env=env, threads=1)
    a = api(auth="jwt", env=env, threads=1)
    C = check_conformance
    ev = {"user_id": "alice", "video_id": "v1", "position": 1}
    C(ing, "ingest", "POST", "/v1/positions", ev, JSON, expect=401)
    C(ing, "ingest", "POST", "/v1/positions", ev, {**JSON, "Authorization": f"Bearer {token('bob')}"}, expect=403)
    C(ing, "ingest", "POST", "/v1/positions", ev, {**JSON, "Authorization": f"Bearer {token('alice')}"}, expect=202)
    C(a, "api", "GET", "/v1/users/alice/positions/v1", expect=401)
    C(a, "api", "GET", "/v1/users/alice/positions/v1", headers={"Authorization": f"Bearer {token('bob')}"}, expect=403)
    C(a, "api", "GET", "/v1/users/alice/continue-watching", headers={"Authorization": f"Bearer {token('alice')}"},
      expect=200)
    C(a, "api", "GET", "/healthz", expect=200)  # public
    C(a, "api", "GET", "/openapi.json", expect=200)
