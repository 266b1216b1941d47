import { useEffect, useState, type FormEvent } from 'react';
import { keepPreviousData, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Link, useSearchParams } from 'react-router-dom';
import { endpoints, type Filter, type VideoQuery, type VideoRow } from './api';
import { keys, removeRow, replaceRow } from './events';
import { age, clock, useNow } from './format';
import { tileAt, useStoryboard } from './storyboard';
import { VISIBILITY_HELP } from './doors';
import { Badge, ConfirmDialog, CopyButton, Empty, ErrorView, Health, Loading, TileView } from './ui';

const FILTERS: { value: Filter | ''; label: string }[] = [
  { value: '', label: 'All' },
  { value: 'live', label: 'Live' },
  { value: 'vod', label: 'VOD' },
  { value: 'failed', label: 'Failed' },
];

export function VideosPage() {
  const [params, setParams] = useSearchParams();
  const q = params.get('q') ?? '';
  const filter = (params.get('filter') ?? '') as Filter | '';
  const beforeParam = params.get('before');
  const query: VideoQuery = { q, filter, before: beforeParam ? Number(beforeParam) : null };
  // Earlier pages' cursors, so "Newer" goes back exactly where "Older" came from.
  const [cursors, setCursors] = useState<(number | null)[]>([]);
  const [search, setSearch] = useState(q);
  const list = useQuery({
    queryKey: keys.videoList(query),
    queryFn: () => endpoints.videos(query),
    placeholderData: keepPreviousData,
  });

  useEffect(() => setSearch(q), [q]);
  // Search as one types, once typing pauses.
  useEffect(() => {
    if (search === q) return;
    const t = setTimeout(() => update({ q: search }), 300);
    return () => clearTimeout(t);
  });

  function update(change: { q?: string; filter?: string; before?: number | null }, keepCursors = false) {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(change)) {
      if (v === '' || v === null || v === undefined) next.delete(k);
      else next.set(k, String(v));
    }
    if (!('before' in change)) next.delete('before');
    if (!keepCursors) setCursors([]);
    setParams(next);
  }

  const submit = (e: FormEvent) => {
    e.preventDefault();
    update({ q: search });
  };

  return (
    <section aria-labelledby="videos-title">
      <div className="page-head">
        <h1 id="videos-title">Videos</h1>
        <form className="toolbar" role="search" onSubmit={submit}>
          <label htmlFor="search" className="sr-only">
            Search titles
          </label>
          <input id="search" type="search" placeholder="Search titles" value={search} onChange={(e) => setSearch(e.target.value)} />
          <div className="segmented" role="group" aria-label="filter">
            {FILTERS.map((f) => (
              <button
                key={f.value}
                type="button"
                aria-pressed={filter === f.value}
                onClick={() => update({ filter: f.value })}
              >
                {f.label}
              </button>
            ))}
          </div>
        </form>
      </div>
      {list.isPending ? (
        <Loading what="videos" />
      ) : list.isError ? (
        <ErrorView error={list.error} retry={() => void list.refetch()} />
      ) : list.data.videos.length === 0 ? (
        <Empty>{q || filter ? 'No video matches.' : 'No videos yet. They appear here as soon as a phone starts recording.'}</Empty>
      ) : (
        <ul className="videos" aria-label="videos">
          {list.data.videos.map((v) => (
            <VideoItem key={v.id} video={v} />
          ))}
        </ul>
      )}
      <nav className="pager" aria-label="pages">
        <button
          type="button"
          disabled={query.before === null}
          onClick={() => {
            const prev = cursors[cursors.length - 1] ?? null;
            setCursors(cursors.slice(0, -1));
            update({ before: prev }, true);
          }}
        >
          ← Newer
        </button>
        <button
          type="button"
          disabled={!list.data?.next_before}
          onClick={() => {
            setCursors([...cursors, query.before]);
            update({ before: list.data?.next_before ?? null }, true);
          }}
        >
          Older →
        </button>
      </nav>
    </section>
  );
}

function Thumb({ video }: { video: VideoRow }) {
  const [hover, setHover] = useState<number | null>(null);
  const tiles = useStoryboard(video.storyboard_url, video.revision, hover !== null && video.thumbnail_url !== null);
  const duration = video.duration ?? 0;
  const tile = hover !== null && tiles.length ? tileAt(tiles, hover * duration) : null;
  return (
    <div
      className="thumb"
      onMouseMove={(e) => {
        const box = e.currentTarget.getBoundingClientRect();
        setHover(Math.min(0.999, Math.max(0, (e.clientX - box.left) / box.width)));
      }}
      onMouseLeave={() => setHover(null)}
    >
      {tile ? (
        <TileView tile={tile} width={128} />
      ) : video.thumbnail_url ? (
        <img src={video.thumbnail_url} alt="" width={128} height={72} loading="lazy" />
      ) : (
        <div className="no-thumb" aria-hidden="true">
          {video.type === 'LIVE' ? 'waiting' : 'no picture'}
        </div>
      )}
      {hover !== null && tile && <div className="scrub" style={{ left: `${hover * 100}%` }} />}
    </div>
  );
}

