// Small shared pieces: state views (loading, error, empty), badges, a confirmation dialog, a copy
// button, a storyboard tile and the ingest health of a live video.
import { useEffect, useRef, useState, type ReactNode } from 'react';
import type { IngestHealth } from './api';
import { seconds } from './format';
import type { Tile } from './storyboard';

export function Loading({ what }: { what: string }) {
  return (
    <p className="state" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" /> Loading {what}…
    </p>
  );
}

export function ErrorView({ error, retry }: { error: unknown; retry?: () => void }) {
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div className="state error" role="alert">
      <p>Could not load: {message}</p>
      {retry && (
        <button type="button" onClick={retry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="state empty">{children}</p>;
}

export function Badge({ kind, children, title }: { kind: string; children: ReactNode; title?: string }) {
  return (
    <span className={`badge badge-${kind.toLowerCase()}`} title={title}>
      {children}
    </span>
  );
}

/** A modal confirmation (<dialog>: focus is trapped, Escape cancels). */
export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  children: ReactNode;
  confirm: string;
  busy?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (props.open && !dialog.open) dialog.showModal();
    if (!props.open && dialog.open) dialog.close();
  }, [props.open]);
  return (
    <dialog ref={ref} className="dialog" aria-labelledby="dialog-title" onCancel={props.onCancel}>
      <h2 id="dialog-title">{props.title}</h2>
      <div>{props.children}</div>
      <div className="dialog-actions">
        <button type="button" onClick={props.onCancel} autoFocus>
          Cancel
        </button>
        <button type="button" className="danger" onClick={props.onConfirm} disabled={props.busy}>
          {props.confirm}
        </button>
      </div>
    </dialog>
  );
}

export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (an insecure origin, a headless browser): the old way.
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    return ok;
  }
}

/** Copy an absolute link (a path on this origin, or a whole URL) or a `text` to the clipboard and say so. */
export function CopyButton({ label, path, text }: { label: string; path?: string; text?: string }) {
  const [done, setDone] = useState<'' | 'copied' | 'failed'>('');
  const url = text ?? new URL(path ?? '', window.location.origin).toString();
  useEffect(() => {
    if (!done) return;
    const t = setTimeout(() => setDone(''), 2000);
    return () => clearTimeout(t);
  }, [done]);
  return (
    <button
      type="button"
      className="small"
      title={url}
      data-url={url}
      onClick={() => void copyText(url).then((ok) => setDone(ok ? 'copied' : 'failed'))}
    >
      {done === 'copied' ? 'Copied' : done === 'failed' ? 'Copy failed' : label}
    </button>
  );
}

/** One storyboard picture, scaled to `width` pixels. */
export function TileView({ tile, width }: { tile: Tile; width: number }) {
  const scale = width / tile.w;
  return (
    <div className="tile" style={{ width, height: Math.round(tile.h * scale) }}>
      <div
        style={{
          width: tile.w,
          height: tile.h,
          backgroundImage: `url("${tile.url}")`,
          backgroundPosition: `-${tile.x}px -${tile.y}px`,
          transform: `scale(${scale})`,
          transformOrigin: '0 0',
        }}
      />
    </div>
  );
}

/** An error text: its first line in full view, the rest (ffmpeg's stderr tail) one click away. */
export function ErrorText({ text }: { text: string }) {
  const short = text.length > 140 ? `${text.slice(0, 140)}…` : null;
  if (!short) return <div className="seg-error">{text}</div>;
  return (
    <details className="seg-error">
      <summary>{short}</summary>
      {text}
    </details>
  );
}

const LEVEL = { ok: 'ok', warn: 'warn', alarm: 'alarm' } as const;

/**
 * A live video's ingest health. `sinceMs` is how long ago the figures were fetched, so the last
 * segment's age keeps counting between events.
 */
export function Health({ health, sinceMs, compact = false }: { health: IngestHealth; sinceMs: number; compact?: boolean }) {
  const lastAge = health.last_segment_age === null ? null : health.last_segment_age + sinceMs / 1000;
  const ratio = health.upload_ratio;
  const missing = health.missing_count ?? health.missing.length;
  const problems = missing + health.duplicates + health.out_of_order;
  const probe = health.probe;
  return (
    <dl className={`health ${compact ? 'compact' : ''}`} aria-label="ingest health">
      <div>
        <dt>Last segment</dt>
        <dd>
          {seconds(lastAge)} ago {health.stalled && <Badge kind="alarm">stalled</Badge>}
        </dd>
      </div>
      <div>
        <dt>Upload ratio</dt>
        <dd>
          <span className={`level-${LEVEL[ratio.level] ?? 'ok'}`} title="upload time / segment duration (warn ≥ 0.9, alarm ≥ 1.0)">
            {ratio.last?.toFixed(2) ?? '–'} (max {ratio.max?.toFixed(2) ?? '–'})
          </span>
          {ratio.level !== 'ok' && <Badge kind={ratio.level}>{ratio.level}</Badge>}
        </dd>
      </div>
      <div>
        <dt>Drift</dt>
        <dd>{seconds(health.drift)}</dd>
      </div>
      <div>
        <dt>Missing / dup / order</dt>
        <dd className={problems ? 'level-warn' : undefined}>
          <span title={health.missing.length ? `missing: ${health.missing.join(', ')}${missing > health.missing.length ? ', …' : ''}` : undefined}>
            {missing}
          </span>{' '}
          /{' '}
          {health.duplicates} / {health.out_of_order}
        </dd>
      </div>
      {!compact && (
        <div>
          <dt>Probe</dt>
          <dd>
            {probe
              ? `${probe.width}×${probe.height} ${probe.fps} fps, keyframe ${seconds(probe.keyframe_interval)}, ${probe.audio ? 'audio' : 'no audio'}`
              : '–'}
          </dd>
        </div>
      )}
    </dl>
  );
}
