"""The ObjectStore contract (server/store/objects.py), the same tests on each backend: a local tree, and
Ceph's RADOS Gateway on loopback (scripts/services.sh) through S3Objects.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time

import pytest
import requests
from botocore.exceptions import ClientError

from server.core.errors import InsufficientStorage, ServiceError, StorageUnavailable
from server.store.objects import LocalObjects, ObjectInfo, ObjectMissing, PutResult, UnsafeKey
from server.store.s3 import S3Objects
from tests.harness import s3
from tests.harness.services import wait_for

KEY = "videos/7/HIGH/000001.m4s"


def test_put_get_head_delete(objects):
    assert objects.head(KEY) is None
    assert objects.put(KEY, b"fragment") is PutResult.CREATED
    assert objects.get(KEY) == b"fragment"
    assert objects.head(KEY) == ObjectInfo(size=8, sha256=hashlib.sha256(b"fragment").hexdigest())
    objects.delete(KEY)
    assert objects.head(KEY) is None
    objects.delete(KEY)  # gone already: no error


def test_a_put_without_if_absent_replaces(objects):
    objects.put(KEY, b"old")
    assert objects.put(KEY, b"new bytes") is PutResult.CREATED
    assert objects.get(KEY) == b"new bytes"
    assert objects.head(KEY).size == 9


def test_a_missing_object(objects, tmp_path):
    with pytest.raises(ObjectMissing):
        objects.get(KEY)
    with pytest.raises(ObjectMissing):
        objects.download(KEY, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir() if p.name != "objects"] == []  # neither the file nor a temp


def test_a_folder_of_keys_is_no_object(objects):
    objects.put("videos/1/HIGH/000001.m4s", b"x")
    assert objects.head("videos/1") is None
    with pytest.raises(ObjectMissing):
        objects.get("videos/1")
    objects.delete("videos/1")
    assert objects.list() == ["videos/1/HIGH/000001.m4s"]


def test_list_by_prefix(objects):
    keys = ["videos/1/HIGH/000001.m4s", "videos/1/HIGH/init.mp4", "videos/1/LOW/000001.m4s", "videos/12/a.jpg", "x"]
    for key in keys:
        objects.put(key, key.encode())
    assert objects.list() == sorted(keys)
    assert objects.list("videos/1/") == keys[:3]
    assert objects.list("videos/1") == keys[:4]
    assert objects.list("videos/1/HIGH/0") == keys[:1]
    assert objects.list("videos/2/") == []


def test_folders_name_one_level_that_holds_keys(objects):
    for key in ("videos/1/HIGH/000001.m4s", "videos/1/master.m3u8", "videos/12/LOW/init.mp4", "videos/3/a.jpg", "x"):
        objects.put(key, b"k")
    assert objects.folders("videos/") == ["1", "12", "3"]
    assert objects.folders("videos/1/") == ["HIGH"]
    assert objects.folders("videos/9/") == []


def test_a_file_put_is_the_objects_own_whatever_becomes_of_the_file(objects, tmp_path):
    source = tmp_path / "encoded.mp4"
    source.write_bytes(b"first bytes")
    objects.put(KEY, source)
    source.unlink()
    source.write_bytes(b"the next encode")
    assert objects.get(KEY) == b"first bytes"
    path = objects.local_path(KEY)
    assert (path is None) == (objects.backend == "s3")  # the local tree lends its file to readers (ffmpeg)
    assert path is None or path.read_bytes() == b"first bytes"
    assert objects.local_path("videos/7/HIGH/000002.m4s") is None


def test_if_absent_the_first_write_wins_and_the_same_bytes_again_are_fine(objects):
    assert objects.put(KEY, b"first", if_absent=True) is PutResult.CREATED
    assert objects.put(KEY, b"first", if_absent=True) is PutResult.SAME
    assert objects.put(KEY, b"other", if_absent=True) is PutResult.DIFFERENT
    assert objects.get(KEY) == b"first"


def test_if_absent_from_files(objects, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_bytes(b"a" * 300_000)
    two.write_bytes(b"a" * 299_999 + b"b")
    assert objects.put(KEY, one, if_absent=True) is PutResult.CREATED
    assert objects.put(KEY, one, if_absent=True) is PutResult.SAME
    assert objects.put(KEY, two, if_absent=True) is PutResult.DIFFERENT
    assert objects.get(KEY) == one.read_bytes()


@pytest.mark.parametrize("same_bytes", [False, True])
def test_racing_conditional_writes_one_wins(objects, same_bytes):
    writers = 8
    start = threading.Barrier(writers)
    results: dict[int, PutResult] = {}

    def write(i: int) -> None:
        data = b"the same" if same_bytes else f"writer {i}".encode()
        start.wait()
        results[i] = objects.put(KEY, data, if_absent=True)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [i for i, result in results.items() if result is PutResult.CREATED]
    assert len(results) == writers and len(winners) == 1
    losers = {result for i, result in results.items() if i != winners[0]}
    assert losers == {PutResult.SAME if same_bytes else PutResult.DIFFERENT}
    assert objects.get(KEY) == (b"the same" if same_bytes else f"writer {winners[0]}".encode())


def test_download_writes_a_whole_file(objects, tmp_path):
    data = bytes(range(256)) * 5000
    objects.put(KEY, data)
    target = tmp_path / "downloads" / "segment.m4s"
    target.parent.mkdir()
    objects.download(KEY, target)
    assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["segment.m4s"]  # no temp file left


def test_a_reader_never_sees_a_partial_object(objects, tmp_path):
    """While large puts (new, then replacing) are under way, a polling reader sees nothing or a whole version."""
    versions = [bytes([n]) * (24 * 1024 * 1024) for n in (1, 2)]
    digests = {hashlib.sha256(v).hexdigest(): n for n, v in enumerate(versions)}
    for n, data in enumerate(versions):
        (tmp_path / f"v{n}").write_bytes(data)
    seen: list[object] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                data = objects.get(KEY)
            except ObjectMissing:
                seen.append(None)
                continue
            seen.append(digests.get(hashlib.sha256(data).hexdigest(), f"partial: {len(data)} bytes"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        # The reader is polling before the first put starts.
        wait_for(lambda: seen, 10, "the reader made no read")
        objects.put(KEY, tmp_path / "v0")
        objects.put(KEY, tmp_path / "v1")
        wait_for(lambda: seen[-1] == 1, 30, "the reader never saw the last version")
    finally:
        done.set()
        reader.join(30)
    assert set(seen) <= {None, 0, 1}, [s for s in seen if s not in (None, 0, 1)][:3]
    # In order: nothing, the first version, the second; never back.
    assert seen == sorted(seen, key=lambda s: -1 if s is None else s)


BAD_KEYS = ["", "/videos/1", "videos//1", "videos/1/", "../etc/passwd", "videos/../1", "videos/./1", ".hidden",
            "videos/.x.tmp-1", "a b", "a\\b", "vidéos", "a\x00b", "a?b", "a#b", "x" * 513]  # fmt: skip


def test_unsafe_keys_are_refused_by_every_method(objects, tmp_path):
    for key in BAD_KEYS:
        for call in (
            lambda k: objects.put(k, b"x"),
            lambda k: objects.put(k, b"x", if_absent=True),
            objects.get,
            objects.head,
            objects.delete,
            lambda k: objects.download(k, tmp_path / "out"),
        ):
            with pytest.raises(UnsafeKey):
                call(key)
    for prefix in ("/", "../", "videos//", ".x", "a b"):
        with pytest.raises(UnsafeKey):
            objects.list(prefix)
    assert objects.list() == []
    assert not (tmp_path / "out").exists()


def test_the_local_tree_leaves_no_temp_file(tmp_path):
    objects = LocalObjects(tmp_path / "objects")
    for n in range(3):
        objects.put(KEY, f"v{n}".encode())
        objects.put(KEY, b"v0", if_absent=True)
    assert sorted(p.name for p in (tmp_path / "objects" / "videos/7/HIGH").iterdir()) == ["000001.m4s"]


def test_a_full_local_disk_stores_nothing(tiny_disk):
    objects = LocalObjects(tiny_disk / "objects")
    objects.put("videos/1/kept", b"kept")
    for if_absent in (False, True):
        with pytest.raises(InsufficientStorage):
            objects.put(KEY, bytes(8 * 1024 * 1024), if_absent=if_absent)
    assert objects.list() == ["videos/1/kept"]
    assert [p for p in tiny_disk.rglob(".*")] == []  # no temp file left


# ---- S3 only ---------------------------------------------------------------


@pytest.fixture
def bucket_objects(s3_bucket: str) -> S3Objects:
    return s3.s3_objects(s3_bucket, prefix=f"t{time.monotonic_ns()}")


def test_the_engine_refuses_a_second_conditional_write(bucket_objects):
    """The 412 path is the engine's: RGW enforces If-None-Match: * itself."""
    bucket_objects.put(KEY, b"first")
    with pytest.raises(ClientError) as refused:
        bucket_objects.client.put_object(
            Bucket=bucket_objects.bucket, Key=bucket_objects.prefix + KEY, Body=b"second", IfNoneMatch="*"
        )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert bucket_objects.get(KEY) == b"first"


