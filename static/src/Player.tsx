// hls.js on the video's HLS master playlist, live or VOD, with a quality picker and a seek bar that
// shows the storyboard picture under the pointer.
import { useEffect, useRef, useState } from 'react';
import Hls from 'hls.js';
import type { VideoDetail } from './api';
import { clock } from './format';
import { tileAt, useStoryboard } from './storyboard';
import { TileView } from './ui';

interface Level {
  index: number;
  label: string;
}

export function Player({ video }: { video: VideoDetail }) {
  const ref = useRef<HTMLVideoElement>(null);
  const hlsRef = useRef<Hls | null>(null);
  const [levels, setLevels] = useState<Level[]>([]);
  const [level, setLevel] = useState(-1);
  const [playing, setPlaying] = useState(false);
  const [muted, setMuted] = useState(true);
  const [current, setCurrent] = useState(0);
  const [range, setRange] = useState({ start: 0, end: 0 });
  const [error, setError] = useState<string | null>(null);
  const [hover, setHover] = useState<number | null>(null);
  const live = video.type === 'LIVE';
  const tiles = useStoryboard(video.storyboard_url, video.revision, video.thumbnail_url !== null);

  useEffect(() => {
    const media = ref.current;
    if (!media) return;
    setError(null);
    if (!Hls.isSupported()) {
      // Safari plays HLS itself.
      media.src = video.m3u8_url;
      return;
    }
    const hls = new Hls({ enableWorker: true, lowLatencyMode: false, backBufferLength: 30 });
    hlsRef.current = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, (_e, data) => {
      setLevels(
        data.levels.map((l, index) => ({ index, label: `${l.height}p · ${Math.round(l.bitrate / 1000)} kbit/s` })),
      );
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_e, data) => setLevel(hls.autoLevelEnabled ? -1 : data.level));
    hls.on(Hls.Events.ERROR, (_e, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
        return;
      }
      setError(`${data.type}: ${data.details}`);
    });
    hls.loadSource(video.m3u8_url);
    hls.attachMedia(media);
    return () => {
      hls.destroy();
      hlsRef.current = null;
    };
  }, [video.m3u8_url]);

  useEffect(() => {
    const media = ref.current;
    if (!media) return;
    const sync = () => {
      setCurrent(media.currentTime);
      setPlaying(!media.paused);
      setMuted(media.muted);
      const seekable = media.seekable;
      if (seekable.length) setRange({ start: seekable.start(0), end: seekable.end(seekable.length - 1) });
      else if (Number.isFinite(media.duration)) setRange({ start: 0, end: media.duration });
    };
    const names = ['timeupdate', 'play', 'pause', 'durationchange', 'progress', 'volumechange', 'seeked'];
    names.forEach((n) => media.addEventListener(n, sync));
    return () => names.forEach((n) => media.removeEventListener(n, sync));
  }, []);

  const media = ref.current;
  const toggle = () => {
    if (!media) return;
    if (media.paused) void media.play().catch((e: Error) => setError(e.message));
    else media.pause();
  };
  const choose = (value: number) => {
    const hls = hlsRef.current;
    if (hls) hls.currentLevel = value; // -1: automatic
    setLevel(value);
  };
  const span = Math.max(0, range.end - range.start);
  const hoverTime = hover === null ? null : range.start + hover * span;
  const tile = hoverTime !== null ? tileAt(tiles, hoverTime) : null;

  return (
    <div className="player">
      <video ref={ref} muted playsInline poster={video.thumbnail_url ?? undefined} aria-label={`player: ${video.title}`} data-testid="player" onClick={toggle} />
      <div className="controls">
        <button type="button" className="small" onClick={toggle} aria-label={playing ? 'Pause' : 'Play'}>
          {playing ? '❚❚' : '▶'}
        </button>
        <button
          type="button"
          className="small"
          onClick={() => media && (media.muted = !media.muted)}
        >
          {muted ? 'Unmute' : 'Mute'}
        </button>
        <div
          className="seek"
          onMouseMove={(e) => {
            const box = e.currentTarget.getBoundingClientRect();
            setHover(Math.min(1, Math.max(0, (e.clientX - box.left) / box.width)));
          }}
          onMouseLeave={() => setHover(null)}
        >
          <input
            type="range"
            aria-label="Seek"
            min={range.start}
            max={range.end || 0}
            step={0.1}
            value={Math.min(Math.max(current, range.start), range.end || 0)}
            disabled={span <= 0}
            onChange={(e) => media && (media.currentTime = Number(e.target.value))}
          />
          {tile && hover !== null && (
            <div className="seek-preview" style={{ left: `${hover * 100}%` }}>
              <TileView tile={tile} width={160} />
              <span>{clock(hoverTime)}</span>
            </div>
          )}
        </div>
        <span className="time" aria-label="position">
          {clock(current)} / {clock(range.end)}
        </span>
        {live && (
          <button
            type="button"
            className="small"
            onClick={() => {
              const edge = hlsRef.current?.liveSyncPosition;
              if (media && edge) media.currentTime = edge;
            }}
          >
            Go live
          </button>
        )}
        <label className="quality">
          <span>Quality</span>
          <select value={level} onChange={(e) => choose(Number(e.target.value))}>
            <option value={-1}>Auto</option>
            {levels.map((l) => (
              <option key={l.index} value={l.index}>
                {l.label}
              </option>
            ))}
          </select>
        </label>
      </div>
      {error && (
        <p className="form-error" role="alert">
          Playback error: {error}
        </p>
      )}
    </div>
  );
}
