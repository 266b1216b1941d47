// The server pushes every change through /api/admin/events (Server-Sent Events); this module applies
// each one to the TanStack Query cache. Nothing here polls on a timer: a query is fetched again only
// because an event said its data changed (one video's row, the workers, the system page's figures).
import type { QueryClient } from '@tanstack/react-query';
import {
  endpoints,
  type AdminEvent,
  type EventKind,
  type Filter,
  type SegmentState,
  type VideoDetail,
  type VideoPage,
  type VideoQuery,
  type VideoRow,
  type Workers,
} from './api';
import { auditEntry, auditKey, keysKey, prependAudit } from './doors';

export type { AdminEvent, EventKind };

export const keys = {
  me: ['me'] as const,
  videos: ['videos'] as const,
  videoList: (q: VideoQuery) => ['videos', q] as const,
  video: (id: number) => ['video', id] as const,
  workers: ['workers'] as const,
  system: ['system'] as const,
  keys: keysKey,
  audit: auditKey,
};

/**
 * Runs `task` for a key at most once at a time: a request made while it runs (or waits its short
 * delay) is folded into one more run afterwards, so a burst of events costs two fetches, not fifty,
 * and the last one always sees the newest state.
 */
export class Coalescer {
  private state = new Map<string, 'scheduled' | 'running' | 'dirty'>();

  constructor(private readonly delayMs: number) {}

  request(key: string, task: () => Promise<unknown>): void {
    const now = this.state.get(key);
    if (now === 'scheduled' || now === 'dirty') return;
    if (now === 'running') {
      this.state.set(key, 'dirty');
      return;
    }
    this.state.set(key, 'scheduled');
    setTimeout(() => this.run(key, task), this.delayMs);
  }

  private run(key: string, task: () => Promise<unknown>): void {
    this.state.set(key, 'running');
    task()
      .catch(() => undefined)
      .finally(() => {
        const again = this.state.get(key) === 'dirty';
        this.state.delete(key);
        if (again) this.request(key, task);
      });
  }
}

/** Whether a row belongs in a list asked for with `filter` (the server's rule, for rows that change). */
export function matchesFilter(row: VideoRow, filter: Filter | ''): boolean {
  if (filter === 'live') return row.type === 'LIVE';
  if (filter === 'vod') return row.type === 'VOD';
  if (filter === 'failed') return row.status === 'ERROR' || row.segments_failed > 0;
  return true;
}

function summary(detail: VideoDetail): VideoRow {
  const { renditions: _r, segments: _s, ...row } = detail;
  return row;
}

/** Put a fresh row into every cached list page that shows it (or drop it where it no longer fits). */
export function replaceRow(client: QueryClient, row: VideoRow): void {
  for (const [key, page] of client.getQueriesData<VideoPage>({ queryKey: keys.videos })) {
    if (!page || !page.videos.some((v) => v.id === row.id)) continue;
    const query = key[1] as VideoQuery;
    const videos = matchesFilter(row, query.filter)
      ? page.videos.map((v) => (v.id === row.id && v.revision <= row.revision ? row : v))
      : page.videos.filter((v) => v.id !== row.id);
    client.setQueryData<VideoPage>(key, { ...page, videos });
  }
}

/** Drop a deleted video from every cached list page. */
export function removeRow(client: QueryClient, id: number): void {
  for (const [key, page] of client.getQueriesData<VideoPage>({ queryKey: keys.videos })) {
    if (page?.videos.some((v) => v.id === id)) {
      client.setQueryData<VideoPage>(key, { ...page, videos: page.videos.filter((v) => v.id !== id) });
    }
  }
}

function cachedAnywhere(client: QueryClient, id: number): boolean {
  if (client.getQueryData(keys.video(id)) !== undefined) return true;
  return client.getQueriesData<VideoPage>({ queryKey: keys.videos }).some(([, p]) => p?.videos.some((v) => v.id === id));
}

/** Set one attempt's progress wherever it is cached (the video's timeline, the workers page). */
export function applyProgress(client: QueryClient, ev: AdminEvent): void {
  const attempt = Number(ev.data?.attempt);
  const progress = Number(ev.data?.progress);
  if (!Number.isFinite(attempt) || !Number.isFinite(progress)) return;
  if (ev.video_id !== null) {
    client.setQueryData<VideoDetail>(keys.video(ev.video_id), (detail) =>
      detail && {
        ...detail,
        segments: detail.segments.map((s) =>
          s.attempts.some((a) => a.id === attempt)
            ? { ...s, attempts: s.attempts.map((a) => (a.id === attempt ? { ...a, progress } : a)) }
            : s,
        ),
      },
    );
  }
  client.setQueryData<Workers>(keys.workers, (w) =>
    w && {
      ...w,
      workers: w.workers.map((wk) => ({
        ...wk,
        attempts: wk.attempts.map((a) => (a.id === attempt ? { ...a, progress } : a)),
      })),
    },
  );
}

