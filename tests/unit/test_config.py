"""Settings come from the environment, typed, and travel to workers the same way."""

import pytest

from server.config import Config


def test_a_config_travels_to_a_worker_through_its_environment(monkeypatch, tmp_path):
    config = Config.from_env(
        GEARMAN_SERVERS=("a:1", "b:2"), MEDIA_ROOT=tmp_path, KEEP_ORIGINALS=True, GAP_TIMEOUT=2.5, SECRET_KEY="k",
        MEDIA_STORE="s3", S3_ENDPOINT_URL="http://127.0.0.1:7480", S3_BUCKET="media", S3_PREFIX="team03/",
        S3_TIMEOUT=2.5, S3_MAX_ATTEMPTS=5,
    )  # fmt: skip
    for name, value in config.to_env().items():
        monkeypatch.setenv(name, value)
    assert Config.from_env() == config


def test_a_bad_value_names_its_variable(monkeypatch):
    monkeypatch.setenv("MAX_SEGMENT_BYTES", "lots")
    with pytest.raises(ValueError, match="MAX_SEGMENT_BYTES"):
        Config.from_env()
    monkeypatch.setenv("MAX_SEGMENT_BYTES", "5")
    monkeypatch.setenv("KEEP_ORIGINALS", "maybe")
    with pytest.raises(ValueError, match="KEEP_ORIGINALS"):
        Config.from_env()


def test_an_unset_multiprocess_directory_stays_unset_in_a_workers_environment():
    # prometheus_client writes its files into the working directory when the variable exists but is empty.
    assert "PROMETHEUS_MULTIPROC_DIR" not in Config.from_env(PROMETHEUS_MULTIPROC_DIR="").to_env()
    assert Config.from_env(PROMETHEUS_MULTIPROC_DIR="/run/team03/prometheus").to_env()["PROMETHEUS_MULTIPROC_DIR"] == (
        "/run/team03/prometheus"
    )


def test_the_media_store_is_checked(monkeypatch):
    monkeypatch.setenv("MEDIA_STORE", "nfs")
    with pytest.raises(ValueError, match="MEDIA_STORE"):
        Config.from_env()
    monkeypatch.setenv("MEDIA_STORE", "s3")
    with pytest.raises(ValueError, match="S3_BUCKET"):
        Config.from_env()
    monkeypatch.setenv("S3_BUCKET", "media")
    assert Config.from_env().MEDIA_STORE == "s3"
    assert Config.from_env(MEDIA_STORE="local").MEDIA_STORE == "local"
