import { lazy, Suspense, useState } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Link, useNavigate, useParams } from 'react-router-dom';
import { ApiError, endpoints, type Attempt, type SegmentRow, type VideoDetail } from './api';
import { keys } from './events';
import { age, bytes, clock, percent, seconds, time, useNow } from './format';
import { Badge, Empty, ErrorText, ErrorView, Health, Loading } from './ui';
import { RenameForm, VideoActions } from './Videos';
import { Access } from './Access';

// hls.js is most of the bundle: loaded only when a video page has something to play.
const Player = lazy(() => import('./Player').then((m) => ({ default: m.Player })));

export function VideoPage() {
  const id = Number(useParams().id);
  const navigate = useNavigate();
  const [renaming, setRenaming] = useState(false);
  const video = useQuery({ queryKey: keys.video(id), queryFn: () => endpoints.video(id), enabled: Number.isInteger(id) });
  const now = useNow();
  if (video.isPending) return <Loading what="the video" />;
  if (video.isError) {
    if (video.error instanceof ApiError && video.error.status === 404) {
      return (
        <Empty>
          Video {id} does not exist (it may just have been deleted). <Link to="/">All videos</Link>
        </Empty>
      );
    }
    return <ErrorView error={video.error} retry={() => void video.refetch()} />;
  }
  const v = video.data;
  if (v.deleted) {
    return (
      <Empty>
        “{v.title}” (video {v.id}) has just been deleted. <Link to="/">All videos</Link>
      </Empty>
    );
  }
  const playable = v.segments.some((s) => s.state === 'PACKAGED');
  return (
    <section aria-labelledby="video-title" className="video-page">
      <p className="crumbs">
        <Link to="/">Videos</Link> / {v.id}
      </p>
      <div className="page-head">
        {renaming ? (
          <RenameForm video={v} onDone={() => setRenaming(false)} />
        ) : (
          <h1 id="video-title">{v.title}</h1>
        )}
        <div className="meta">
          <Badge kind={v.type}>{v.type}</Badge>
          <Badge kind={v.status}>{v.status}</Badge>
          <span>{clock(v.duration)}</span>
          <span>{v.segment_count >= 0 ? v.segment_count : v.segments.length} segments</span>
          <span title={v.created_at}>created {age(v.created_at, now)}</span>
          {v.renditions.length > 0 && <span>{v.renditions.map((r) => `${r.name} ${r.height}p`).join(' · ')}</span>}
        </div>
      </div>
      <VideoActions video={v} onRename={() => setRenaming(true)} onDeleted={() => navigate('/', { replace: true })} />
      <Access video={v} />
      <div className="video-top">
        {playable ? (
          <Suspense fallback={<div className="player placeholder"><p>Loading the player…</p></div>}>
            <Player video={v} />
          </Suspense>
        ) : (
          <div className="player placeholder">
            <p>{v.segments.length ? 'Waiting for the first segment to be packaged…' : 'Nothing uploaded yet.'}</p>
          </div>
        )}
        {v.type === 'LIVE' && v.health && (
          <div className="panel">
            <h2>Ingest health</h2>
            <Health health={v.health} sinceMs={now - (v.fetched_at ?? now)} />
          </div>
        )}
      </div>
      <Timeline video={v} now={now} />
    </section>
  );
}

const STATE_HELP: Record<string, string> = {
  RECEIVED: 'stored, not yet given to a worker',
  QUEUED: 'waiting for a worker',
  RUNNING: 'a worker is encoding it',
  ENCODED: 'encoded, waiting for its place on the timeline',
  PACKAGED: 'packaged and published',
  FAILED: 'failed for good',
};

