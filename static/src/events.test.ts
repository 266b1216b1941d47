import { describe, expect, it, vi } from 'vitest';
import { QueryClient } from '@tanstack/react-query';
import type { EventKind, VideoDetail, VideoPage, VideoRow, Workers } from './api';
import { applyEvent, Coalescer, KINDS, keys, matchesFilter, replaceRow, type AdminEvent, type Refresher } from './events';
import doc from '../../server/web/api/openapi.json';
import { parseStoryboard, tileAt } from './storyboard';

function row(id: number, over: Partial<VideoRow> = {}): VideoRow {
  return {
    id, title: `v${id}`, type: 'LIVE', status: 'UPLOADING', created_at: '2026-01-01T00:00:00Z', ended_at: null,
    finished_at: null, duration: 3, segment_count: 1, segments_failed: 0, revision: 1, thumbnail_url: null,
    storyboard_url: '/video_files/1/storyboard.vtt', mpd_url: '', m3u8_url: '', health: null, visibility: 'public',
    pinned: false, key: null, ...over,
  };
}

function event(kind: EventKind, over: Partial<AdminEvent> = {}): AdminEvent {
  return { id: 1, at: '', kind, video_id: 7, segment_id: 0, worker_id: null, data: {}, ...over };
}

function spy(): Refresher & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    video: (id) => calls.push(`video:${id}`),
    forget: (id) => calls.push(`forget:${id}`),
    firstPages: () => calls.push('firstPages'),
    workers: () => calls.push('workers'),
    system: () => calls.push('system'),
    keys: () => calls.push('keys'),
  };
}

const ALL = { q: '', filter: '' as const, before: null };
const LIVE = { q: '', filter: 'live' as const, before: null };

describe('applyEvent', () => {
  it('fetches only the video an event names, and only when it is on screen', () => {
    const client = new QueryClient();
    client.setQueryData<VideoPage>(keys.videoList(ALL), { videos: [row(7)], next_before: null });
    const r = spy();
    applyEvent(client, event('segment.packaged'), r);
    applyEvent(client, event('segment.queued', { video_id: 99 }), r);
    expect(r.calls).toEqual(['system', 'keys', 'video:7']);
  });

  it('a new video refreshes the first pages; a deleted one leaves every page and is never fetched', () => {
    const client = new QueryClient();
    client.setQueryData<VideoPage>(keys.videoList(ALL), { videos: [row(7), row(6)], next_before: null });
    client.setQueryData(keys.video(7), { ...row(7), renditions: [], segments: [] });
    const r = spy();
    applyEvent(client, event('video.created', { video_id: 8 }), r);
    applyEvent(client, event('video.deleted'), r);
    expect(r.calls).toEqual(['firstPages', 'keys', 'forget:7', 'system', 'keys']);
    expect(client.getQueryData<VideoPage>(keys.videoList(ALL))?.videos.map((v) => v.id)).toEqual([6]);
    expect(client.getQueryData<VideoDetail>(keys.video(7))?.deleted).toBe(true);
  });

  it("a segment's event moves it and its rungs at once, before the refetch", () => {
    const client = new QueryClient();
    const segment = { segment_id: 3, state: 'RUNNING', rungs: [{ name: 'HIGH', state: 'RUNNING' }], attempts: [] };
    client.setQueryData(keys.video(7), { ...row(7), renditions: [], segments: [segment] } as unknown as VideoDetail);
    const r = spy();
    applyEvent(client, event('segment.packaged', { segment_id: 3 }), r);
    const after = client.getQueryData<VideoDetail>(keys.video(7))?.segments[0];
    expect([after?.state, after?.rungs[0].state]).toEqual(['PACKAGED', 'PACKAGED']);
    expect(r.calls).toEqual(['system', 'keys', 'video:7']);
  });

  it('progress is written into the cache without any fetch', () => {
    const client = new QueryClient();
    const detail = { ...row(7), renditions: [], segments: [{ segment_id: 0, attempts: [{ id: 3, progress: 0.1 }] }] };
    client.setQueryData(keys.video(7), detail as unknown as VideoDetail);
    client.setQueryData(keys.workers, { workers: [{ attempts: [{ id: 3, progress: 0.1 }] }] } as unknown as Workers);
    const r = spy();
    applyEvent(client, event('attempt.progress', { data: { attempt: 3, progress: 0.6 } }), r);
    expect(r.calls).toEqual([]);
    expect(client.getQueryData<VideoDetail>(keys.video(7))?.segments[0].attempts[0].progress).toBe(0.6);
    expect(client.getQueryData<Workers>(keys.workers)?.workers[0].attempts[0].progress).toBe(0.6);
  });

  it('listens for every kind the server sends (server/domain/eventlog.py KINDS, in its API document)', () => {
    const documented: string[] = doc.components.schemas.EventKind.enum;
    expect([...KINDS].sort()).toEqual([...documented].sort());
  });

  it('a stalled video, and any other change of one on screen, refreshes it at once', () => {
    const client = new QueryClient();
    client.setQueryData<VideoPage>(keys.videoList(ALL), { videos: [row(7)], next_before: null });
    const r = spy();
    for (const kind of ['video.stalled', 'video.uploading', 'video.ended', 'video.renamed', 'video.finished'] as const) {
      applyEvent(client, event(kind, { segment_id: null }), r);
    }
    expect(r.calls).toEqual(['video:7', 'video:7', 'video:7', 'keys', 'video:7', 'video:7']); // an end: its key's live count
  });

  it('a token minted or revoked refreshes the workers', () => {
    const r = spy();
    applyEvent(new QueryClient(), event('worker.token_minted', { video_id: null }), r);
    applyEvent(new QueryClient(), event('worker.revoked', { video_id: null }), r);
    expect(r.calls).toEqual(['workers', 'workers']);
  });

  it('attempt and worker events refresh the workers', () => {
    const r = spy();
    applyEvent(new QueryClient(), event('worker.stopped', { video_id: null }), r);
    applyEvent(new QueryClient(), event('attempt.failed', { video_id: null }), r);
    expect(r.calls).toEqual(['workers', 'workers']);
  });
});

