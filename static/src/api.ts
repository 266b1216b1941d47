// The one way the dashboard talks to the server: JSON over /api/admin (docs/admin-api.md).
// Every mutation carries X-CSRF-Token (from /api/admin/me or the login answer); a 401 anywhere sends
// the user to the login page.

export type VideoType = 'LIVE' | 'VOD';
export type VideoStatus = 'EMPTY' | 'UPLOADING' | 'OK' | 'ERROR';
export type SegmentState = 'RECEIVED' | 'QUEUED' | 'RUNNING' | 'ENCODED' | 'PACKAGED' | 'FAILED';
export type Filter = 'live' | 'vod' | 'failed';

export interface IngestHealth {
  last_segment_age: number | null;
  stalled: boolean;
  upload_ratio: { last: number | null; max: number | null; level: 'ok' | 'warn' | 'alarm' };
  drift: number | null;
  missing: number[];
  /** All of them; `missing` lists the first 50. */
  missing_count?: number;
  duplicates: number;
  out_of_order: number;
  probe: { width: number; height: number; fps: number; keyframe_interval: number | null; audio: boolean } | null;
}

export interface VideoRow {
  id: number;
  title: string;
  type: VideoType;
  status: VideoStatus;
  created_at: string;
  ended_at: string | null;
  finished_at: string | null;
  duration: number | null;
  segment_count: number;
  segments_failed: number;
  revision: number;
  thumbnail_url: string | null;
  storyboard_url: string | null;
  mpd_url: string;
  m3u8_url: string;
  health: IngestHealth | null;
  /** Client side: when this row was fetched (Date.now()), so ages keep counting between events. */
  fetched_at?: number;
}

export interface Attempt {
  id: number;
  worker: string | null;
  started_at: string | null;
  finished_at: string | null;
  progress: number | null;
  outcome: null | 'ok' | 'failed' | 'expired' | 'cancelled';
  error: string | null;
  lease_expires_at: string | null;
}

export interface RunningAttempt extends Attempt {
  video_id: number;
  segment_id: number;
}

export interface SegmentRow {
  segment_id: number;
  state: SegmentState;
  size: number | null;
  duration: number | null;
  uploaded_at: string | null;
  upload_seconds: number | null;
  queued_at: string | null;
  ready_at: string | null;
  packaged_at: string | null;
  failed_at: string | null;
  latency: number | null;
  error: string | null;
  rungs: { name: string; state: string; size: number | null }[];
  attempts: Attempt[];
}

export interface VideoDetail extends VideoRow {
  /** Client side: a video.deleted event named it while it was cached. */
  deleted?: boolean;
  renditions: { name: string; width: number; height: number; bandwidth: number }[];
  segments: SegmentRow[];
}

export interface VideoPage {
  videos: VideoRow[];
  next_before: number | null;
}

export interface QueueCounts {
  queued: number;
  running: number;
  workers: number;
}

export interface Worker {
  id: number;
  name: string;
  host: string;
  version: string | null;
  concurrency: number;
  functions: string[];
  started_at: string | null;
  last_heartbeat_at: string | null;
  heartbeat_age: number | null;
  alive: boolean;
  stopped_at: string | null;
  attempts: RunningAttempt[];
  segments_per_minute: number | null;
  x_realtime: number | null;
  errors_last_hour: number;
  attempts_ok: number;
  attempts_failed: number;
}

export type Queue =
  | {
      servers: { server: string; ok: boolean; error: string | null; functions: Record<string, QueueCounts> }[];
      total: Record<string, QueueCounts>;
    }
  | { kind: 'local' };

export interface Workers {
  workers: Worker[];
  queue: Queue;
  banner: string | null;
}

export interface SystemInfo {
  disk: { total: number; used: number; free: number; path_hint: string };
  services: Record<string, { ok: boolean; kind?: string; error?: string | null }>;
  failures_last_hour: number;
  series: {
    minutes: string[];
    segments_per_minute: number[];
    latency_p50: (number | null)[];
    latency_p95: (number | null)[];
  };
}

export interface Me {
  name: string;
  csrf_token: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let csrfToken: string | null = null;
let onUnauthorized: () => void = () => {};

// Whether this browser logged in and has not logged out since: without it the app opens on the login
// page instead of asking /me first (a 401 there would be a red line in the console of every visit).
const SIGNED_IN = 'team03.signedIn';

export function rememberSignedIn(yes: boolean): void {
  try {
    if (yes) localStorage.setItem(SIGNED_IN, '1');
    else localStorage.removeItem(SIGNED_IN);
  } catch {
    // Storage disabled: the app simply asks /me every time.
  }
}

export function maybeSignedIn(): boolean {
  try {
    return localStorage.getItem(SIGNED_IN) === '1';
  } catch {
    return true;
  }
}

export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Call the admin API; resolve with the parsed JSON (null for 204), reject with an ApiError. */
export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const method = init.method ?? 'GET';
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (init.body !== undefined) headers['Content-Type'] = 'application/json';
  if (MUTATIONS.has(method) && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
  } catch {
    throw new ApiError(0, 'network', 'the server did not answer');
  }
  if (response.status === 204) return null as T;
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const code = payload?.error ?? payload?.code ?? `http_${response.status}`;
    const message = payload?.message ?? `${response.status} ${response.statusText}`;
    if (response.status === 401 && path !== '/api/admin/login') {
      rememberSignedIn(false);
      onUnauthorized();
    }
    throw new ApiError(response.status, code, message);
  }
  return payload as T;
}

export interface VideoQuery {
  q: string;
  filter: Filter | '';
  before: number | null;
}

export const PAGE_SIZE = 25;

export function videosPath({ q, filter, before }: VideoQuery): string {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (before !== null) params.set('before', String(before));
  if (q) params.set('q', q);
  if (filter) params.set('filter', filter);
  return `/api/admin/videos?${params}`;
}

export const endpoints = {
  me: () => api<Me>('/api/admin/me'),
  login: (username: string, password: string) =>
    api<Me>('/api/admin/login', { method: 'POST', body: { username, password } }),
  logout: () => api<null>('/api/admin/logout', { method: 'POST' }),
  videos: async (query: VideoQuery) => {
    const page = await api<VideoPage>(videosPath(query));
    const now = Date.now();
    return { ...page, videos: page.videos.map((v) => ({ ...v, fetched_at: now })) };
  },
  video: async (id: number) => ({ ...(await api<VideoDetail>(`/api/admin/videos/${id}`)), fetched_at: Date.now() }),
  rename: (id: number, title: string) => api<VideoRow>(`/api/admin/videos/${id}`, { method: 'PATCH', body: { title } }),
  remove: (id: number) => api<null>(`/api/admin/videos/${id}`, { method: 'DELETE' }),
  end: (id: number) => api<VideoRow>(`/api/admin/videos/${id}/end`, { method: 'POST' }),
  retrySegment: (id: number, segment: number) =>
    api<SegmentRow>(`/api/admin/videos/${id}/segments/${segment}/retry`, { method: 'POST' }),
  retryFailed: (id: number) => api<{ retried: number }>(`/api/admin/videos/${id}/retry`, { method: 'POST' }),
  workers: () => api<Workers>('/api/admin/workers'),
  cancelAttempt: (id: number) => api<Attempt>(`/api/admin/attempts/${id}/cancel`, { method: 'POST' }),
  system: () => api<SystemInfo>('/api/admin/system'),
};