export function useVideoActions(video: VideoRow, onDeleted?: () => void) {
  const queryClient = useQueryClient();
  const apply = (row: VideoRow) => {
    replaceRow(queryClient, row);
    void queryClient.invalidateQueries({ queryKey: keys.video(row.id) });
  };
  const rename = useMutation({ mutationFn: (title: string) => endpoints.rename(video.id, title), onSuccess: apply });
  const end = useMutation({ mutationFn: () => endpoints.end(video.id), onSuccess: apply });
  const remove = useMutation({
    mutationFn: () => endpoints.remove(video.id),
    onSuccess: () => {
      removeRow(queryClient, video.id);
      queryClient.removeQueries({ queryKey: keys.video(video.id) });
      onDeleted?.();
    },
  });
  return { rename, end, remove };
}

export function RenameForm({ video, onDone }: { video: VideoRow; onDone: () => void }) {
  const [title, setTitle] = useState(video.title);
  const { rename } = useVideoActions(video);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    rename.mutate(title.trim(), { onSuccess: onDone });
  };
  return (
    <form className="rename" onSubmit={submit}>
      <label htmlFor={`title-${video.id}`} className="sr-only">
        New title
      </label>
      <input
        id={`title-${video.id}`}
        value={title}
        maxLength={200}
        autoFocus
        required
        onChange={(e) => setTitle(e.target.value)}
        onKeyDown={(e) => e.key === 'Escape' && onDone()}
      />
      <button type="submit" className="small primary" disabled={rename.isPending || !title.trim()}>
        Save
      </button>
      <button type="button" className="small" onClick={onDone}>
        Cancel
      </button>
      {rename.isError && (
        <span className="form-error" role="alert">
          {rename.error.message}
        </span>
      )}
    </form>
  );
}

/** Rename, end, delete (with its confirmation) and the playlist links: the row's and the video page's actions. */
export function VideoActions({ video, onRename, onDeleted }: { video: VideoRow; onRename: () => void; onDeleted?: () => void }) {
  const { end, remove } = useVideoActions(video, onDeleted);
  const [confirming, setConfirming] = useState(false);
  return (
    <div className="actions">
      <button type="button" className="small" onClick={onRename}>
        Rename
      </button>
      <button type="button" className="small danger" onClick={() => setConfirming(true)}>
        Delete
      </button>
      {video.visibility !== 'private' && (
        // A private video plays only through a signed link: its page's Copy link mints one.
        <>
          <CopyButton label="Copy MPD" path={video.mpd_url} />
          <CopyButton label="Copy M3U8" path={video.m3u8_url} />
        </>
      )}
      {video.type === 'LIVE' && (
        <button
          type="button"
          className="small"
          title="end this recording at its highest stored segment"
          onClick={() => end.mutate()}
          disabled={end.isPending}
        >
          End live
        </button>
      )}
      {(end.isError || remove.isError) && (
        <span className="form-error" role="alert">
          {(end.error ?? remove.error)?.message}
        </span>
      )}
      <ConfirmDialog
        open={confirming}
        title={`Delete “${video.title}”?`}
        confirm="Delete"
        busy={remove.isPending}
        onCancel={() => setConfirming(false)}
        onConfirm={() => remove.mutate(undefined, { onSettled: () => setConfirming(false) })}
      >
        <p>
          Video {video.id}, its {video.segment_count} segments and every file made from them are deleted for good. Players
          watching it stop.
        </p>
      </ConfirmDialog>
    </div>
  );
}

function VideoItem({ video }: { video: VideoRow }) {
  const [renaming, setRenaming] = useState(false);
  const now = useNow();
  return (
    <li className="video" data-video-id={video.id} aria-label={video.title}>
      <Link to={`/recording/${video.id}`} tabIndex={-1} aria-hidden="true" className="thumb-link">
        <Thumb video={video} />
      </Link>
      <div className="video-main">
        <div className="video-title">
          {renaming ? (
            <RenameForm video={video} onDone={() => setRenaming(false)} />
          ) : (
            <Link to={`/recording/${video.id}`} className="title">
              {video.title}
            </Link>
          )}
        </div>
        <div className="meta">
          <Badge kind={video.type}>{video.type}</Badge>
          <Badge kind={video.status} title="state">
            {video.status}
          </Badge>
          <span title="duration">{clock(video.duration)}</span>
          {video.segment_count >= 0 && (
            <span>
              {video.segment_count} segment{video.segment_count === 1 ? '' : 's'}
            </span>
          )}
          {video.segments_failed > 0 && <span className="level-alarm">{video.segments_failed} failed</span>}
          {video.visibility !== 'public' && (
            <Badge kind={video.visibility} title={VISIBILITY_HELP[video.visibility]}>
              {video.visibility}
            </Badge>
          )}
          {video.pinned && <Badge kind="pinned" title="kept whatever RETENTION_DAYS says">pinned</Badge>}
          {video.key && <span title="recorded with this key">key {video.key}</span>}
          <span title={video.created_at}>{age(video.created_at, now)}</span>
        </div>
        {video.type === 'LIVE' && video.health && <Health health={video.health} sinceMs={now - (video.fetched_at ?? now)} compact />}
        <VideoActions video={video} onRename={() => setRenaming(true)} />
      </div>
    </li>
  );
}
