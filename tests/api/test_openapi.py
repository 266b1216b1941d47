"""GET /openapi.json: a valid OpenAPI 3.1 document of exactly the routes in the route table.

The route table (server/web/api/__init__.py) is the truth: every (path, method) Flask routes has an operation
with the same path parameters, and every operation is routed. So a route cannot be added, removed or
renamed without its entry in server/web/api/openapi.json. The Android objects the real views answer validate
against the document's schemas, which are as strict as Jackson (exact key sets).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flask import Flask
from flask_restful import Resource
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry
from referencing import Resource as SchemaResource
from referencing.jsonschema import DRAFT202012
from werkzeug.routing import Map

import server.web.api
from server import create_app
from server.core.clock import SystemClock
from server.core.jobs import TRANSCODE_SEGMENT
from server.domain import registry
from server.infra.models import MAX_ID
from server.web.api.openapi import CACHE_CONTROL, document
from tests.harness.android import SEGMENT_KEYS, VIDEO_KEYS, new_video_body, segment_upload
from tests.harness.stack import ticketed, upload

AUTOMATIC = {"HEAD", "OPTIONS"}  # Flask answers these for every route; the document says so once, in info
OPERATIONS = {"get", "put", "post", "delete", "patch"}
# <converter(args):name> in a werkzeug rule; a bare <name> uses the default (string) converter
VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")
DOC_URI = "urn:team03:openapi"


def openapi_path(rule: str) -> str:
    """Return werkzeug's `/video/<int:video_id>` as OpenAPI's `/video/{video_id}`."""
    return VARIABLE.sub(lambda m: "{" + m["name"] + "}", rule)


def expected_parameter(converter: str | None, args: str | None) -> dict[str, Any]:
    """Return what a path parameter's schema must say for a werkzeug converter of this table."""
    if converter == "int":  # server.web.api.DatabaseId: ASCII digits up to the INT columns' maximum
        return {"type": "integer", "maximum": MAX_ID}
    limit = re.search(r"maxlength=(\d+)", args or "")
    return {"type": "string", **({"maxLength": int(limit[1])} if limit else {})}


def resolve(doc: dict, node: dict) -> dict:
    """Follow a local `$ref` (#/components/...) to its target."""
    while "$ref" in node:
        target: Any = doc
        for key in node["$ref"].removeprefix("#/").split("/"):
            target = target[key.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def routed(url_map: Map) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """Return {(openapi path, method): {parameter: expected schema}} for every route Flask has."""
    routes = {}
    for rule in url_map.iter_rules():
        params = {m["name"]: expected_parameter(m["converter"], m["args"]) for m in VARIABLE.finditer(rule.rule)}
        for method in sorted((rule.methods or set()) - AUTOMATIC):
            routes[(openapi_path(rule.rule), method.lower())] = params
    return routes


def documented(doc: dict) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """Return {(path, method): {path parameter: its schema}} for every operation of `doc`."""
    operations = {}
    for path, item in doc["paths"].items():
        for method in OPERATIONS & set(item):
            params = [resolve(doc, p) for p in item.get("parameters", []) + item[method].get("parameters", [])]
            operations[(path, method)] = {p["name"]: resolve(doc, p["schema"]) for p in params if p["in"] == "path"}
    return operations


def mismatches(url_map: Map, doc: dict) -> list[str]:
    """Return every difference between the routes and the document, in words; empty when they agree."""
    routes, operations = routed(url_map), documented(doc)
    problems = [f"routed but not documented: {m.upper()} {p}" for p, m in sorted(routes.keys() - operations.keys())]
    problems += [f"documented but not routed: {m.upper()} {p}" for p, m in sorted(operations.keys() - routes.keys())]
    for key in sorted(routes.keys() & operations.keys()):
        want, have = routes[key], operations[key]
        if set(want) != set(have):
            problems.append(f"{key[1].upper()} {key[0]}: path parameters {sorted(have)}, the route has {sorted(want)}")
            continue
        for name, schema in want.items():
            if any(have[name].get(k) != v for k, v in schema.items()):
                problems.append(f"{key[1].upper()} {key[0]}: parameter {name} is {have[name]}, the route wants {schema}")
    return problems


def body_validator(doc: dict, path: str, method: str, status: int) -> Draft202012Validator:
    """Return a validator of the JSON body `doc` documents for this answer ($refs resolve within the document)."""
    response = doc["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:  # a shared response (components/responses)
        where = response["$ref"].removeprefix("#/")
    else:
        where = "/".join(k.replace("~", "~0").replace("/", "~1") for k in ("paths", path, method, "responses", str(status)))
    assert "application/json" in resolve(doc, response)["content"], f"{method} {path} {status} documents no JSON body"
    registry = Registry().with_resource(DOC_URI, SchemaResource.from_contents(doc, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"{DOC_URI}#/{where}/content/application~1json/schema"}, registry=registry)


def assert_answer(doc: dict, path: str, method: str, response) -> None:  # type: ignore[no-untyped-def]
    """Assert `response` is documented: its status, its required headers, its JSON body by the schema."""
    answers = doc["paths"][path][method]["responses"]
    assert str(response.status_code) in answers, f"{method.upper()} {path}: {response.status_code} is not documented"
    documented = resolve(doc, answers[str(response.status_code)])
    for name, header in documented.get("headers", {}).items():
        assert name in response.headers or not resolve(doc, header).get("required"), f"{method.upper()} {path}: no {name}"
    if "application/json" in documented.get("content", {}):
        errors = [e.message for e in body_validator(doc, path, method, response.status_code).iter_errors(response.json)]
        assert not errors, f"{method.upper()} {path} {response.status_code}: {errors}"


def test_the_document_is_valid_openapi_3_1():
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(doc).validate()


def test_every_route_has_an_operation_and_every_operation_a_route(app: Flask):
    assert mismatches(app.url_map, document()) == []
    # The comparison is not vacuous: every route of the table is in it.
    assert {openapi_path(path) for _resource, path in server.web.api.ROUTES} <= {p for p, _m in routed(app.url_map)}


def test_a_route_added_without_its_document_entry_fails(monkeypatch, make_config, gearmand):
    class Undocumented(Resource):
        def get(self, video_id: int):  # type: ignore[no-untyped-def]
            return {}, 200

    monkeypatch.setattr(server.web.api, "ROUTES", [*server.web.api.ROUTES, (Undocumented, "/undocumented/<int:video_id>")])
    app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,)))
    try:
        assert mismatches(app.url_map, document()) == ["routed but not documented: GET /undocumented/{video_id}"]
    finally:
        app.extensions["team03"].close()