def test_a_second_start_leaves_the_running_gateway_alone(s3_bucket):
    pid_file = s3.CEPH_CONF.parent / "run" / "client.rgw.a.pid"
    pid = pid_file.read_text() if pid_file.exists() else None
    objects = s3.s3_objects(s3_bucket, prefix="again")
    objects.put(KEY, b"before")
    started = time.monotonic()
    again = subprocess.run(["bash", str(s3.ROOT / "scripts/services.sh"), "start", "ceph"], capture_output=True, text=True)
    assert again.returncode == 0 and "left alone" in again.stderr, again.stderr
    assert time.monotonic() - started < 10
    assert (pid_file.read_text() if pid_file.exists() else None) == pid
    assert objects.get(KEY) == b"before"  # the same cluster: memstore would have lost it


def test_signatures_are_checked_though_cephx_is_off(s3_bucket):
    wrong = S3Objects(s3.ENDPOINT, s3_bucket, access_key=s3.ACCESS_KEY, secret_key="not-the-secret", max_attempts=1)
    with pytest.raises(StorageUnavailable, match="refused") as refused:
        wrong.put(KEY, b"x")
    assert "403" in refused.value.detail
    assert requests.put(f"{s3.ENDPOINT}/{s3_bucket}/{KEY}", data=b"x", timeout=10).status_code == 403  # anonymous


