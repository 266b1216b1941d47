import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Link } from 'react-router-dom';
import { endpoints, type QueueCounts, type RunningAttempt, type VideoRow, type Workers, type Worker } from './api';
import { keys } from './events';
import { age, percent, seconds, useNow } from './format';
import { Badge, Empty, ErrorView, Loading } from './ui';

export function WorkersPage() {
  const workers = useQuery({ queryKey: keys.workers, queryFn: endpoints.workers });
  const now = useNow();
  return (
    <section aria-labelledby="workers-title">
      <div className="page-head">
        <h1 id="workers-title">Workers and jobs</h1>
      </div>
      {workers.isPending ? (
        <Loading what="workers" />
      ) : workers.isError ? (
        <ErrorView error={workers.error} retry={() => void workers.refetch()} />
      ) : (
        <div className="columns">
          <div className="panel">
            <h2>Workers</h2>
            <WorkerTable workers={workers.data.workers} now={now} fetchedAt={workers.dataUpdatedAt} />
          </div>
          <div className="side">
            <QueuePanel queue={workers.data.queue} />
            <FailedPanel />
          </div>
        </div>
      )}
    </section>
  );
}

function WorkerTable({ workers, now, fetchedAt }: { workers: Worker[]; now: number; fetchedAt: number }) {
  if (!workers.length) return <Empty>No worker has ever started. Run python -m server.segment_processor.</Empty>;
  return (
    <div className="table-wrap">
      <table className="workers">
        <thead>
          <tr>
            <th scope="col">Worker</th>
            <th scope="col">Version</th>
            <th scope="col">Slots</th>
            <th scope="col">Heartbeat</th>
            <th scope="col">Seg/min</th>
            <th scope="col">× realtime</th>
            <th scope="col">Errors (1 h)</th>
            <th scope="col">Now running</th>
          </tr>
        </thead>
        <tbody>
          {workers.map((w) => (
            <tr key={w.id} data-worker={w.name} className={w.alive ? '' : 'dead'}>
              <th scope="row">
                <div>{w.name}</div>
                <div className="sub">
                  {w.host} {w.alive ? <Badge kind="ok">alive</Badge> : <Badge kind="alarm">{w.stopped_at ? 'stopped' : 'silent'}</Badge>}
                </div>
              </th>
              <td>{w.version ?? '–'}</td>
              <td>
                {w.attempts.length}/{w.concurrency}
              </td>
              <td title={w.last_heartbeat_at ?? ''}>
                {w.heartbeat_age === null ? '–' : seconds(w.heartbeat_age + (w.alive ? (now - fetchedAt) / 1000 : 0), 0)}
                <div className="sub">{w.stopped_at ? `stopped ${age(w.stopped_at, now)}` : ''}</div>
              </td>
              <td>{w.segments_per_minute?.toFixed(1) ?? '–'}</td>
              <td>{w.x_realtime?.toFixed(2) ?? '–'}</td>
              <td className={w.errors_last_hour ? 'level-alarm' : undefined}>
                {w.errors_last_hour}
                <div className="sub">
                  {w.attempts_ok} ok / {w.attempts_failed} failed
                </div>
              </td>
              <td>
                {w.attempts.length ? (
                  <ul className="running">
                    {w.attempts.map((a) => (
                      <RunningItem key={a.id} attempt={a} now={now} />
                    ))}
                  </ul>
                ) : (
                  <span className="sub">idle</span>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function RunningItem({ attempt: a, now }: { attempt: RunningAttempt; now: number }) {
  const queryClient = useQueryClient();
  const cancel = useMutation({
    mutationFn: () => endpoints.cancelAttempt(a.id),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: keys.workers }),
  });
  return (
    <li>
      <Link to={`/recording/${a.video_id}`}>
        video {a.video_id} #{a.segment_id}
      </Link>{' '}
      <progress max={1} value={a.progress ?? 0} aria-label={`attempt ${a.id} progress`} /> {percent(a.progress)}{' '}
      <span className="sub">{age(a.started_at, now)}</span>{' '}
      <button type="button" className="small" onClick={() => cancel.mutate()} disabled={cancel.isPending}>
        Cancel
      </button>
      {cancel.isError && <span className="form-error">{cancel.error.message}</span>}
    </li>
  );
}

function QueuePanel({ queue }: { queue: Workers['queue'] }) {
  if ('kind' in queue) {
    return (
      <div className="panel">
        <h2>Queue</h2>
        <p>Jobs run on the web process's local threads (no GEARMAN_SERVERS).</p>
      </div>
    );
  }
  const rows = (functions: Record<string, QueueCounts>) =>
    Object.entries(functions).map(([name, c]) => (
      <tr key={name}>
        <th scope="row">{name.replace(/^team03\./, '')}</th>
        <td>{c.queued}</td>
        <td>{c.running}</td>
        <td>{c.workers}</td>
      </tr>
    ));
  return (
    <div className="panel">
      <h2>gearmand</h2>
      {queue.servers.map((s) => (
        <div key={s.server} className="queue-server">
          <h3>
            {s.server} {s.ok ? <Badge kind="ok">up</Badge> : <Badge kind="alarm">down</Badge>}
          </h3>
          {s.error && <p className="form-error">{s.error}</p>}
          {Object.keys(s.functions).length > 0 && (
            <div className="table-wrap">
              <table className="compact-table">
                <thead>
                  <tr>
                    <th scope="col">Function</th>
                    <th scope="col">Queued</th>
                    <th scope="col">Running</th>
                    <th scope="col">Workers</th>
                  </tr>
                </thead>
                <tbody>{rows(s.functions)}</tbody>
              </table>
            </div>
          )}
        </div>
      ))}
    </div>
  );
}

/** Videos with failed segments, each retried in one click (the queue's "retry"). */
function FailedPanel() {
  const query = { q: '', filter: 'failed' as const, before: null };
  const failed = useQuery({ queryKey: keys.videoList(query), queryFn: () => endpoints.videos(query) });
  return (
    <div className="panel">
      <h2>Failed segments</h2>
      {failed.isPending ? (
        <Loading what="failures" />
      ) : failed.isError ? (
        <ErrorView error={failed.error} />
      ) : failed.data.videos.length === 0 ? (
        <Empty>Nothing failed.</Empty>
      ) : (
        <ul className="failed">
          {failed.data.videos.map((v) => (
            <FailedItem key={v.id} video={v} />
          ))}
        </ul>
      )}
    </div>
  );
}

function FailedItem({ video }: { video: VideoRow }) {
  const queryClient = useQueryClient();
  const retry = useMutation({
    mutationFn: () => endpoints.retryFailed(video.id),
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: keys.videos });
      void queryClient.invalidateQueries({ queryKey: keys.video(video.id) });
    },
  });
  return (
    <li>
      <Link to={`/recording/${video.id}`}>{video.title}</Link> <span className="sub">{video.segments_failed} failed</span>{' '}
      <button type="button" className="small" onClick={() => retry.mutate()} disabled={retry.isPending || video.segments_failed === 0}>
        Retry failed
      </button>
      {retry.isError && <span className="form-error">{retry.error.message}</span>}
    </li>
  );
}
