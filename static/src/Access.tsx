// A video's doors on its page (docs/admin-api.md "Who may watch"): who may watch it, whether retention spares
// it, and for a private one a signed link minted on demand and copied (each change is audited by the server).
import { useState } from 'react';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { endpoints, type Link, type VideoChange, type VideoDetail, type VideoRow } from './api';
import { keys, replaceRow } from './events';
import { VISIBILITIES, VISIBILITY_HELP } from './doors';
import { time } from './format';
import { Badge, copyText } from './ui';

export function Access({ video }: { video: VideoRow }) {
  const queryClient = useQueryClient();
  const change = useMutation({
    mutationFn: (fields: VideoChange) => endpoints.change(video.id, fields),
    onSuccess: (row) => {
      replaceRow(queryClient, row);
      queryClient.setQueryData<VideoDetail>(keys.video(row.id), (d) => d && { ...d, ...row, fetched_at: Date.now() });
    },
  });
  return (
    <div className="panel access" aria-label="who may watch">
      <div className="access-row">
        <h2>Who may watch</h2>
        <div className="segmented" role="group" aria-label="Visibility">
          {VISIBILITIES.map((v) => (
            <button
              key={v}
              type="button"
              title={VISIBILITY_HELP[v]}
              aria-pressed={video.visibility === v}
              disabled={change.isPending}
              onClick={() => video.visibility !== v && change.mutate({ visibility: v })}
            >
              {v}
            </button>
          ))}
        </div>
        <span className="sub">{VISIBILITY_HELP[video.visibility]}</span>
      </div>
      <div className="access-row">
        <label className="check">
          <input
            type="checkbox"
            checked={video.pinned}
            disabled={change.isPending}
            onChange={(e) => change.mutate({ pinned: e.target.checked })}
          />{' '}
          Pinned <span className="sub">(kept whatever RETENTION_DAYS says)</span>
        </label>
        {video.key && (
          <span className="sub">
            recorded with key <Badge kind="key">{video.key}</Badge>
          </span>
        )}
      </div>
      {video.visibility === 'private' && <LinkMaker videoId={video.id} />}
      {change.isError && (
        <p className="form-error" role="alert">
          {change.error.message}
        </p>
      )}
    </div>
  );
}

/** Mint a signed link (HLS master or DASH MPD) and copy it; the link is shown too, with when it expires. */
function LinkMaker({ videoId }: { videoId: number }) {
  const [copied, setCopied] = useState<boolean | null>(null);
  const mint = useMutation({
    mutationFn: (dash: boolean) => endpoints.mintLink(videoId, dash),
    onMutate: () => setCopied(null),
    onSuccess: async (link: Link) => setCopied(await copyText(link.url)),
  });
  return (
    <div className="access-row">
      <button type="button" className="small primary" onClick={() => mint.mutate(false)} disabled={mint.isPending}>
        Copy link
      </button>
      <button type="button" className="small" onClick={() => mint.mutate(true)} disabled={mint.isPending}>
        Copy DASH link
      </button>
      {mint.data && (
        <>
          <input className="link-url" aria-label="signed link" readOnly value={mint.data.url} onFocus={(e) => e.target.select()} />
          <span className="sub" role="status">
            {copied === false ? 'Select and copy it: the clipboard refused. ' : copied ? 'Copied. ' : ''}
            Plays until {time(mint.data.expires_at)}.
          </span>
        </>
      )}
      {mint.isError && (
        <span className="form-error" role="alert">
          {mint.error.message}
        </span>
      )}
    </div>
  );
}