/**
 * Move a cached segment (and its rungs, which the server moves with it) to the state its event names,
 * at once: the video's refetch that follows fills in the times, attempts and latency.
 */
export function applySegmentState(client: QueryClient, ev: AdminEvent, state: SegmentState): void {
  if (ev.video_id === null || ev.segment_id === null) return;
  client.setQueryData<VideoDetail>(keys.video(ev.video_id), (d) =>
    d && {
      ...d,
      segments: d.segments.map((seg) =>
        seg.segment_id === ev.segment_id ? { ...seg, state, rungs: seg.rungs.map((r) => ({ ...r, state })) } : seg,
      ),
    },
  );
}

export interface Refresher {
  video(id: number): void;
  /** A deleted video: never fetched again. */
  forget(id: number): void;
  firstPages(): void;
  workers(): void;
  system(): void;
  /** The recording keys: their live videos and bytes stored. */
  keys(): void;
}

/** The refreshers an event can ask for, each coalesced, each fetching only what the event touched. */
export function refresher(client: QueryClient): Refresher {
  const videos = new Coalescer(50);
  // When an event last named each video: a fetch that started before it may predate what the cache
  // already shows, so it is dropped; the Coalescer's next run (which that event asked for) applies.
  const touched = new Map<number, number>();
  const others = new Coalescer(150);
  const slow = new Coalescer(2000);
  const deleted = new Set<number>();
  return {
    forget: (id) => deleted.add(id),
    video: (id) => {
      touched.set(id, performance.now());
      videos.request(`video:${id}`, async () => {
        if (deleted.has(id)) return;
        const started = performance.now();
        try {
          const detail = await endpoints.video(id);
          if ((touched.get(id) ?? 0) > started || deleted.has(id)) return;
          client.setQueryData(keys.video(id), detail);
          replaceRow(client, summary(detail));
        } catch (e) {
          // Gone meanwhile: its video.deleted event removes it; the open page shows "not found".
          if ((e as { status?: number }).status === 404) await client.invalidateQueries({ queryKey: keys.video(id) });
        }
      });
    },
    firstPages: () =>
      others.request('first-pages', () =>
        client.invalidateQueries({
          queryKey: keys.videos,
          predicate: (q) => (q.queryKey[1] as VideoQuery | undefined)?.before === null,
        }),
      ),
    workers: () => others.request('workers', () => client.invalidateQueries({ queryKey: keys.workers })),
    system: () => slow.request('system', () => client.invalidateQueries({ queryKey: keys.system })),
    keys: () => slow.request('keys', () => client.invalidateQueries({ queryKey: keys.keys })),
  };
}

type Handler = (client: QueryClient, ev: AdminEvent, refresh: Refresher) => void;

/** A video's own change: fetch it again if it is on screen (its page, or a row of a list). */
const videoChanged: Handler = (client, ev, refresh) => {
  if (ev.video_id !== null && cachedAnywhere(client, ev.video_id)) refresh.video(ev.video_id);
};

/** A segment moved to `state`: show it at once, then fetch its video (times, attempts, latency). */
const segmentMoved =
  (state: SegmentState): Handler =>
  (client, ev, refresh) => {
    applySegmentState(client, ev, state);
    videoChanged(client, ev, refresh);
  };

/** A segment became playable or failed for good: the system page's figures change too, and its key's bytes. */
const segmentDone =
  (state: SegmentState): Handler =>
  (client, ev, refresh) => {
    applySegmentState(client, ev, state);
    refresh.system();
    refresh.keys();
    videoChanged(client, ev, refresh);
  };

/** An attempt started or ended: the workers page and the video's timeline change. */
const attemptChanged: Handler = (client, ev, refresh) => {
  refresh.workers();
  videoChanged(client, ev, refresh);
};

const workerChanged: Handler = (_client, _ev, refresh) => refresh.workers();

/** An admin's action (its data says `by`): on top of the audit list at once, no fetch (src/doors.ts). */
const audited: Handler = (client, ev) => {
  const entry = auditEntry(ev);
  if (entry) prependAudit(client, entry);
};

/** A key minted or revoked, a video begun or ended: the keys page's rows and live counts. */
const keyChanged: Handler = (_client, _ev, refresh) => refresh.keys();

/** Several handlers for one kind, in order. */
const all =
  (...handlers: Handler[]): Handler =>
  (client, ev, refresh) => {
    for (const handler of handlers) handler(client, ev, refresh);
  };

