import { useState, type FormEvent } from 'react';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { Navigate, useNavigate, useSearchParams } from 'react-router-dom';
import { ApiError, endpoints, rememberSignedIn, setCsrfToken, type Me } from './api';
import { keys } from './events';

/** Only paths of this app: `next` comes from the address bar and must not send anyone elsewhere. */
function safeNext(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/';
}

export function LoginPage() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const login = useMutation({
    mutationFn: () => endpoints.login(username, password),
    onSuccess: (me) => {
      setCsrfToken(me.csrf_token);
      rememberSignedIn(true);
      queryClient.setQueryData(keys.me, me);
      navigate(safeNext(params.get('next')), { replace: true });
    },
  });
  if (queryClient.getQueryData<Me | null>(keys.me) && !login.isPending) {
    return <Navigate to={safeNext(params.get('next'))} replace />;
  }
  const submit = (e: FormEvent) => {
    e.preventDefault();
    login.mutate();
  };
  const error = login.error;
  const message =
    error instanceof ApiError && error.status === 429
      ? 'Too many attempts; wait a minute and try again.'
      : error instanceof ApiError && error.status === 401
        ? 'Wrong username or password.'
        : error
          ? `Could not log in: ${error.message}`
          : null;
  return (
    <main className="login">
      <form onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">team03 dashboard</h1>
        <label htmlFor="username">Username</label>
        <input
          id="username"
          name="username"
          autoComplete="username"
          autoFocus
          required
          value={username}
          onChange={(e) => setUsername(e.target.value)}
        />
        <label htmlFor="password">Password</label>
        <input
          id="password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        {message && (
          <p className="form-error" role="alert">
            {message}
          </p>
        )}
        <button type="submit" className="primary" disabled={login.isPending}>
          {login.isPending ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}
