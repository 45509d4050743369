import { useEffect, useRef, useState } from "preact/hooks";
import { orch, subscribe } from "../api";
import { ConfirmButton, ErrorMessage, Progress, StatusBadge, fmtDate, useDebounced, useLoad } from "../ui";
import { eventStatus, type Task } from "./tasks";

interface Attempt {
  id: string;
  attempt: number;
  worker_id: string | null;
  status: string;
  started_at: string | null;
  ended_at: string | null;
  exit_code: number | null;
  error: string | null;
}

interface TaskProgress {
  progress: number;
  current_step: string | null;
  total_steps: number | null;
  completed_steps: number | null;
  estimated_time_remaining: number | null;
}

const FINAL = new Set(["Completed", "Failed", "Cancelled"]);
const TAIL_LINES = 200;

export function TaskPage({ id }: { id: string }) {
  const task = useLoad(() => orch<Task>(`/tasks/${encodeURIComponent(id)}`), [id]);
  const attempts = useLoad(() => orch<Attempt[]>(`/tasks/${encodeURIComponent(id)}/attempts`), [id]);
  const progress = useLoad(
    () => orch<TaskProgress>(`/state/workflows/${encodeURIComponent(id)}/progress`).catch(() => null),
    [id],
  );
  const [liveLines, setLiveLines] = useState<string[]>([]);
  const [live, setLive] = useState<{ progress?: number; step?: string | null; status?: string }>({});
  const reloadAll = useDebounced(() => {
    task.reload();
    attempts.reload();
    progress.reload();
  }, 250);
  const reloadRef = useRef(reloadAll);
  reloadRef.current = reloadAll;

  useEffect(() => {
    setLiveLines([]);
    setLive({});
    return subscribe((event) => {
      if (event.data.task_id !== id) return;
      if (event.event_type === "TaskOutput" && Array.isArray(event.data.lines)) {
        const lines = event.data.lines.map(String);
        setLiveLines((prev) => [...prev, ...lines].slice(-TAIL_LINES));
      } else if (event.event_type === "TaskProgress") {
        setLive((prev) => ({
          ...prev,
          progress: Number(event.data.progress ?? 0),
          step: (event.data.current_step as string | null | undefined) ?? prev.step ?? null,
        }));
      } else if (event.event_type === "TaskStatusChanged") {
        setLive((prev) => ({ ...prev, status: eventStatus(event) ?? prev.status }));
        reloadRef.current();
      }
    });
  }, [id]);

  const t = task.data;
  const status = live.status && !FINAL.has(t?.status ?? "") ? live.status : t?.status;
  const pct = FINAL.has(status ?? "") ? (status === "Completed" ? 100 : t?.progress ?? 0) : live.progress ?? progress.data?.progress ?? t?.progress ?? 0;
  const step = live.step ?? progress.data?.current_step ?? t?.current_step ?? null;
  const stored = (t?.output ?? "").split("\n").filter((l) => l !== "");
  const output = liveLines.length > 0 && !FINAL.has(t?.status ?? "") ? [...stored, ...liveLines] : stored;

  return (
    <main id="main">
      <p>
        <a href="#/tasks">← Tasks</a>
      </p>
      <h1>Task {t?.name ?? id}</h1>
      <ErrorMessage error={task.error} />
      {t && (
        <>
          <dl class="facts">
            <dt>Status</dt>
            <dd data-testid="task-status">
              <StatusBadge status={status} />
            </dd>
            <dt>Progress</dt>
            <dd>
              <Progress value={pct} label="Task progress" />
            </dd>
            <dt>Current step</dt>
            <dd data-testid="task-step">{step ?? "—"}</dd>
            <dt>Command</dt>
            <dd>
              <code>{[t.command, ...(t.args ?? [])].join(" ")}</code>
            </dd>
            <dt>Created</dt>
            <dd>{fmtDate(t.created_at)}</dd>
            <dt>Started</dt>
            <dd>{fmtDate(t.started_at)}</dd>
            <dt>Finished</dt>
            <dd>{fmtDate(t.completed_at)}</dd>
            {t.batch_id && (
              <>
                <dt>Batch</dt>
                <dd>
                  <a href={`#/batches/${t.batch_id}`}>{t.operation_id ?? t.batch_id}</a>
                </dd>
              </>
            )}
            {t.error && (
              <>
                <dt>Error</dt>
                <dd class="error-text">{t.error}</dd>
              </>
            )}
          </dl>
          <div class="actions">
            <ConfirmButton
              label="Cancel task"
              title="Cancel this task?"
              confirmLabel="Cancel task"
              danger
              testid="cancel-task"
              disabled={FINAL.has(status ?? "")}
              onConfirm={async () => {
                await orch<unknown>(`/tasks/${encodeURIComponent(id)}/cancel`, { method: "POST" });
                task.reload();
              }}
            >
              <p>
                The task <strong>{t.name}</strong> stops (its process gets SIGTERM, then SIGKILL) and ends as Cancelled.
              </p>
            </ConfirmButton>
          </div>
          <h2>Output</h2>
          <pre class="output" tabIndex={0} aria-label="Task output" data-testid="task-output">
            {output.length ? output.join("\n") : "No output yet."}
          </pre>
          <h2>Attempts</h2>
          <ErrorMessage error={attempts.error} />
          <table>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Status</th>
                <th scope="col">Worker</th>
                <th scope="col">Started</th>
                <th scope="col">Ended</th>
                <th scope="col">Exit code</th>
                <th scope="col">Error</th>
              </tr>
            </thead>
            <tbody>
              {(attempts.data ?? []).map((a) => (
                <tr key={a.id}>
                  <td>{a.attempt}</td>
                  <td>
                    <StatusBadge status={a.status} />
                  </td>
                  <td>{a.worker_id ?? "—"}</td>
                  <td>{fmtDate(a.started_at)}</td>
                  <td>{fmtDate(a.ended_at)}</td>
                  <td>{a.exit_code ?? "—"}</td>
                  <td>{a.error ?? ""}</td>
                </tr>
              ))}
              {attempts.data?.length === 0 && (
                <tr>
                  <td colSpan={7}>Not started yet.</td>
                </tr>
              )}
            </tbody>
          </table>
        </>
      )}
    </main>
  );
}