def test_a_stale_operation_or_a_wrong_path_parameter_fails(app: Flask):
    doc = copy.deepcopy(document())
    doc["paths"]["/gone/{video_id}"] = doc["paths"]["/video/{video_id}"]
    doc["paths"]["/live_m3u8/{video_id}/{name}/stream.m3u8"]["parameters"][1] = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "maxLength": 64},
    }
    problems = mismatches(app.url_map, doc)
    assert [p for p in problems if p.startswith("documented but not routed")] == [
        f"documented but not routed: {m} /gone/{{video_id}}" for m in ("DELETE", "GET", "PUT")
    ]
    assert any("GET /live_m3u8/{video_id}/{name}/stream.m3u8: parameter name" in p for p in problems), problems


def test_android_objects_are_exact_key_sets():
    schemas = document()["components"]["schemas"]
    for name, keys in (("Video", VIDEO_KEYS), ("Segment", SEGMENT_KEYS)):
        assert set(schemas[name]["required"]) == set(schemas[name]["properties"]) == keys, name
        assert schemas[name]["additionalProperties"] is False, name


def test_android_answers_validate_against_their_schemas(client, segment_files):
    doc = document()
    created = client.post("/videos", json=new_video_body("documented"))
    assert created.status_code == 201
    assert_answer(doc, "/videos", "post", created)
    video_id = created.json["video_id"]
    stored = upload(client, video_id, 0, segment_files[0].read_bytes())
    assert stored.status_code == 201, stored.json
    assert_answer(doc, "/video_segment/{video_id}", "post", stored)
    for path, concrete in (
        ("/videos", "/videos"),
        ("/video/{video_id}", f"/video/{video_id}"),
        ("/video_segment/{video_id}", f"/video_segment/{video_id}"),
        ("/video_segment/{video_id}/{segment_id}", f"/video_segment/{video_id}/0"),
    ):
        answer = client.get(concrete)
        assert answer.status_code == 200, (concrete, answer.json)
        assert_answer(doc, path, "get", answer)
    ended = client.post(f"/video_end/{video_id}", data={"last_segment_id": "0"})
    assert ended.status_code == 200, ended.json
    assert_answer(doc, "/video_end/{video_id}", "post", ended)
    missing = client.get(f"/video/{MAX_ID}")
    assert missing.status_code == 404
    assert_answer(doc, "/video/{video_id}", "get", missing)