function Timeline({ video, now }: { video: VideoDetail; now: number }) {
  const queryClient = useQueryClient();
  const failed = video.segments.filter((s) => s.state === 'FAILED').length;
  const retryAll = useMutation({
    mutationFn: () => endpoints.retryFailed(video.id),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: keys.video(video.id) }),
  });
  const rungs = video.renditions.length ? video.renditions.map((r) => r.name) : (video.segments[0]?.rungs.map((r) => r.name) ?? []);
  return (
    <div className="panel timeline-panel">
      <div className="panel-head">
        <h2>Segments</h2>
        <Legend />
        {failed > 0 && (
          <button type="button" className="small" onClick={() => retryAll.mutate()} disabled={retryAll.isPending}>
            Retry all failed ({failed})
          </button>
        )}
        {retryAll.isError && <span className="form-error">{retryAll.error.message}</span>}
      </div>
      {video.segments.length === 0 ? (
        <Empty>No segment yet.</Empty>
      ) : (
        <div className="table-wrap">
          <table className="timeline">
            <thead>
              <tr>
                <th scope="col">#</th>
                {rungs.map((r) => (
                  <th scope="col" key={r} className="rung-head">
                    {r}
                  </th>
                ))}
                <th scope="col">State</th>
                <th scope="col">Received</th>
                <th scope="col">Queued</th>
                <th scope="col">Attempts</th>
                <th scope="col">Packaged</th>
                <th scope="col">Latency</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {video.segments.map((s) => (
                <SegmentLine key={s.segment_id} video={video} segment={s} rungs={rungs} now={now} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function Legend() {
  return (
    <ul className="legend" aria-label="legend">
      {Object.entries(STATE_HELP).map(([state, help]) => (
        <li key={state} title={help}>
          <span className={`cell state-${state.toLowerCase()}`} aria-hidden="true" /> {state.toLowerCase()}
        </li>
      ))}
    </ul>
  );
}

function SegmentLine({ video, segment: s, rungs, now }: { video: VideoDetail; segment: SegmentRow; rungs: string[]; now: number }) {
  const queryClient = useQueryClient();
  const retry = useMutation({
    mutationFn: () => endpoints.retrySegment(video.id, s.segment_id),
    onSuccess: (row) =>
      queryClient.setQueryData<VideoDetail>(keys.video(video.id), (d) =>
        d && { ...d, segments: d.segments.map((x) => (x.segment_id === row.segment_id ? row : x)) },
      ),
  });
  return (
    <tr data-segment={s.segment_id} data-state={s.state}>
      <th scope="row">{s.segment_id}</th>
      {rungs.map((name) => {
        const rung = s.rungs.find((r) => r.name === name);
        const state = rung?.state ?? s.state;
        return (
          <td key={name} className="rung">
            <span
              className={`cell state-${state.toLowerCase()}`}
              data-rung={name}
              data-state={state}
              role="img"
              aria-label={`segment ${s.segment_id} ${name}: ${state.toLowerCase()}`}
              title={`${name}: ${state}${rung?.size ? `, ${bytes(rung.size)}` : ''}`}
            />
          </td>
        );
      })}
      <td className="state-cell">
        <Badge kind={s.state} title={STATE_HELP[s.state]}>
          {s.state}
        </Badge>
        {s.error && <ErrorText text={s.error} />}
      </td>
      <td className="received-cell">
        {time(s.uploaded_at)}
        <div className="sub">
          {bytes(s.size)}, {seconds(s.duration)}, up {seconds(s.upload_seconds)}
        </div>
      </td>
      <td>{time(s.queued_at)}</td>
      <td className="attempts-cell">
        <Attempts attempts={s.attempts} now={now} />
      </td>
      <td>{time(s.packaged_at)}</td>
      <td>{seconds(s.latency)}</td>
      <td>
        {s.state === 'FAILED' && (
          <button
            type="button"
            className="small"
            onClick={() => retry.mutate()}
            disabled={retry.isPending}
            aria-label={`Retry segment ${s.segment_id}`}
          >
            Retry
          </button>
        )}
        {retry.isError && <span className="form-error">{retry.error.message}</span>}
      </td>
    </tr>
  );
}

function Attempts({ attempts, now }: { attempts: Attempt[]; now: number }) {
  if (!attempts.length) return <span className="sub">none</span>;
  return (
    <ol className="attempts">
      {attempts.map((a) => (
        <li key={a.id}>
          <span className="worker">{a.worker ?? '?'}</span> <span className="sub">{age(a.started_at, now)}</span>{' '}
          {a.outcome === null ? (
            <progress max={1} value={a.progress ?? 0} aria-label={`attempt ${a.id} progress`}>
              {percent(a.progress)}
            </progress>
          ) : (
            <Badge kind={a.outcome}>{a.outcome}</Badge>
          )}
          {a.outcome === null && <span className="sub"> {percent(a.progress)}</span>}
          {a.finished_at && a.started_at && (
            <span className="sub"> in {seconds((Date.parse(a.finished_at) - Date.parse(a.started_at)) / 1000)}</span>
          )}
          {a.error && <ErrorText text={a.error} />}
        </li>
      ))}
    </ol>
  );
}
