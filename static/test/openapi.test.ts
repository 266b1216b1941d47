// src/openapi.gen.ts is what `npm run gen:api` writes from the server's API document: when the document
// changes without it (or it is edited by hand), this fails and says how to regenerate it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..'); // static/

describe('the generated API types', () => {
  it('are what server/web/api/openapi.json generates (npm run gen:api)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'openapi-gen-'));
    try {
      const fresh = join(dir, 'openapi.gen.ts');
      const cli = join(root, 'node_modules', 'openapi-typescript', 'bin', 'cli.js');
      execFileSync(process.execPath, [cli, '../server/web/api/openapi.json', '--output', fresh], { cwd: root, stdio: 'pipe' });
      const committed = readFileSync(join(root, 'src', 'openapi.gen.ts'), 'utf8');
      expect(committed === readFileSync(fresh, 'utf8'), 'src/openapi.gen.ts is stale: run `npm run gen:api` in static/').toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