def test_the_upload_form_documents_the_recorders_parts_exactly():
    """The parts Retrofit sends (tests/harness/android.py builds them byte for byte) are the documented ones."""
    form = document()["paths"]["/video_segment/{video_id}"]["post"]["requestBody"]["content"]["multipart/form-data"]
    body, content_type = segment_upload(7, b"bytes")
    boundary = content_type.split("boundary=")[1].encode()
    sent = {}
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head = chunk.strip(b"\r\n").split(b"\r\n\r\n", 1)[0].decode()
        headers = dict(line.split(": ", 1) for line in head.split("\r\n"))
        name = re.search(r'name="([^"]+)"', headers["Content-Disposition"])[1]  # type: ignore[index]
        sent[name] = headers
    schema = resolve(document(), form["schema"])
    assert set(sent) == set(schema["required"]) == set(form["encoding"])
    for name, headers in sent.items():
        assert headers["Content-Type"] == form["encoding"][name]["contentType"], name
        assert set(form["encoding"][name]["headers"]) == set(headers) - {"Content-Type", "Content-Disposition"}, name


def test_admin_and_operations_answers_validate_against_their_schemas(client, admin_auth, video_id, segment_files):
    doc = document()
    assert upload(client, video_id, 0, segment_files[0].read_bytes()).status_code == 201
    # A registered worker running an attempt, so the workers report has a row with an attempt in it.
    with client.application.extensions["team03"].sessions() as session:
        worker = {"Authorization": f"Bearer {registry.mint_token(session, 'w1', now=SystemClock().now())}"}
    hello = {"host": "w1", "version": "v", "capabilities": {}, "concurrency": 1, "functions": [TRANSCODE_SEGMENT]}
    assert client.post("/api/worker/hello", json=hello, headers=worker).status_code == 200
    services = client.application.extensions["team03"]
    claim = client.post("/api/worker/attempts", json=ticketed(services, video_id, 0), headers=worker)
    assert claim.status_code == 201, claim.json
    for path, concrete in (
        ("/api/admin/videos", "/api/admin/videos"),
        ("/api/admin/videos/{video_id}", f"/api/admin/videos/{video_id}"),
        ("/api/admin/workers", "/api/admin/workers"),
        ("/api/admin/system", "/api/admin/system"),
        ("/api/admin/me", "/api/admin/me"),
        ("/status.json", "/status.json"),
        ("/ping", "/ping"),
        ("/healthz", "/healthz"),
        ("/readyz", "/readyz"),
    ):
        answer = client.get(concrete, headers=admin_auth)
        assert answer.status_code == 200, (concrete, answer.json)
        assert_answer(doc, path, "get", answer)
    assert client.get("/api/admin/workers", headers=admin_auth).json["workers"][0]["attempts"]
    anonymous = client.get("/api/admin/videos")
    assert anonymous.status_code == 401
    assert_answer(doc, "/api/admin/videos", "get", anonymous)


def test_a_video_with_an_extra_key_does_not_validate():
    body = {k: None for k in VIDEO_KEYS} | {"video_id": 1, "title": "t", "created_at": "x", "type": "LIVE", "status": "OK"}
    body |= {"segment_count": -1, "segment_duration": 3000, "uri_mpd": "m", "uri_m3u8": "m", "base_url": "/video_files/1"}
    validator = body_validator(document(), "/video/{video_id}", "get", 200)
    assert list(validator.iter_errors(body)) == []
    assert [e.validator for e in validator.iter_errors(body | {"extra": 1})] == ["additionalProperties"]


def test_the_android_mpd_and_a_worker_refusal_send_their_documented_headers(client, video_id):
    doc = document()
    answer = client.get(f"/live_mpd/{video_id}.mpd")
    assert answer.status_code == 200
    assert_answer(doc, "/live_mpd/{video_id}.mpd", "get", answer)
    assert answer.headers["streamEnded"] == "false"
    refused = client.post("/api/worker/hello", json={})
    assert refused.status_code == 401
    assert_answer(doc, "/api/worker/hello", "post", refused)


def test_the_document_is_served_cached_and_conditional(client):
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    assert answer.json == document()
    assert answer.headers["Cache-Control"] == CACHE_CONTROL
    again = client.get("/openapi.json", headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304
