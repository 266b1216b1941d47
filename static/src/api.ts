// The one way the dashboard talks to the server: JSON over /api/admin (docs/admin-api.md).
// Every mutation carries X-CSRF-Token (from /api/admin/me or the login answer); a 401 anywhere sends
// the user to the login page.
import type { components, operations } from './openapi.gen';

// Every JSON shape below is generated from the server's API document (server/web/api/openapi.json) into
// src/openapi.gen.ts by `npm run gen:api` (never edited by hand; a test fails when it is stale); these
// are its names, plus the few fields only the client adds.
type Schemas = components['schemas'];

export type VideoType = Schemas['VideoRow']['type'];
export type VideoStatus = Schemas['VideoRow']['status'];
export type SegmentState = Schemas['SegmentState'];
export type Filter = NonNullable<NonNullable<operations['adminVideos']['parameters']['query']>['filter']>;
export type IngestHealth = NonNullable<Schemas['IngestHealth']>;
export type EventKind = Schemas['EventKind'];
export type AdminEvent = Schemas['AdminEvent'];

export type VideoRow = Schemas['VideoRow'] & {
  /** Client side: when this row was fetched (Date.now()), so ages keep counting between events. */
  fetched_at?: number;
};
export type Attempt = Schemas['AttemptRow'];
export type RunningAttempt = Schemas['RunningAttemptRow'];
export type SegmentRow = Schemas['SegmentRow'];
export type VideoDetail = Schemas['VideoDetail'] &
  VideoRow & {
    /** Client side: a video.deleted event named it while it was cached. */
    deleted?: boolean;
  };
export type VideoPage = Omit<Schemas['VideoPage'], 'videos'> & { videos: VideoRow[] };
export type QueueCounts = Schemas['QueueCounts'];
export type Worker = Schemas['WorkerRow'];
export type Workers = Schemas['WorkersReport'];
export type Queue = Workers['queue'];
export type SystemInfo = Schemas['SystemReport'];
export type Me = Schemas['AdminLogin'];
export type Visibility = Schemas['Visibility'];
export type VideoChange = Schemas['VideoChange'];
export type KeyRow = Schemas['KeyRow'];
export type NewKey = Schemas['NewKey'];
export type MintedKey = Schemas['MintedKey'];
export type RevokedKey = Schemas['RevokedKey'];
export type Link = Schemas['Link'];
export type AuditKind = Schemas['AuditKind'];
export type AuditEntry = Schemas['AuditEntry'];
export type AuditPage = Schemas['AuditPage'];

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
  rename: (id: number, title: string) => change(id, { title }),
  change,
  remove: (id: number) => api<null>(`/api/admin/videos/${id}`, { method: 'DELETE' }),
  end: (id: number) => api<VideoRow>(`/api/admin/videos/${id}/end`, { method: 'POST' }),
  retrySegment: (id: number, segment: number) =>
    api<SegmentRow>(`/api/admin/videos/${id}/segments/${segment}/retry`, { method: 'POST' }),
  retryFailed: (id: number) => api<{ retried: number }>(`/api/admin/videos/${id}/retry`, { method: 'POST' }),
  workers: () => api<Workers>('/api/admin/workers'),
  cancelAttempt: (id: number) => api<Attempt>(`/api/admin/attempts/${id}/cancel`, { method: 'POST' }),
  system: () => api<SystemInfo>('/api/admin/system'),
  mintLink: (id: number, dash = false) => api<Link>(`/api/admin/videos/${id}/link`, { method: 'POST', body: { dash } }),
  keys: () => api<{ keys: KeyRow[] }>('/api/admin/keys'),
  mintKey: (key: NewKey) => api<MintedKey>('/api/admin/keys', { method: 'POST', body: key }),
  revokeKey: (name: string) => api<RevokedKey>(`/api/admin/keys/${encodeURIComponent(name)}/revoke`, { method: 'POST' }),
  audit: (before: number | null) =>
    api<AuditPage>(`/api/admin/audit?limit=${AUDIT_PAGE}${before === null ? '' : `&before=${before}`}`),
};

export const AUDIT_PAGE = 50;

/** Rename, set who may watch, pin or unpin: PATCH with just the fields that change. */
function change(id: number, fields: VideoChange) {
  return api<VideoRow>(`/api/admin/videos/${id}`, { method: 'PATCH', body: fields });
}
