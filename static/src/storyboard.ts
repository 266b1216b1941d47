// The server's WebVTT storyboard (`storyboard/NNNNNN.jpg#xywh=x,y,w,h` per cue), parsed for
// scrubbing previews: the list's thumbnails and the player's seek bar.
import { useQuery } from '@tanstack/react-query';

export interface Tile {
  start: number;
  end: number;
  url: string;
  x: number;
  y: number;
  w: number;
  h: number;
}

function parseTime(t: string): number {
  const parts = t.trim().split(':').map(Number);
  return parts.reduce((acc, p) => acc * 60 + p, 0);
}

/** Parse a storyboard VTT; image URLs are resolved against the VTT's own URL. */
export function parseStoryboard(text: string, vttUrl: string, origin = window.location.origin): Tile[] {
  const tiles: Tile[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*([\d:.]+)\s+-->\s+([\d:.]+)/.exec(lines[i]);
    const target = lines[i + 1]?.trim();
    if (!m || !target) continue;
    const hash = /#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(target);
    if (!hash) continue;
    const url = new URL(target.slice(0, hash.index), new URL(vttUrl, origin)).pathname;
    tiles.push({
      start: parseTime(m[1]),
      end: parseTime(m[2]),
      url,
      x: Number(hash[1]),
      y: Number(hash[2]),
      w: Number(hash[3]),
      h: Number(hash[4]),
    });
  }
  return tiles;
}

/** The tile showing time `t` (the last one past the end). */
export function tileAt(tiles: Tile[], t: number): Tile | null {
  if (!tiles.length) return null;
  return tiles.find((tile) => t >= tile.start && t < tile.end) ?? (t < tiles[0].start ? tiles[0] : tiles[tiles.length - 1]);
}

/** A video's storyboard, fetched when `enabled` and again when the video's revision moves. */
export function useStoryboard(url: string | null, revision: number, enabled: boolean): Tile[] {
  const query = useQuery({
    queryKey: ['storyboard', url, revision],
    enabled: enabled && url !== null,
    staleTime: Infinity,
    queryFn: async () => {
      const response = await fetch(url as string, { credentials: 'same-origin' });
      if (!response.ok) return [];
      return parseStoryboard(await response.text(), url as string);
    },
  });
  return query.data ?? [];
}
