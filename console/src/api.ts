// The API client: both services' URLs, the session (in memory only: never in
// localStorage, sessionStorage or cookies), quiet refresh, and the /ws event stream.

export interface Config {
  control_center_url: string;
  orchestrator_url: string;
}

export interface User {
  id: string;
  username: string;
  email?: string;
  roles: string[];
  mfa_enabled?: boolean;
}

interface Session {
  token: string;
  expiresAt: number;
  refreshToken: string | null;
  user: User;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly details: unknown = null,
  ) {
    super(message);
  }
}

let config: Config = { control_center_url: "", orchestrator_url: "" };
let session: Session | null = null;
let refreshTimer: number | undefined;
let refreshing: Promise<boolean> | null = null;
const sessionListeners = new Set<() => void>();

/** The orchestrator's base URL: where this page is served from, without ``/ui/...``. */
export function orchestratorBase(): string {
  const path = window.location.pathname.replace(/\/ui(\/.*)?$/, "");
  return window.location.origin + path;
}

export async function loadConfig(): Promise<Config> {
  const resp = await fetch("config.json", { headers: { Accept: "application/json" } });
  if (!resp.ok) throw new ApiError(`Console configuration unavailable (${resp.status})`, resp.status);
  const data = (await resp.json()) as Partial<Config>;
  config = {
    control_center_url: (data.control_center_url ?? "").replace(/\/+$/, ""),
    orchestrator_url: (data.orchestrator_url || orchestratorBase()).replace(/\/+$/, ""),
  };
  return config;
}

export function getConfig(): Config {
  return config;
}

export function currentUser(): User | null {
  return session?.user ?? null;
}

export function onSessionChange(listener: () => void): () => void {
  sessionListeners.add(listener);
  return () => sessionListeners.delete(listener);
}

function notify(): void {
  for (const listener of sessionListeners) listener();
}

function setSession(next: Session | null): void {
  session = next;
  window.clearTimeout(refreshTimer);
  if (next) {
    // Quietly renew a minute before expiry (or at 80% of a short lifetime).
    const left = next.expiresAt - Date.now();
    const delay = Math.max(5_000, Math.min(left - 60_000, left * 0.8));
    refreshTimer = window.setTimeout(() => void refresh(), delay);
  }
  notify();
}

function messageOf(body: unknown, status: number): string {
  if (body && typeof body === "object" && "error" in body) {
    const error = (body as { error: unknown }).error;
    if (typeof error === "string" && error) return error;
  }
  return `Request failed (${status})`;
}

type Service = "cc" | "orch";

interface RequestOptions {
  method?: string;
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined | null>;
  auth?: boolean;
}

export interface Page<T> {
  data: T;
  total: number | null;
}

