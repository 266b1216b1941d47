import { useEffect, useRef, useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { endpoints, type SystemInfo } from './api';
import { keys } from './events';
import { bytes, percent } from './format';
import { Badge, ErrorView, Loading } from './ui';

export function SystemPage() {
  const system = useQuery({ queryKey: keys.system, queryFn: endpoints.system });
  return (
    <section aria-labelledby="system-title">
      <div className="page-head">
        <h1 id="system-title">System</h1>
      </div>
      {system.isPending ? (
        <Loading what="system figures" />
      ) : system.isError ? (
        <ErrorView error={system.error} retry={() => void system.refetch()} />
      ) : (
        <SystemView info={system.data} />
      )}
    </section>
  );
}

function SystemView({ info }: { info: SystemInfo }) {
  const { disk, series } = info;
  // How full the file system is (the free space counts what MEDIA_ROOT can still write).
  const usedShare = disk.total ? (disk.total - disk.free) / disk.total : 0;
  return (
    <>
      <div className="cards">
        <div className="panel card">
          <h2>Disk ({disk.path_hint})</h2>
          <div
            className={`meter ${usedShare > 0.9 ? 'alarm' : usedShare > 0.8 ? 'warn' : ''}`}
            role="meter"
            aria-valuemin={0}
            aria-valuemax={100}
            aria-valuenow={Math.round(usedShare * 100)}
            aria-label="disk used"
          >
            <div style={{ width: `${usedShare * 100}%` }} />
          </div>
          <p>
            <strong>{bytes(disk.free)} free</strong> of {bytes(disk.total)} ({percent(usedShare)} full), {bytes(disk.used)} used
          </p>
        </div>
        <div className="panel card">
          <h2>Services</h2>
          <ul className="services">
            {Object.entries(info.services).map(([name, s]) => (
              <li key={name}>
                <span>
                  {name}
                  {s.kind ? ` (${s.kind})` : ''}
                </span>{' '}
                {s.ok ? <Badge kind="ok">up</Badge> : <Badge kind="alarm">down</Badge>}
                {s.error && <div className="form-error">{s.error}</div>}
              </li>
            ))}
          </ul>
        </div>
        <div className="panel card">
          <h2>Failures, last hour</h2>
          <p className={`big ${info.failures_last_hour ? 'level-alarm' : ''}`}>{info.failures_last_hour}</p>
        </div>
      </div>
      <div className="cards charts">
        <div className="panel">
          <h2>Segments per minute</h2>
          <Chart minutes={series.minutes} lines={[{ name: 'segments', values: series.segments_per_minute, kind: 'bars' }]} />
        </div>
        <div className="panel">
          <h2>Upload to playable (s)</h2>
          <Chart
            minutes={series.minutes}
            lines={[
              { name: 'p50', values: series.latency_p50, kind: 'line' },
              { name: 'p95', values: series.latency_p95, kind: 'line' },
            ]}
          />
        </div>
      </div>
    </>
  );
}

interface Line {
  name: string;
  values: (number | null)[];
  kind: 'line' | 'bars';
}

const H = 200;
const PAD = { left: 40, right: 10, top: 10, bottom: 24 };

/** A 60-minute chart drawn in SVG: bars or lines (a null is a gap), a y axis from 0 with 4 ticks. */
export function Chart({ minutes, lines }: { minutes: string[]; lines: Line[] }) {
  // Drawn at the width it is shown at, so its text stays readable from a phone to a wide screen.
  const ref = useRef<HTMLElement>(null);
  const [W, setW] = useState(600);
  useEffect(() => {
    const figure = ref.current;
    if (!figure) return;
    const observer = new ResizeObserver(([entry]) => setW(Math.max(240, Math.round(entry.contentRect.width))));
    observer.observe(figure);
    return () => observer.disconnect();
  }, []);
  const all = lines.flatMap((l) => l.values.filter((v): v is number => v !== null));
  const step = niceStep(Math.max(0, ...all) / 4);
  const max = step * 4;
  const n = Math.max(1, minutes.length);
  const x = (i: number) => PAD.left + ((i + 0.5) / n) * (W - PAD.left - PAD.right);
  const y = (v: number) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const ticks = [0, 1, 2, 3, 4].map((k) => step * k);
  const label = (iso: string | undefined) =>
    iso ? new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hour12: false }) : '';
  const summary = lines
    .map((l) => {
      const vals = l.values.filter((v): v is number => v !== null);
      return `${l.name}: last ${vals.length ? vals[vals.length - 1].toFixed(1) : 'none'}, max ${vals.length ? Math.max(...vals).toFixed(1) : 'none'}`;
    })
    .join('; ');
  return (
    <figure className="chart" ref={ref}>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary}>
        {ticks.map((t) => (
          <g key={t}>
            <line x1={PAD.left} x2={W - PAD.right} y1={y(t)} y2={y(t)} className="grid" />
            <text x={PAD.left - 6} y={y(t) + 4} textAnchor="end" className="axis">
              {Number.isInteger(t) ? t : t.toFixed(2).replace(/0$/, '')}
            </text>
          </g>
        ))}
        {[0, Math.floor(n / 2), n - 1].map((i, k) => (
          <text key={i} x={x(i)} y={H - 6} textAnchor={(['start', 'middle', 'end'] as const)[k]} className="axis">
            {label(minutes[i])}
          </text>
        ))}
        {lines.map((l, li) =>
          l.kind === 'bars' ? (
            <g key={l.name} className={`series-${li}`}>
              {l.values.map((v, i) =>
                v ? (
                  <rect
                    key={i}
                    x={x(i) - ((W - PAD.left - PAD.right) / n) * 0.4}
                    width={((W - PAD.left - PAD.right) / n) * 0.8}
                    y={y(v)}
                    height={y(0) - y(v)}
                  >
                    <title>{`${label(minutes[i])}: ${v}`}</title>
                  </rect>
                ) : null,
              )}
            </g>
          ) : (
            <g key={l.name} className={`series-${li}`}>
              <path d={path(l.values, x, y)} fill="none" />
              {l.values.map((v, i) =>
                v !== null ? (
                  <circle key={i} cx={x(i)} cy={y(v)} r={2.5}>
                    <title>{`${label(minutes[i])} ${l.name}: ${v.toFixed(2)} s`}</title>
                  </circle>
                ) : null,
              )}
            </g>
          ),
        )}
      </svg>
      <figcaption>
        {lines.map((l, li) => (
          <span key={l.name} className={`key series-${li}`}>
            {l.name}
          </span>
        ))}
        {all.length === 0 && <span className="sub">no data in the last hour</span>}
      </figcaption>
    </figure>
  );
}

function path(values: (number | null)[], x: (i: number) => number, y: (v: number) => number): string {
  let d = '';
  let pen = false;
  values.forEach((v, i) => {
    if (v === null) {
      pen = false;
      return;
    }
    d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  });
  return d;
}

/** A round tick step at least `v` (1, 2 or 5 times a power of ten; 0.25 at the least). */
export function niceStep(v: number): number {
  if (v <= 0.25) return 0.25;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