describe('replaceRow', () => {
  it('replaces a row where it is shown, never with an older revision, and drops it where it no longer fits', () => {
    const client = new QueryClient();
    client.setQueryData<VideoPage>(keys.videoList(ALL), { videos: [row(7, { revision: 5 })], next_before: null });
    client.setQueryData<VideoPage>(keys.videoList(LIVE), { videos: [row(7, { revision: 5 })], next_before: null });
    replaceRow(client, row(7, { revision: 4, title: 'old' }));
    expect(client.getQueryData<VideoPage>(keys.videoList(ALL))?.videos[0].title).toBe('v7');
    replaceRow(client, row(7, { revision: 6, type: 'VOD', title: 'new' }));
    expect(client.getQueryData<VideoPage>(keys.videoList(ALL))?.videos[0].title).toBe('new');
    expect(client.getQueryData<VideoPage>(keys.videoList(LIVE))?.videos).toEqual([]);
  });

  it('matches the filters', () => {
    expect(matchesFilter(row(1, { segments_failed: 1 }), 'failed')).toBe(true);
    expect(matchesFilter(row(1), 'failed')).toBe(false);
    expect(matchesFilter(row(1), 'vod')).toBe(false);
  });
});

describe('Coalescer', () => {
  it('folds a burst into one run plus one after it', async () => {
    vi.useFakeTimers();
    const c = new Coalescer(100);
    let runs = 0;
    let release: () => void = () => {};
    const task = () => {
      runs++;
      return new Promise<void>((resolve) => (release = resolve));
    };
    for (let i = 0; i < 10; i++) c.request('k', task);
    await vi.advanceTimersByTimeAsync(100);
    expect(runs).toBe(1);
    for (let i = 0; i < 10; i++) c.request('k', task);
    release();
    await vi.advanceTimersByTimeAsync(100);
    expect(runs).toBe(2);
    release();
    await vi.advanceTimersByTimeAsync(1000);
    expect(runs).toBe(2);
    vi.useRealTimers();
  });
});

describe('storyboard', () => {
  it('parses cues and resolves pictures against the VTT', () => {
    const vtt = 'WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nstoryboard/000000.jpg#xywh=0,0,160,90\n\n' +
      '00:00:01.000 --> 00:00:02.500\nstoryboard/000000.jpg#xywh=160,0,160,90\n';
    const tiles = parseStoryboard(vtt, '/video_files/7/storyboard.vtt', 'http://x');
    expect(tiles).toEqual([
      { start: 0, end: 1, url: '/video_files/7/storyboard/000000.jpg', x: 0, y: 0, w: 160, h: 90 },
      { start: 1, end: 2.5, url: '/video_files/7/storyboard/000000.jpg', x: 160, y: 0, w: 160, h: 90 },
    ]);
    expect(tileAt(tiles, 1.2)?.x).toBe(160);
    expect(tileAt(tiles, 99)?.x).toBe(160);
  });
});
