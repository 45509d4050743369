import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

export function errorText(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** Field errors of a 422 envelope's ``details`` as "path: message" lines. */
export function detailLines(details: unknown, prefix = ""): string[] {
  if (details === null || details === undefined) return [];
  if (typeof details === "string") return [prefix ? `${prefix}: ${details}` : details];
  if (Array.isArray(details)) return details.flatMap((d) => detailLines(d, prefix));
  if (typeof details === "object") {
    return Object.entries(details as Record<string, unknown>).flatMap(([key, value]) =>
      detailLines(value, prefix ? `${prefix}.${key}` : key),
    );
  }
  return [`${prefix}: ${String(details)}`];
}

export function ErrorMessage({ error }: { error: unknown }) {
  if (!error) return null;
  const details = error instanceof ApiError ? detailLines(error.details) : [];
  return (
    <div class="error" role="alert">
      <strong>{errorText(error)}</strong>
      {details.length > 0 && (
        <ul>
          {details.map((line) => (
            <li key={line}>{line}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
  set: (data: T) => void;
}

/** Run ``load`` now and whenever ``deps`` change; ``reload()`` runs it again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const generation = useRef(0);
  useEffect(() => {
    const mine = ++generation.current;
    setLoading(true);
    load().then(
      (value) => {
        if (mine !== generation.current) return;
        setData(value);
        setError(null);
        setLoading(false);
      },
      (err: unknown) => {
        if (mine !== generation.current) return;
        setError(err);
        setLoading(false);
      },
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload, set: setData };
}

/** Call ``fn`` at most once per ``ms`` (trailing): live events trigger reloads. */
export function useDebounced(fn: () => void, ms: number): () => void {
  const timer = useRef<number | undefined>(undefined);
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => () => window.clearTimeout(timer.current), []);
  return useCallback(() => {
    if (timer.current !== undefined) return;
    timer.current = window.setTimeout(() => {
      timer.current = undefined;
      latest.current();
    }, ms);
  }, [ms]);
}

export function StatusBadge({ status }: { status: string | null | undefined }) {
  const value = status ?? "Unknown";
  return <span class={`badge badge-${value.toLowerCase()}`}>{value}</span>;
}

export function Progress({ value, label }: { value: number; label: string }) {
  const pct = Math.max(0, Math.min(100, value));
  return (
    <span class="progress">
      <progress max={100} value={pct} aria-label={label} />
      <span class="progress-text">{pct.toFixed(0)}%</span>
    </span>
  );
}

export function fmtDate(value: string | null | undefined): string {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toLocaleString();
}

interface ConfirmProps {
  label: string;
  title: string;
  confirmLabel: string;
  onConfirm: () => Promise<unknown>;
  children?: ComponentChildren;
  danger?: boolean;
  disabled?: boolean;
  testid?: string;
}

let dialogSeq = 0;

/** A button that asks first (a modal <dialog>: focus trapped, Escape cancels). */
export function ConfirmButton(props: ConfirmProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  const trigger = useRef<HTMLButtonElement>(null);
  const titleId = useMemo(() => `confirm-title-${++dialogSeq}`, []);
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const el = dialog.current;
    if (!el) return;
    if (open && !el.open) el.showModal();
    if (!open && el.open) el.close();
  }, [open]);
  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      await props.onConfirm();
      setOpen(false);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button
        ref={trigger}
        type="button"
        class={props.danger ? "danger" : ""}
        disabled={props.disabled}
        data-testid={props.testid}
        onClick={() => {
          setError(null);
          setOpen(true);
        }}
      >
        {props.label}
      </button>
      <dialog ref={dialog} aria-labelledby={titleId} onClose={() => {
          setOpen(false);
          trigger.current?.focus(); // back where the keyboard was
        }}
      >
        {open && (
          <form
            method="dialog"
            onSubmit={(e) => {
              e.preventDefault();
              void confirm();
            }}
          >
            <h2 id={titleId}>{props.title}</h2>
            <div class="dialog-body">{props.children}</div>
            <ErrorMessage error={error} />
            <div class="actions">
              <button type="button" onClick={() => setOpen(false)}>
                Go back
              </button>
              <button type="submit" class={props.danger ? "danger" : "primary"} disabled={busy}>
                {busy ? "Working…" : props.confirmLabel}
              </button>
            </div>
          </form>
        )}
      </dialog>
    </>
  );
}

export function Pager({
  offset,
  limit,
  total,
  onChange,
}: {
  offset: number;
  limit: number;
  total: number | null;
  onChange: (offset: number) => void;
}) {
  const last = total === null ? offset + limit : total;
  return (
    <nav class="pager" aria-label="Pagination">
      <button type="button" disabled={offset === 0} onClick={() => onChange(Math.max(0, offset - limit))}>
        Previous
      </button>
      <span aria-live="polite">
        {total === 0 ? "No results" : `${offset + 1}–${Math.min(offset + limit, last)} of ${total ?? "?"}`}
      </span>
      <button type="button" disabled={total !== null && offset + limit >= total} onClick={() => onChange(offset + limit)}>
        Next
      </button>
    </nav>
  );
}

export function Field({ label, children, hint }: { label: string; children: ComponentChildren; hint?: string }) {
  return (
    <label class="field">
      <span class="field-label">{label}</span>
      {children}
      {hint && <span class="hint">{hint}</span>}
    </label>
  );
}
