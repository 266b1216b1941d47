import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { QueryClient, QueryClientProvider, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { BrowserRouter, Navigate, NavLink, Outlet, Route, Routes, useLocation, useNavigate } from 'react-router-dom';
import { ApiError, endpoints, maybeSignedIn, rememberSignedIn, setCsrfToken, setUnauthorizedHandler, type Me } from './api';
import { connectEvents, keys, type Connection } from './events';
import { LoginPage } from './Login';
import { VideosPage } from './Videos';
import { VideoPage } from './VideoPage';
import { WorkersPage } from './Workers';
import { SystemPage } from './System';
import { KeysPage } from './Keys';
import { AuditPage } from './Audit';
import './styles.css';

const client = new QueryClient({
  defaultOptions: {
    queries: {
      // Events keep the cache current: nothing is refetched because time passed or the window got focus.
      staleTime: Infinity,
      refetchOnWindowFocus: false,
      refetchOnReconnect: false,
      retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 2,
    },
  },
});

/** The logged-in admin (null: nobody), from /me when this browser may have a session. */
function useMe() {
  return useQuery<Me | null>({
    queryKey: keys.me,
    queryFn: async () => {
      if (!maybeSignedIn()) return null;
      try {
        const me = await endpoints.me();
        setCsrfToken(me.csrf_token);
        return me;
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) return null;
        throw e;
      }
    },
  });
}

function RequireLogin() {
  const me = useMe();
  const location = useLocation();
  if (me.isPending) return <p className="state">Loading…</p>;
  if (me.isError) return <p className="state error">The server did not answer: {String(me.error.message)}</p>;
  if (!me.data) return <Navigate to={`/login?next=${encodeURIComponent(location.pathname + location.search)}`} replace />;
  return <Layout me={me.data} />;
}

function Banner() {
  // The workers query is kept current by events; its banner says when nothing would process uploads.
  const workers = useQuery({ queryKey: keys.workers, queryFn: endpoints.workers });
  if (!workers.data?.banner) return null;
  return (
    <div className="banner" role="alert">
      {workers.data.banner}
    </div>
  );
}

function Layout({ me }: { me: Me }) {
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [connection, setConnection] = useState<Connection>('connecting');
  useEffect(() => connectEvents(queryClient, setConnection), [queryClient]);
  const logout = useMutation({
    mutationFn: endpoints.logout,
    onSettled: () => {
      rememberSignedIn(false);
      setCsrfToken(null);
      queryClient.clear();
      queryClient.setQueryData(keys.me, null);
      navigate('/login', { replace: true });
    },
  });
  return (
    <>
      <header className="top">
        <nav aria-label="main">
          <span className="brand">team03</span>
          <NavLink to="/" end>
            Videos
          </NavLink>
          <NavLink to="/workers">Workers</NavLink>
          <NavLink to="/system">System</NavLink>
          <NavLink to="/keys">Keys</NavLink>
          <NavLink to="/audit">Audit</NavLink>
        </nav>
        <div className="who">
          <span className={`conn conn-${connection}`} title="live updates from the server" role="status">
            {connection === 'open' ? 'live' : connection === 'connecting' ? 'connecting…' : 'offline'}
          </span>
          <span className="name">{me.name}</span>
          <button type="button" className="small" onClick={() => logout.mutate()} disabled={logout.isPending}>
            Log out
          </button>
        </div>
      </header>
      <Banner />
      <main>
        <Outlet />
      </main>
    </>
  );
}

function App() {
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const location = useLocation();
  useEffect(() => {
    setUnauthorizedHandler(() => {
      setCsrfToken(null);
      queryClient.setQueryData(keys.me, null);
      if (!window.location.pathname.startsWith('/login')) {
        navigate(`/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`, { replace: true });
      }
    });
  }, [queryClient, navigate]);
  useEffect(() => {
    const page = location.pathname.split('/')[1] || 'videos';
    document.title = `${page[0].toUpperCase()}${page.slice(1)} · team03`;
  }, [location.pathname]);
  return (
    <Routes>
      <Route path="/login" element={<LoginPage />} />
      <Route element={<RequireLogin />}>
        <Route index element={<VideosPage />} />
        <Route path="/recording/:id" element={<VideoPage />} />
        <Route path="/workers" element={<WorkersPage />} />
        <Route path="/system" element={<SystemPage />} />
        <Route path="/keys" element={<KeysPage />} />
        <Route path="/audit" element={<AuditPage />} />
        <Route path="*" element={<p className="state empty">No such page.</p>} />
      </Route>
    </Routes>
  );
}

createRoot(document.getElementById('root') as HTMLElement).render(
  <StrictMode>
    <QueryClientProvider client={client}>
      <BrowserRouter>
        <App />
      </BrowserRouter>
    </QueryClientProvider>
  </StrictMode>,
);