/**
 * What each kind of event does, one entry per kind the server sends (server/domain/eventlog.py KINDS, which
 * reaches here through the generated EventKind): a kind added there without its entry fails tsc.
 */
export const HANDLERS: Record<EventKind, Handler> = {
  'video.created': (_client, ev, refresh) => {
    if (ev.video_id !== null) refresh.firstPages();
    refresh.keys();
  },
  'video.uploading': videoChanged,
  'video.stalled': videoChanged,
  'video.ended': all(videoChanged, keyChanged),
  'video.renamed': all(videoChanged, audited),
  'video.finished': videoChanged,
  'video.deleted': (client, ev, refresh) => {
    const id = ev.video_id;
    if (id === null) return;
    // Nothing to fetch (it would be a 404): an open page of it says it was deleted, and its player stops.
    removeRow(client, id);
    client.setQueryData<VideoDetail>(keys.video(id), (d) => d && { ...d, deleted: true });
    refresh.forget(id);
    refresh.system();
    refresh.keys();
    audited(client, ev, refresh);
  },
  'segment.received': segmentMoved('RECEIVED'),
  'segment.queued': segmentMoved('QUEUED'),
  'segment.running': segmentMoved('RUNNING'),
  'segment.encoded': segmentMoved('ENCODED'),
  'segment.packaged': segmentDone('PACKAGED'),
  'segment.failed': segmentDone('FAILED'),
  'attempt.started': attemptChanged,
  'attempt.progress': (client, ev) => applyProgress(client, ev),
  'attempt.ok': attemptChanged,
  'attempt.failed': attemptChanged,
  'attempt.expired': attemptChanged,
  'attempt.cancelled': attemptChanged,
  'worker.token_minted': workerChanged,
  'worker.revoked': workerChanged,
  'worker.started': workerChanged,
  'worker.stopped': workerChanged,
  'worker.lost': workerChanged,
  'admin.login': audited,
  'key.minted': all(audited, keyChanged),
  'key.revoked': all(audited, keyChanged),
  'video.visibility': all(videoChanged, audited),
  'video.pinned': all(videoChanged, audited),
  'video.link': audited,
  'video.retried': all(videoChanged, audited),
};

// EventSource only delivers named events to listeners registered by name (docs/admin-api.md "Kinds").
export const KINDS = Object.keys(HANDLERS) as EventKind[];

/** Apply one event to the cache (a kind this build does not know, from a newer server, is skipped). */
export function applyEvent(client: QueryClient, ev: AdminEvent, refresh: Refresher): void {
  if (Object.hasOwn(HANDLERS, ev.kind)) HANDLERS[ev.kind](client, ev, refresh);
}

export type Connection = 'connecting' | 'open' | 'closed';

/**
 * Open the event stream and apply what it says until `close()` is called. The browser reconnects by
 * itself with Last-Event-ID when the server ends a stream (ADMIN_STREAM_SECONDS); if the stream
 * fails for good (a 401, a restart) it is opened again after `?after=<last id>`, and `onState` says so.
 */
export function connectEvents(client: QueryClient, onState: (s: Connection) => void): () => void {
  const refresh = refresher(client);
  let source: EventSource | null = null;
  let lastId: number | null = null;
  let closed = false;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let opened = false;

  const handle = (message: MessageEvent<string>) => {
    let ev: AdminEvent;
    try {
      ev = JSON.parse(message.data) as AdminEvent;
    } catch {
      return;
    }
    if (typeof ev.id === 'number') lastId = ev.id;
    applyEvent(client, ev, refresh);
  };

  const open = () => {
    if (closed) return;
    onState('connecting');
    const url = lastId === null ? '/api/admin/events' : `/api/admin/events?after=${lastId}`;
    source = new EventSource(url);
    for (const kind of KINDS) source.addEventListener(kind, handle as EventListener);
    source.onmessage = handle;
    source.onopen = () => {
      onState('open');
      // Whatever changed between the first fetches and this stream's start: fetched once, now.
      if (!opened) void client.invalidateQueries({ predicate: (q) => q.queryKey[0] !== 'me' });
      opened = true;
    };
    source.onerror = () => {
      if (!source || source.readyState !== EventSource.CLOSED) return; // the browser is reconnecting
      source.close();
      onState('closed');
      reopen(2000);
    };
  };

  // Still logged in? /me answers; a 401 there sends the user to the login page instead. A server
  // that does not answer is asked again, less and less often (at most every 30 s).
  const reopen = (delay: number) => {
    retry = setTimeout(() => {
      endpoints.me().then(open, (e: { status?: number }) => {
        if (e.status !== 401) reopen(Math.min(delay * 2, 30000));
      });
    }, delay);
  };

  open();
  return () => {
    closed = true;
    clearTimeout(retry);
    source?.close();
  };
}
