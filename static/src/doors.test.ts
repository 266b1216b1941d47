import { describe, expect, it } from 'vitest';
import { QueryClient, type InfiniteData } from '@tanstack/react-query';
import type { AuditPage, EventKind } from './api';
import { applyEvent, type AdminEvent, type Refresher } from './events';
import {
  AUDIT_VERBS,
  auditEntry,
  auditKey,
  describe as say,
  parseMaxLive,
  parseQuota,
  prependAudit,
  quotaShare,
  VISIBILITIES,
  verb,
} from './doors';
import doc from '../../server/web/api/openapi.json';

function event(kind: EventKind, data: Record<string, unknown>, over: Partial<AdminEvent> = {}): AdminEvent {
  return { id: 10, at: '2026-01-01T12:00:00.000000Z', kind, video_id: 7, segment_id: null, worker_id: null, data, ...over };
}

const quiet: Refresher = { video: () => {}, forget: () => {}, firstPages: () => {}, workers: () => {}, system: () => {}, keys: () => {} };

function cachedAudit(client: QueryClient, ...ids: number[]): void {
  const page: AuditPage = {
    events: ids.map((id) => ({ id, at: '', kind: 'admin.login', by: 'root', video_id: null, key: null, data: {} })),
    next_before: 1,
  };
  client.setQueryData<InfiniteData<AuditPage, number | null>>(auditKey, { pages: [page], pageParams: [null] });
}

function auditIds(client: QueryClient): number[] {
  return client.getQueryData<InfiniteData<AuditPage, number | null>>(auditKey)?.pages[0].events.map((e) => e.id) ?? [];
}

describe('the audit trail', () => {
  it('is the events an admin made: the server rule (audit_entry), `by` taken out of the data', () => {
    expect(auditEntry(event('video.visibility', { visibility: 'private', by: 'root' }))).toEqual({
      id: 10, at: '2026-01-01T12:00:00.000000Z', kind: 'video.visibility', by: 'root', video_id: 7, key: null,
      data: { visibility: 'private' },
    });
    expect(auditEntry(event('key.minted', { name: 'phone', by: 'cli' }, { video_id: null }))?.key).toBe('phone');
    // A deletion by the reaper or retention carries a reason, no `by`: not an admin's action.
    expect(auditEntry(event('video.deleted', { reason: 'abandoned before its first segment' }))).toBeNull();
    expect(auditEntry(event('video.deleted', { by: 'root' }))?.kind).toBe('video.deleted');
    expect(auditEntry(event('segment.packaged', { by: 'root' }))).toBeNull();
  });

  it('names exactly the kinds the API document audits', () => {
    expect(Object.keys(AUDIT_VERBS).sort()).toEqual([...doc.components.schemas.AuditKind.enum].sort());
    expect(VISIBILITIES).toEqual(doc.components.schemas.Visibility.enum);
  });

  it('arrives on top of the cached newest page, once, and only when an admin acted', () => {
    const client = new QueryClient();
    cachedAudit(client, 8, 5);
    applyEvent(client, event('video.pinned', { pinned: true, by: 'root' }, { id: 9 }), quiet);
    applyEvent(client, event('video.pinned', { pinned: true, by: 'root' }, { id: 9 }), quiet); // a resumed stream repeats nothing
    applyEvent(client, event('video.renamed', { title: 'x', by: 'root' }, { id: 12 }), quiet);
    applyEvent(client, event('video.deleted', { reason: 'retention' }, { id: 13 }), quiet);
    applyEvent(client, event('video.link', { by: 'root', expires: 1, file: 'master.m3u8' }, { id: 6 }), quiet);
    expect(auditIds(client)).toEqual([12, 9, 8, 6, 5]);
  });

  it('is not made up when the page is not cached (it is fetched when opened)', () => {
    const client = new QueryClient();
    prependAudit(client, auditEntry(event('admin.login', { by: 'root' }))!);
    expect(client.getQueryData(auditKey)).toBeUndefined();
  });

  it('says what each action did', () => {
    const entry = (kind: EventKind, data: Record<string, unknown>) => auditEntry(event(kind, { ...data, by: 'root' }))!;
    expect(say(entry('video.retried', { segments: [0, 2] }))).toBe('segments 0, 2');
    expect(say(entry('video.retried', { segments: [3] }))).toBe('segment 3');
    expect([verb(entry('video.pinned', { pinned: false })), say(entry('video.pinned', { pinned: false }))]).toEqual(['unpinned', '']);
    expect(verb(entry('video.pinned', { pinned: true }))).toBe('pinned');
    expect(verb(entry('key.revoked', { name: 'k' }))).toBe('revoked key');
    expect(say(entry('video.renamed', { title: 'Talk' }))).toBe('to “Talk”');
    expect(say(entry('key.minted', { name: 'k', max_live: 2, quota_bytes: 5e9 }))).toBe('at most 2 live, quota 5.0 GB');
    expect(say(entry('key.minted', { name: 'k', max_live: null, quota_bytes: null }))).toBe('');
    expect(say(entry('admin.login', { address: '10.0.0.1' }))).toBe('from 10.0.0.1');
    expect(say(entry('video.link', { file: 'manifest.mpd', expires: 1767268800 }))).toMatch(/^DASH, until /);
  });
});

describe('the key form', () => {
  it('reads a live cap: empty is none, else a whole number from 1 to 10000', () => {
    expect(parseMaxLive(' ')).toBeNull();
    expect(parseMaxLive('3')).toBe(3);
    for (const bad of ['0', '1.5', '-1', 'x', '10001']) expect(() => parseMaxLive(bad)).toThrow(/max live/);
  });

  it('reads a quota in decimal GB as bytes: empty is none', () => {
    expect(parseQuota('')).toBeNull();
    expect(parseQuota('10')).toBe(10_000_000_000);
    expect(parseQuota('0.5')).toBe(500_000_000);
    expect(parseQuota('.25')).toBe(250_000_000);
    for (const bad of ['0', '-1', '1e3', 'ten', '1,5', '5000000000']) expect(() => parseQuota(bad)).toThrow(/quota/);
  });

  it('shows how full a key is against its quota', () => {
    expect(quotaShare(5, null)).toBeNull();
    expect(quotaShare(250, 1000)).toBe(0.25);
    expect(quotaShare(2000, 1000)).toBe(1);
  });
});
