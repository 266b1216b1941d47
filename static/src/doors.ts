// The doors in the dashboard (docs/admin-api.md "Recording keys", "Who may watch", "Audit"): what each
// visibility and audit kind means, an event from the stream as an audit entry, and the key form's parsing.
// The Records are keyed by the generated API types, so a value the server adds or drops fails tsc here.
import type { InfiniteData, QueryClient } from '@tanstack/react-query';
import type { AdminEvent, AuditEntry, AuditKind, AuditPage, Visibility } from './api';
import { bytes, time } from './format';

export const auditKey = ['audit'] as const;
export const keysKey = ['keys'] as const;

/** Every visibility and what it means, in the order the controls show them. */
export const VISIBILITY_HELP: Record<Visibility, string> = {
  public: 'listed in the app, playable by anyone',
  unlisted: 'not listed, playable by anyone who has its URL',
  private: 'playable only through a signed link',
};
export const VISIBILITIES = Object.keys(VISIBILITY_HELP) as Visibility[];

/** What each audited kind did, as a verb phrase (the details are `describe`'s). */
export const AUDIT_VERBS: Record<AuditKind, string> = {
  'admin.login': 'logged in',
  'key.minted': 'minted key',
  'key.revoked': 'revoked key',
  'video.visibility': 'set visibility',
  'video.pinned': 'pinned',
  'video.link': 'minted a link',
  'video.retried': 'retried',
  'video.renamed': 'renamed',
  'video.deleted': 'deleted',
};

export function isAuditKind(kind: string): kind is AuditKind {
  return Object.hasOwn(AUDIT_VERBS, kind);
}

/**
 * The audit entry an event of the stream is, or null when it is no admin's action: the server's rule
 * (server/web/admin_views.py audit_entry): an audited kind whose data carries `by` (a rename or a delete
 * by the reaper or retention carries a reason instead).
 */
export function auditEntry(ev: AdminEvent): AuditEntry | null {
  if (!isAuditKind(ev.kind)) return null;
  const { by, ...data } = ev.data ?? {};
  if (typeof by !== 'string') return null;
  const key = ev.kind.startsWith('key.') && typeof data.name === 'string' ? data.name : null;
  return { id: ev.id, at: ev.at, kind: ev.kind, by, video_id: ev.video_id, key, data };
}

/** What the entry did: its kind's verb (a pin's says which way). */
export function verb(entry: AuditEntry): string {
  if (entry.kind === 'video.pinned') return entry.data.pinned ? 'pinned' : 'unpinned';
  return AUDIT_VERBS[entry.kind];
}

/** The entry's details in words ("private", "segments 0, 2", "until 12:00:00"). */
export function describe(entry: AuditEntry): string {
  const d = entry.data;
  switch (entry.kind) {
    case 'admin.login':
      return d.address ? `from ${String(d.address)}` : '';
    case 'key.minted': {
      const limits = [
        d.max_live ? `at most ${String(d.max_live)} live` : null,
        typeof d.quota_bytes === 'number' ? `quota ${bytes(d.quota_bytes)}` : null,
      ].filter(Boolean);
      return limits.join(', ');
    }
    case 'video.visibility':
      return String(d.visibility ?? '');
    case 'video.link':
      return `${d.file === 'manifest.mpd' ? 'DASH' : 'HLS'}, until ${typeof d.expires === 'number' ? time(new Date(d.expires * 1000).toISOString()) : '?'}`;
    case 'video.retried':
      return Array.isArray(d.segments) ? `segment${d.segments.length === 1 ? '' : 's'} ${d.segments.join(', ')}` : '';
    case 'video.renamed':
      return `to “${String(d.title ?? '')}”`;
    default:
      return '';
  }
}

/** Put a new entry on top of the cached newest audit page (once, newest first), so the list moves without a fetch. */
export function prependAudit(client: QueryClient, entry: AuditEntry): void {
  client.setQueryData<InfiniteData<AuditPage, number | null>>(auditKey, (cached) => {
    const first = cached?.pages[0];
    if (!cached || !first || first.events.some((e) => e.id === entry.id)) return cached;
    const events = [...first.events, entry].sort((a, b) => b.id - a.id);
    return { ...cached, pages: [{ ...first, events }, ...cached.pages.slice(1)] };
  });
}

export const MAX_LIVE = 10000;
export const GB = 1e9;

/** The key form's "at most N live" field: '' is no cap (null); else a whole number from 1 to MAX_LIVE. */
export function parseMaxLive(text: string): number | null {
  const t = text.trim();
  if (t === '') return null;
  if (!/^[0-9]+$/.test(t) || Number(t) < 1 || Number(t) > MAX_LIVE) throw new Error(`max live: a whole number from 1 to ${MAX_LIVE}, or empty`);
  return Number(t);
}

/** The key form's quota in GB (decimal, 1 GB = 10^9 bytes): '' is no quota (null); else bytes, at least 1. */
export function parseQuota(text: string): number | null {
  const t = text.trim();
  if (t === '') return null;
  const gb = Number(t);
  if (!/^[0-9]*\.?[0-9]+$/.test(t) || !Number.isFinite(gb) || Math.round(gb * GB) < 1 || gb > 4e9) {
    throw new Error('quota: a number of GB above 0, or empty');
  }
  return Math.round(gb * GB);
}

/** How full a key is: used/quota as 0..1 (null without a quota), for its meter. */
export function quotaShare(used: number, quota: number | null): number | null {
  return quota ? Math.min(1, used / quota) : null;
}