def test_an_object_written_by_another_tool_is_compared_by_its_bytes(bucket_objects):
    bucket_objects.client.put_object(Bucket=bucket_objects.bucket, Key=bucket_objects.prefix + KEY, Body=b"plain")
    assert bucket_objects.head(KEY) == ObjectInfo(size=5, sha256=hashlib.sha256(b"plain").hexdigest())
    assert bucket_objects.put(KEY, b"plain", if_absent=True) is PutResult.SAME
    assert bucket_objects.put(KEY, b"plaim", if_absent=True) is PutResult.DIFFERENT


def test_presigned_urls_work_with_plain_requests(bucket_objects):
    put_url = bucket_objects.presign_put(KEY, ttl=60)
    answer = requests.put(put_url, data=b"from a worker", timeout=10)
    assert answer.status_code == 200, answer.text
    assert bucket_objects.get(KEY) == b"from a worker"
    get_url = bucket_objects.presign_get(KEY, ttl=60)
    answer = requests.get(get_url, timeout=10)
    assert (answer.status_code, answer.content) == (200, b"from a worker")
    # The signature covers the key and the method: another key or a PUT through the GET URL is refused.
    assert requests.get(get_url.replace("000001", "000002"), timeout=10).status_code == 403
    assert requests.put(get_url, data=b"x", timeout=10).status_code == 403


def test_an_expired_presigned_url_is_refused(bucket_objects):
    bucket_objects.put(KEY, b"x")
    url = bucket_objects.presign_get(KEY, ttl=1)
    wait_for(lambda: requests.get(url, timeout=10).status_code == 403, 10, "the URL still works after its ttl")


def test_a_stopped_gateway_fails_clearly_in_bounded_time(s3_bucket, tmp_path):
    """A frozen gateway (accepts, never answers) and a stopped one: StorageUnavailable within timeout x attempts."""
    spare = s3.SpareGateway(tmp_path / "rgw").start()
    try:
        objects = s3.s3_objects(s3_bucket, prefix="spare", endpoint=spare.endpoint, timeout=1.0, max_attempts=2)
        objects.put(KEY, b"x")
        spare.pause()
        for call in (lambda: objects.put(KEY, b"y"), lambda: objects.get(KEY)):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable) as failed:
                call()
            # 2 tries of at most 1 s each, and botocore's backoff between them (at most 1 s on a first retry).
            assert time.monotonic() - started < 5
            assert isinstance(failed.value, ServiceError) and failed.value.status == 503
            assert "did not answer" in failed.value.message
            assert spare.endpoint.split("//")[1] not in failed.value.message  # addresses only in the detail
        spare.resume()
        # A write that timed out may still land once the gateway wakes (it had the request): callers never take a
        # StorageUnavailable for "not written", only for "not known to be written" (ingest's retry stores again).
        assert objects.get(KEY) in (b"x", b"y")
        spare.stop()
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="did not answer"):
            objects.head(KEY)
        assert time.monotonic() - started < 5
    finally:
        spare.stop()
