// The audit trail (docs/admin-api.md "Audit"): who did what, when, to which video or key, newest first.
// New entries arrive over the event stream (src/events.ts puts them on top); older pages load on demand.
import { useInfiniteQuery } from '@tanstack/react-query';
import { Link } from 'react-router-dom';
import { endpoints, type AuditEntry } from './api';
import { auditKey, describe, verb } from './doors';
import { age, time, useNow } from './format';
import { Empty, ErrorView, Loading } from './ui';

export function AuditPage() {
  const audit = useInfiniteQuery({
    queryKey: auditKey,
    queryFn: ({ pageParam }) => endpoints.audit(pageParam),
    initialPageParam: null as number | null,
    getNextPageParam: (last) => last.next_before,
  });
  const now = useNow(5000);
  const entries = audit.data?.pages.flatMap((p) => p.events) ?? [];
  return (
    <section aria-labelledby="audit-title">
      <div className="page-head">
        <h1 id="audit-title">Audit</h1>
        <p className="sub">Every admin action, newest first: logins, renames, deletions, visibility, pins, links, retries, keys.</p>
      </div>
      {audit.isPending ? (
        <Loading what="the audit trail" />
      ) : audit.isError ? (
        <ErrorView error={audit.error} retry={() => void audit.refetch()} />
      ) : (
        <div className="panel">
          {entries.length === 0 ? (
            <Empty>No admin action yet.</Empty>
          ) : (
            <div className="table-wrap">
              <table className="audit" aria-label="audit trail">
                <thead>
                  <tr>
                    <th scope="col">When</th>
                    <th scope="col">Who</th>
                    <th scope="col">What</th>
                    <th scope="col">On</th>
                  </tr>
                </thead>
                <tbody>
                  {entries.map((e) => (
                    <AuditLine key={e.id} entry={e} now={now} />
                  ))}
                </tbody>
              </table>
            </div>
          )}
          {audit.hasNextPage && (
            <div className="pager">
              <button type="button" onClick={() => void audit.fetchNextPage()} disabled={audit.isFetchingNextPage}>
                Older →
              </button>
            </div>
          )}
        </div>
      )}
    </section>
  );
}

function AuditLine({ entry: e, now }: { entry: AuditEntry; now: number }) {
  const details = describe(e);
  return (
    <tr data-audit={e.kind}>
      <td title={e.at}>
        {time(e.at)}
        <div className="sub">{age(e.at, now)}</div>
      </td>
      <th scope="row">{e.by ?? '–'}</th>
      <td>
        {verb(e)} {details && <span className="sub">{details}</span>}
      </td>
      <td>
        {e.video_id !== null ? (
          e.kind === 'video.deleted' ? (
            <span>video {e.video_id}</span>
          ) : (
            <Link to={`/recording/${e.video_id}`}>video {e.video_id}</Link>
          )
        ) : e.key !== null ? (
          <Link to="/keys">key {e.key}</Link>
        ) : (
          '–'
        )}
      </td>
    </tr>
  );
}
