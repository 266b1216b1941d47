"""The database schema: videos, renditions, segments and their rungs, attempts, workers, events, webhooks."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from server.core.states import AttemptOutcome, SegmentState, VideoStatus, VideoType, Visibility

MAX_ID = 2**31 - 1  # the largest value of the INT id columns (MySQL INT, signed)

# Fractional seconds matter: publishing rules compare upload and ready times.
UtcDateTime = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as strings so SQLite and MariaDB behave alike and new values need no ALTER TYPE.
    return Enum(cls, native_enum=False, create_constraint=False, length=16, values_callable=lambda e: [m.value for m in e])


class Video(Base):
    __tablename__ = "videos"
    # RETENTION_DAYS' pass (server/ops/reaper.py retention_query): unpinned VODs in finished_at order, one range.
    __table_args__ = (Index("ix_videos_retention", "type", "pinned", "finished_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    type: Mapped[VideoType] = mapped_column(_enum(VideoType), default=VideoType.LIVE)
    status: Mapped[VideoStatus] = mapped_column(_enum(VideoStatus), default=VideoStatus.EMPTY)
    segment_duration_ms: Mapped[int] = mapped_column(Integer, default=3000)
    last_segment_id: Mapped[int | None] = mapped_column(Integer)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    thumbnail_segment_id: Mapped[int | None] = mapped_column(Integer)
    # Bumped on every change a playlist or the JSON can show; cache keys carry it.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    # What the playlist files in the media tree show (server/domain/publishing.py): the revision and the listing
    # they were rendered from. Written by the publisher only, never a revision of its own.
    published_revision: Mapped[int | None] = mapped_column(Integer)
    published_key: Mapped[str | None] = mapped_column(String(64))
    # The publish lease (server/domain/publishing.py): until when, and by whom (a token per publish), a publisher
    # may write the files. Taken and released by compare-and-set; NULL when nobody publishes.
    publishing_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    publishing_by: Mapped[str | None] = mapped_column(String(32))
    # Doors (server/core/doors.py): the recording key that made it (NULL: made without one, RECORDING=open), who
    # may watch it, and whether RETENTION_DAYS spares it (an admin's pin).
    key_id: Mapped[int | None] = mapped_column(ForeignKey("recording_keys.id", ondelete="SET NULL"), index=True)
    visibility: Mapped[Visibility] = mapped_column(_enum(Visibility), default=Visibility.PUBLIC, server_default="public")
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    renditions: Mapped[list[Rendition]] = relationship(
        back_populates="video", order_by="Rendition.position", cascade="all, delete-orphan", passive_deletes=True
    )
    segments: Mapped[list[Segment]] = relationship(
        back_populates="video", order_by="Segment.segment_id", cascade="all, delete-orphan", passive_deletes=True
    )
    # No foreign key (see SegmentArrival): the ORM deletes a deleted video's arrivals itself.
    arrivals: Mapped[list[SegmentArrival]] = relationship(
        primaryjoin="Video.id == foreign(SegmentArrival.video_id)", cascade="all, delete-orphan"
    )

    @property
    def segment_count(self) -> int:
        return -1 if self.last_segment_id is None else self.last_segment_id + 1


class RecordingKey(Base):
    """A key that may record (server/domain/keys.py): the unchanged app carries it in its server URL, /k/<key>/."""

    __tablename__ = "recording_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the key; the key is shown once
    max_live: Mapped[int | None] = mapped_column(Integer)  # live videos at once; NULL: no cap
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)  # stored bytes of its videos; NULL: no quota
    visibility: Mapped[Visibility] = mapped_column(_enum(Visibility), default=Visibility.PUBLIC)  # its videos' default
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Rendition(Base):
    """One rung of the video's ladder, fixed when the video is created."""

    __tablename__ = "renditions"
    __table_args__ = (UniqueConstraint("video_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    video_bitrate: Mapped[int] = mapped_column(Integer)
    audio_bitrate: Mapped[int] = mapped_column(Integer)
    # What the encoder is told for every segment (ladder.plan_ladder), written when the video is created;
    # NULL in rows from before that; players are told lifecycle.rendition_plan(row), derived from the same fields.
    codecs: Mapped[str | None] = mapped_column(String(64))
    frame_rate: Mapped[int | None] = mapped_column(Integer)

    video: Mapped[Video] = relationship(back_populates="renditions")

    @property
    def bandwidth(self) -> int:
        return self.video_bitrate + self.audio_bitrate


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("video_id", "segment_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    segment_id: Mapped[int] = mapped_column(Integer)
    original_extension: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    duration_ms: Mapped[int] = mapped_column(Integer)
    # What probing the upload found (JSON of transcode.ladder.SourceInfo): the worker plans from it
    # instead of launching ffprobe again.
    source_info: Mapped[str | None] = mapped_column(Text)
    status: Mapped[SegmentState] = mapped_column(_enum(SegmentState), default=SegmentState.RECEIVED, index=True)
    # Attempts spent (a full disk spends none); the Attempt rows say what each one did.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    queued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ready_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Place on the stream timeline (90 kHz), fixed when the segment is packaged.
    start_ticks: Mapped[int | None] = mapped_column(BigInteger)
    duration_ticks: Mapped[int | None] = mapped_column(BigInteger)
    audio_start_ticks: Mapped[int | None] = mapped_column(BigInteger)
    audio_duration_ticks: Mapped[int | None] = mapped_column(BigInteger)
    packaged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)  # the dashboard's last hour
    parts: Mapped[str | None] = mapped_column(Text)  # playlists.model.Parts as JSON, written by the packager
    # Ingest health (docs/admin-api.md): how long the upload's body took to arrive and be stored, and how
    # many times the same bytes were uploaded again (a phone retrying after a lost answer).
    upload_ms: Mapped[int | None] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    video: Mapped[Video] = relationship(back_populates="segments")
    renditions: Mapped[list[SegmentRendition]] = relationship(
        back_populates="segment", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def name(self) -> str:
        return f"{self.segment_id:06d}"


class SegmentArrival(Base):
    """An upload being probed and stored: the skip rule counts its segment as arrived at started_at.

    Written before ffprobe (server/domain/ingest.py), deleted in the commit that stores the segment or when the
    upload is refused; one left by a process that died counts, like a failed segment, until expires_at.
    No foreign key: InnoDB's check would take a shared lock on the video's row, so recording an arrival
    would wait behind whoever holds that row (a settle, another upload's commit), the very delay it is for.
    """

    __tablename__ = "segment_arrivals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    video_id: Mapped[int] = mapped_column(Integer, index=True)
    segment_id: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)  # when the upload request began
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SegmentRendition(Base):
    """The state of one segment in one rung."""

    __tablename__ = "segment_renditions"
    __table_args__ = (UniqueConstraint("segment_pk", "rendition_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment_pk: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), index=True)
    rendition_id: Mapped[int] = mapped_column(ForeignKey("renditions.id", ondelete="CASCADE"), index=True)
    status: Mapped[SegmentState] = mapped_column(_enum(SegmentState), default=SegmentState.RECEIVED)
    size: Mapped[int | None] = mapped_column(BigInteger)

    segment: Mapped[Segment] = relationship(back_populates="renditions")
    rendition: Mapped[Rendition] = relationship()


class Worker(Base):
    """A segment_processor that has registered (server/domain/registry.py); remote ones hold a token."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    host: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(64))
    capabilities: Mapped[str | None] = mapped_column(Text)  # JSON: ffmpeg version, encoders
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    functions: Mapped[str | None] = mapped_column(String(255))  # comma-separated Gearman functions it takes
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)  # SHA-256 hex of its token
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempts_ok: Mapped[int] = mapped_column(Integer, default=0)
    attempts_failed: Mapped[int] = mapped_column(Integer, default=0)


class Setting(Base):
    """A value every process with the database shares, made once by the first that needs it (the ticket key)."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Attempt(Base):
    """One encode of one segment by one worker, under a lease the worker renews while it works."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment_pk: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), index=True)
    video_id: Mapped[int] = mapped_column(Integer, index=True)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id", ondelete="SET NULL"), index=True)
    worker_name: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    progress: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[AttemptOutcome | None] = mapped_column(_enum(AttemptOutcome), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)  # the dashboard's last hour
    error: Mapped[str | None] = mapped_column(Text)  # the reason and ffmpeg's stderr tail

    segment: Mapped[Segment] = relationship()


class Event(Base):
    """One state change of a video, segment, attempt or worker, written in the change's transaction."""

    __tablename__ = "events"
    # The audit trail (server/web/admin_views.py audit): a page of some kinds, newest first, read on this index.
    __table_args__ = (Index("ix_events_kind_id", "kind", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    video_id: Mapped[int | None] = mapped_column(Integer, index=True)
    segment_id: Mapped[int | None] = mapped_column(Integer)
    worker_id: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[str | None] = mapped_column(Text)  # small JSON


class Admin(Base):
    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))


class AdminSession(Base):
    """A logged-in dashboard: the cookie holds a random token, this row its SHA-256 (server/web/api/auth.py)."""

    __tablename__ = "admin_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex of the cookie's token
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    address: Mapped[str | None] = mapped_column(String(64))


class Webhook(Base):
    """A URL an admin registered for some events (server/ops/webhooks.py); removing it sets disabled_at."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[str] = mapped_column(String(255))  # comma-separated: video.live, video.vod, ...
    # The HMAC key of its signatures: the receiver holds it too, so it is stored as is (shown once at creation).
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The last event of the log this hook's deliveries were made from; a new hook starts at the newest.
    scanned_to: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookDelivery(Base):
    """One event to send to one hook, tried until delivered or given up (server/ops/webhooks.py)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("webhook_id", "dedupe_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    # Once per hook: "event:<id>" for most, "video.live:<video id>" so a video goes live once.
    dedupe_key: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # the JSON body, exactly as signed and sent
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # NULL once delivered or given up; a sender moves it on before it sends (its claim).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    # The last try's class (webhooks.RESULTS: "2xx", "timeout" ...), never the receiver's bytes. The column
    # keeps its first name; last_status, the receiver's HTTP status, is no longer written (a class says enough).
    last_result: Mapped[str | None] = mapped_column("last_error", String(255))
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    given_up_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
