"""POST/GET /videos, GET/PUT/DELETE /video/<id>, POST /video_end/<id>: the Android contract, exactly."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from sqlalchemy import update

from server.infra.models import Video, VideoStatus
from tests.harness.android import VIDEO_KEYS, new_video_body
from tests.harness.stack import upload
from tests.harness.tree import tree


def test_create_video_answers_the_full_video_object(client):
    response = client.post("/videos", json=new_video_body("Sunset"), headers={"Accept": "application/json"})
    assert response.status_code == 201
    body = response.json
    assert set(body) == VIDEO_KEYS
    assert body["title"] == "Sunset"
    assert (body["type"], body["status"]) == ("LIVE", "EMPTY")
    assert body["segment_count"] == -1
    assert body["segment_duration"] == 3000
    assert body["base_url"] == f"/video_files/{body['video_id']}"
    assert (body["uri_mpd"], body["uri_m3u8"], body["uri_thumbnail"]) == ("manifest.mpd", "master.m3u8", None)
    assert [body[f"repr_{i}_name"] for i in (1, 2, 3)] == ["HIGH", "MEDIUM", "LOW"]
    assert [(body[f"repr_{i}_width"], body[f"repr_{i}_height"]) for i in (1, 2, 3)] == [(720, 480), (480, 320), (240, 160)]
    assert body["repr_1_bandwidth"] > body["repr_2_bandwidth"] > body["repr_3_bandwidth"]
    assert body["created_at"].endswith("-0000")
    parsedate_to_datetime(body["created_at"])  # RFC 822, as Jackson reads it


def test_list_is_newest_first_with_exact_keys(client, segment_files):
    ids = [client.post("/videos", json={"title": f"v{i}"}).json["video_id"] for i in range(3)]
    for vid in ids:
        assert upload(client, vid, 0, segment_files[0].read_bytes()).status_code == 201
    listed = client.get("/videos").json
    assert [v["video_id"] for v in listed] == ids[::-1]
    assert all(set(v) == VIDEO_KEYS for v in listed)


def test_bad_video_bodies_are_refused_with_the_field_named(client):
    cases = [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"title": null}', "title"),
        (b'{"title": "   "}', "title"),
        (b'{"title": 5}', "title"),
        (('{"title": "%s"}' % ("x" * 201)).encode(), "title"),
    ]
    for raw, field in cases:
        response = client.post("/videos", data=raw, content_type="application/json; charset=UTF-8")
        assert response.status_code == 400, raw
        assert response.json["field"] == field
        assert response.json["code"] == "invalid_input"
    assert client.get("/videos").json == []


def test_get_unknown_video_is_a_json_404(client):
    response = client.get("/video/999")
    assert response.status_code == 404
    assert response.json["code"] == "not_found"
    assert "999" in response.json["message"]


def test_rename_and_delete_need_an_admin(client, video_id, admin_auth):
    assert client.put(f"/video/{video_id}", json={"title": "x"}).status_code == 401
    wrong = {"Authorization": "Basic cm9vdDpub3Bl"}  # root:nope
    assert client.delete(f"/video/{video_id}", headers=wrong).status_code == 401
    bad = client.put(f"/video/{video_id}", json={"title": ""}, headers=admin_auth)
    assert bad.status_code == 400 and bad.json["field"] == "title"
    assert client.put("/video/999", json={"title": "x"}, headers=admin_auth).status_code == 404
    response = client.put(f"/video/{video_id}", json={"title": "Renamed"}, headers=admin_auth)
    assert response.status_code == 200
    assert response.json["title"] == "Renamed"
    assert set(response.json) == VIDEO_KEYS


def test_delete_removes_rows_and_every_file(client, app, video_id, admin_auth, segment_files):
    assert upload(client, video_id, 0, segment_files[0].read_bytes()).status_code == 201
    video_dir = tree(app.extensions["team03"]).video_dir(video_id)
    assert any(video_dir.rglob("*.mp4"))
    assert client.delete(f"/video/{video_id}", headers=admin_auth).status_code == 204
    assert not video_dir.exists()
    assert client.get(f"/video/{video_id}").status_code == 404
    assert client.get(f"/video_segment/{video_id}").status_code == 404
    assert client.delete(f"/video/{video_id}", headers=admin_auth).status_code == 404


def test_video_end_accepts_zero_and_is_idempotent(client, video_id):
    response = client.post(f"/video_end/{video_id}", data={"last_segment_id": "0"})
    assert response.status_code == 200
    assert set(response.json) == VIDEO_KEYS
    assert response.json["segment_count"] == 1
    again = client.post(f"/video_end/{video_id}", data={"last_segment_id": "0"})
    assert again.status_code == 200
    conflict = client.post(f"/video_end/{video_id}", data={"last_segment_id": "4"})
    assert conflict.status_code == 409
    assert "0" in conflict.json["message"]


def test_video_end_bad_input(client, video_id):
    assert client.post("/video_end/999", data={"last_segment_id": "1"}).status_code == 404
    for data in ({}, {"last_segment_id": "-1"}, {"last_segment_id": "two"}):
        response = client.post(f"/video_end/{video_id}", data=data)
        assert response.status_code == 400
        assert response.json["field"] == "last_segment_id"
    assert client.get(f"/video/{video_id}").json["segment_count"] == -1


def test_end_below_a_stored_segment_is_refused(client, video_id, segment_files):
    assert upload(client, video_id, 2, segment_files[0].read_bytes()).status_code == 201
    assert client.post(f"/video_end/{video_id}", data={"last_segment_id": "1"}).status_code == 409
    assert client.post(f"/video_end/{video_id}", data={"last_segment_id": "2"}).status_code == 200


def test_errors_are_json_for_unknown_routes_and_methods(client):
    assert client.get("/api/nope").json["code"] == "not_found"
    assert client.get("/video/nope").json["code"] == "not_found"
    response = client.patch("/videos")
    assert response.status_code == 405
    assert "code" in response.json


def test_the_android_list_leaves_out_videos_that_never_got_a_segment(client, video_id, segment_files, admin_auth):
    """Issue 15: one client's empty creates (300 a minute) pushed every recording out of the app's 100-video list.

    A video is listed from its first stored segment on; until then its phone still has it (GET /video/<id>),
    and the operator's list shows it.
    """
    ended_empty = client.post("/videos", json={"title": "ended before its segment"}).json["video_id"]
    assert client.post(f"/video_end/{ended_empty}", data={"last_segment_id": "0"}).status_code == 200
    recorded = client.post("/videos", json={"title": "recorded"}).json["video_id"]
    assert upload(client, recorded, 0, segment_files[0].read_bytes()).status_code == 201
    flood = [client.post("/videos", json={"title": f"empty {i}"}).json["video_id"] for i in range(5)]
    assert [v["video_id"] for v in client.get("/videos").json] == [recorded]
    assert [v["video_id"] for v in client.get("/videos?limit=1").json] == [recorded]
    assert client.get(f"/video/{video_id}").json["status"] == "EMPTY"
    assert upload(client, ended_empty, 0, segment_files[0].read_bytes()).status_code == 201  # its segment came late
    assert [v["video_id"] for v in client.get("/videos").json] == [recorded, ended_empty]
    operator = client.get("/api/admin/videos?limit=200", headers=admin_auth).json["videos"]
    assert {row["id"] for row in operator} == {video_id, ended_empty, recorded, *flood}


def test_list_pages_newest_first_with_limit_and_before(client, app):
    phones = [{"REMOTE_ADDR": f"10.0.0.{i}"} for i in range(101)]  # RATE_LIMIT_CREATE is 100 a minute per address
    ids = [client.post("/videos", json={"title": f"v{i}"}, environ_base=phones[i]).json["video_id"] for i in range(101)]
    with app.extensions["team03"].sessions() as session:  # each as if its first segment were stored
        session.execute(update(Video).values(status=VideoStatus.UPLOADING))
        session.commit()
    newest_first = ids[::-1]
    default = client.get("/videos")
    assert [v["video_id"] for v in default.json] == newest_first[:100]
    assert default.headers["Link"] == f'</videos?limit=100&before={newest_first[99]}>; rel="next"'
    pages, url = [], "/videos?limit=40"
    while url:
        response = client.get(url)
        assert response.status_code == 200
        pages.append([v["video_id"] for v in response.json])
        link = response.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    assert [len(p) for p in pages] == [40, 40, 21]
    assert sum(pages, []) == newest_first
    assert client.get(f"/videos?before={ids[0]}").json == []
    assert [v["video_id"] for v in client.get("/videos?limit=1000").json] == newest_first


def test_bad_list_parameters_name_the_field(client):
    for query, field in [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"), ("before=-1", "before")]:
        response = client.get(f"/videos?{query}")
        assert response.status_code == 400, query
        assert response.json["field"] == field


def test_bidi_controls_in_a_title_are_dropped_so_it_reads_as_typed(client, video_id, admin_auth):
    """U+202A-202E and U+2066-2069 would reverse what every reader (dashboard, Android, MPD, logs) shows after them."""
    overrides = "".join(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
    created = client.post("/videos", json={"title": "invoice\u202egpj.exe"})
    assert created.status_code == 201 and created.json["title"] == "invoicegpj.exe"
    renamed = client.put(f"/video/{video_id}", json={"title": f"\u2067שלום\u2069 {overrides}world"}, headers=admin_auth)
    assert renamed.status_code == 200 and renamed.json["title"] == "שלום world"  # right-to-left text itself stays
    only = client.post("/videos", json={"title": overrides})
    assert only.status_code == 400 and only.json["field"] == "title"


def test_video_end_far_past_the_highest_stored_is_refused(client, app, video_id, segment_files):
    ahead = app.extensions["team03"].config.MAX_SEGMENT_AHEAD
    far = client.post(f"/video_end/{video_id}", data={"last_segment_id": str(ahead + 1)})
    assert far.status_code == 409 and far.json["field"] == "last_segment_id"
    assert client.get(f"/video/{video_id}").json["segment_count"] == -1
    assert upload(client, video_id, 3, segment_files[0].read_bytes()).status_code == 201
    assert client.post(f"/video_end/{video_id}", data={"last_segment_id": str(ahead + 4)}).status_code == 409
    assert client.post(f"/video_end/{video_id}", data={"last_segment_id": str(ahead + 3)}).status_code == 200
