// Recording keys (docs/admin-api.md "Recording keys"): mint one (its key shown once, with the URL to type into
// the Android app), see each key's live videos and the bytes its videos hold against its quota, revoke one.
import { useState, type FormEvent } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { endpoints, type KeyRow, type MintedKey, type Visibility } from './api';
import { keys } from './events';
import { parseMaxLive, parseQuota, quotaShare, VISIBILITIES, VISIBILITY_HELP } from './doors';
import { age, bytes, percent, useNow } from './format';
import { Badge, ConfirmDialog, CopyButton, Empty, ErrorView, Loading } from './ui';

export function KeysPage() {
  const list = useQuery({ queryKey: keys.keys, queryFn: endpoints.keys });
  const [minted, setMinted] = useState<MintedKey | null>(null);
  const now = useNow(5000);
  return (
    <section aria-labelledby="keys-title">
      <div className="page-head">
        <h1 id="keys-title">Recording keys</h1>
      </div>
      <div className="columns">
        <div className="panel">
          <h2>Keys</h2>
          {list.isPending ? (
            <Loading what="keys" />
          ) : list.isError ? (
            <ErrorView error={list.error} retry={() => void list.refetch()} />
          ) : list.data.keys.length === 0 ? (
            <Empty>No key yet. With RECORDING=keys a phone records only through a key&apos;s URL.</Empty>
          ) : (
            <KeyTable rows={list.data.keys} now={now} />
          )}
        </div>
        <div className="side">
          {minted && <MintedPanel minted={minted} onDone={() => setMinted(null)} />}
          <NewKeyForm onMinted={setMinted} />
        </div>
      </div>
    </section>
  );
}