async function send(service: Service, path: string, opts: RequestOptions): Promise<Response> {
  const base = service === "cc" ? config.control_center_url : config.orchestrator_url;
  const url = new URL(base + path);
  for (const [key, value] of Object.entries(opts.query ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
  }
  const headers: Record<string, string> = { Accept: "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.auth !== false && session) headers.Authorization = `Bearer ${session.token}`;
  try {
    return await fetch(url, {
      method: opts.method ?? (opts.body === undefined ? "GET" : "POST"),
      headers,
      body: opts.body === undefined ? null : JSON.stringify(opts.body),
    });
  } catch {
    throw new ApiError(`Cannot reach the ${service === "cc" ? "control center" : "orchestrator"}`, 0);
  }
}

/** One call; a 401 on an authenticated call refreshes the session once and retries. */
export async function requestPage<T>(service: Service, path: string, opts: RequestOptions = {}): Promise<Page<T>> {
  let resp = await send(service, path, opts);
  if (resp.status === 401 && opts.auth !== false && session) {
    if (await refresh()) resp = await send(service, path, opts);
  }
  let body: unknown = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok || (body && typeof body === "object" && (body as { success?: boolean }).success === false)) {
    const details = body && typeof body === "object" ? (body as { details?: unknown }).details ?? null : null;
    if (resp.status === 401 && opts.auth !== false) setSession(null);
    throw new ApiError(messageOf(body, resp.status), resp.status, details);
  }
  const total = resp.headers.get("X-Total-Count");
  return { data: (body as { data: T }).data, total: total === null ? null : Number(total) };
}

export async function request<T>(service: Service, path: string, opts: RequestOptions = {}): Promise<T> {
  return (await requestPage<T>(service, path, opts)).data;
}

export const cc = <T>(path: string, opts?: RequestOptions): Promise<T> => request<T>("cc", path, opts);
export const orch = <T>(path: string, opts?: RequestOptions): Promise<T> => request<T>("orch", path, opts);

interface LoginData {
  token: string;
  expires_at: string;
  refresh_token?: string;
  user: User;
}

export async function login(username: string, password: string, mfaCode: string): Promise<User> {
  const data = await cc<LoginData>("/auth/login", {
    body: { username, password, ...(mfaCode ? { mfa_code: mfaCode } : {}) },
    auth: false,
  });
  setSession({
    token: data.token,
    expiresAt: Date.parse(data.expires_at),
    refreshToken: data.refresh_token ?? null,
    user: data.user,
  });
  try {
    const me = await cc<User>("/auth/me");
    if (session) setSession({ ...session, user: { ...data.user, ...me } });
  } catch {
    // the login answer's user is enough to go on
  }
  return session?.user ?? data.user;
}

export function markMfaEnabled(): void {
  if (session) setSession({ ...session, user: { ...session.user, mfa_enabled: true } });
}

/** Renew the access token with the refresh token; false (and signed out) when refused. */
export function refresh(): Promise<boolean> {
  if (!session) return Promise.resolve(false);
  if (refreshing) return refreshing;
  const current = session;
  refreshing = (async () => {
    try {
      const data = await request<LoginData>("cc", "/auth/refresh", {
        body: { token: current.refreshToken ?? current.token },
        auth: false,
      });
      setSession({
        ...current,
        token: data.token,
        expiresAt: Date.parse(data.expires_at),
        refreshToken: data.refresh_token ?? current.refreshToken,
      });
      return true;
    } catch {
      setSession(null);
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

export async function logout(): Promise<void> {
  try {
    if (session) await cc<string>("/auth/logout", { method: "POST" });
  } catch {
    // the session ends here whatever the server says
  } finally {
    setSession(null);
  }
}

export function accessToken(): string | null {
  return session?.token ?? null;
}

// ----------------------------------------------------------------------- events

export interface OrchestratorEvent {
  id?: string;
  event_type: string;
  timestamp: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

type EventListener = (event: OrchestratorEvent) => void;
const eventListeners = new Set<EventListener>();
const stateListeners = new Set<(live: boolean) => void>();
let socket: WebSocket | null = null;
let lastEventId: string | null = null;
let reconnectTimer: number | undefined;
let reconnectDelay = 500;
let live = false;

function setLive(next: boolean): void {
  live = next;
  for (const listener of stateListeners) listener(next);
}

export function isLive(): boolean {
  return live;
}

export function onLiveChange(listener: (live: boolean) => void): () => void {
  stateListeners.add(listener);
  return () => stateListeners.delete(listener);
}

/** Listen to the orchestrator's /ws stream (one socket for the whole console). */
export function subscribe(listener: EventListener): () => void {
  eventListeners.add(listener);
  connect();
  return () => eventListeners.delete(listener);
}

function connect(): void {
  if (socket || !session) return;
  const url = new URL(config.orchestrator_url.replace(/^http/, "ws") + "/ws");
  url.searchParams.set("token", session.token);
  if (lastEventId) url.searchParams.set("since", lastEventId);
  const ws = new WebSocket(url);
  socket = ws;
  ws.onopen = () => {
    reconnectDelay = 500;
    setLive(true);
  };
  ws.onmessage = (message: MessageEvent<string>) => {
    let event: OrchestratorEvent;
    try {
      event = JSON.parse(message.data) as OrchestratorEvent;
    } catch {
      return;
    }
    if (event.event_type === "Heartbeat") return;
    if (event.id) lastEventId = event.id;
    for (const listener of eventListeners) listener(event);
  };
  ws.onclose = (close: CloseEvent) => {
    socket = null;
    setLive(false);
    window.clearTimeout(reconnectTimer);
    if (close.code === 1008 && session) {
      // Policy close: the token expired or was revoked. A refresh tells which: renewed,
      // the stream reconnects with the new token; refused, the session ends here.
      void refresh().then((ok) => {
        if (ok) connect();
      });
      return;
    }
    if (session) {
      // The server closes on token expiry or revocation: reconnect with the current token.
      reconnectTimer = window.setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 10_000);
    }
  };
}

export function disconnect(): void {
  window.clearTimeout(reconnectTimer);
  const ws = socket;
  socket = null;
  lastEventId = null;
  ws?.close();
  setLive(false);
}

onSessionChange(() => {
  if (!session) disconnect();
});