function KeyTable({ rows, now }: { rows: KeyRow[]; now: number }) {
  return (
    <div className="table-wrap">
      <table className="keys">
        <thead>
          <tr>
            <th scope="col">Key</th>
            <th scope="col">Live</th>
            <th scope="col">Storage</th>
            <th scope="col">New videos</th>
            <th scope="col">Created</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((k) => (
            <KeyLine key={k.name} row={k} now={now} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

function KeyLine({ row: k, now }: { row: KeyRow; now: number }) {
  const queryClient = useQueryClient();
  const [confirming, setConfirming] = useState(false);
  const revoke = useMutation({
    mutationFn: () => endpoints.revokeKey(k.name),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: keys.keys }),
    onSettled: () => setConfirming(false),
  });
  const share = quotaShare(k.used_bytes, k.quota_bytes);
  const level = share === null ? '' : share >= 0.95 ? 'alarm' : share >= 0.8 ? 'warn' : '';
  return (
    <tr data-key={k.name} className={k.revoked_at ? 'dead' : ''}>
      <th scope="row">
        <div>{k.name}</div>
        {k.revoked_at && (
          <div className="sub">
            <Badge kind="alarm">revoked</Badge> {age(k.revoked_at, now)}
          </div>
        )}
      </th>
      <td data-live={k.live}>
        {k.live}
        {k.max_live !== null && <span className="sub"> / {k.max_live}</span>}
      </td>
      <td className="storage-cell">
        {bytes(k.used_bytes)}
        {k.quota_bytes !== null && share !== null ? (
          <>
            <span className="sub"> of {bytes(k.quota_bytes)} ({percent(share)})</span>
            <div className={`meter ${level}`} role="meter" aria-valuemin={0} aria-valuemax={1} aria-valuenow={share} aria-label={`${k.name} storage used`}>
              <div style={{ width: `${share * 100}%` }} />
            </div>
          </>
        ) : (
          <span className="sub"> (no quota)</span>
        )}
      </td>
      <td>
        <Badge kind={k.visibility} title={VISIBILITY_HELP[k.visibility]}>
          {k.visibility}
        </Badge>
      </td>
      <td title={k.created_at}>
        {age(k.created_at, now)}
        {k.created_by && <div className="sub">by {k.created_by}</div>}
      </td>
      <td>
        {!k.revoked_at && (
          <button type="button" className="small danger" onClick={() => setConfirming(true)} aria-label={`Revoke ${k.name}`}>
            Revoke
          </button>
        )}
        {revoke.isError && <span className="form-error">{revoke.error.message}</span>}
        <ConfirmDialog
          open={confirming}
          title={`Revoke the key “${k.name}”?`}
          confirm="Revoke"
          busy={revoke.isPending}
          onCancel={() => setConfirming(false)}
          onConfirm={() => revoke.mutate()}
        >
          <p>
            A phone using it is refused from its next request on, and its {k.live} live video{k.live === 1 ? '' : 's'} end
            {k.live === 1 ? 's' : ''} as an admin&apos;s end does. Its videos stay. This cannot be undone; the name stays taken.
          </p>
        </ConfirmDialog>
      </td>
    </tr>
  );
}

function NewKeyForm({ onMinted }: { onMinted: (key: MintedKey) => void }) {
  const queryClient = useQueryClient();
  const [name, setName] = useState('');
  const [maxLive, setMaxLive] = useState('');
  const [quota, setQuota] = useState('');
  const [visibility, setVisibility] = useState<Visibility>('public');
  const [problem, setProblem] = useState<string | null>(null);
  const mint = useMutation({
    mutationFn: endpoints.mintKey,
    onSuccess: (minted) => {
      onMinted(minted);
      setName('');
      setMaxLive('');
      setQuota('');
      void queryClient.invalidateQueries({ queryKey: keys.keys });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    try {
      mint.mutate({ name: name.trim(), max_live: parseMaxLive(maxLive), quota_bytes: parseQuota(quota), visibility });
      setProblem(null);
    } catch (err) {
      setProblem((err as Error).message);
    }
  };
  return (
    <form className="panel form" onSubmit={submit} aria-labelledby="new-key-title">
      <h2 id="new-key-title">New key</h2>
      <label htmlFor="key-name">Name</label>
      <input id="key-name" value={name} onChange={(e) => setName(e.target.value)} required maxLength={64} placeholder="phone-1" />
      <label htmlFor="key-max-live">Live videos at once</label>
      <input id="key-max-live" inputMode="numeric" value={maxLive} onChange={(e) => setMaxLive(e.target.value)} placeholder="no cap" />
      <label htmlFor="key-quota">Quota (GB)</label>
      <input id="key-quota" inputMode="decimal" value={quota} onChange={(e) => setQuota(e.target.value)} placeholder="no quota" />
      <label htmlFor="key-visibility">Its new videos are</label>
      <select id="key-visibility" value={visibility} onChange={(e) => setVisibility(e.target.value as Visibility)}>
        {VISIBILITIES.map((v) => (
          <option key={v} value={v}>
            {v}: {VISIBILITY_HELP[v]}
          </option>
        ))}
      </select>
      <button type="submit" className="primary" disabled={mint.isPending || !name.trim()}>
        Create key
      </button>
      {(problem || mint.isError) && (
        <p className="form-error" role="alert">
          {problem ?? mint.error?.message}
        </p>
      )}
    </form>
  );
}

/** The key just minted: shown this once (the server keeps only its hash), with the URL the phone needs. */
function MintedPanel({ minted, onDone }: { minted: MintedKey; onDone: () => void }) {
  return (
    <div className="panel minted" role="region" aria-label="new key">
      <h2>Key “{minted.name}” created</h2>
      <p className="level-warn">Copy it now: it is shown only this once.</p>
      <label htmlFor="minted-key">Key</label>
      <div className="copy-row">
        <input id="minted-key" readOnly value={minted.key} onFocus={(e) => e.target.select()} />
        <CopyButton label="Copy key" text={minted.key} />
      </div>
      <label htmlFor="minted-url">Server URL for the Android app</label>
      <div className="copy-row">
        <input id="minted-url" readOnly value={minted.app_url} onFocus={(e) => e.target.select()} />
        <CopyButton label="Copy app URL" text={minted.app_url} />
      </div>
      <button type="button" className="small" onClick={onDone}>
        Done
      </button>
    </div>
  );
}
