import { useEffect, useRef, useState } from "preact/hooks";
import { requestPage, subscribe, type OrchestratorEvent } from "../api";
import { ErrorMessage, Pager, Progress, StatusBadge, fmtDate, useDebounced, useLoad } from "../ui";

export interface Task {
  id: string;
  name: string;
  command: string;
  args: string[];
  dependencies: string[];
  status: string;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  output: string | null;
  error: string | null;
  current_step?: string | null;
  batch_id?: string | null;
  operation_id?: string | null;
  progress: number;
  attempts: number;
}

export const STATUSES = ["Pending", "Running", "Completed", "Failed", "Cancelled"];
const ROW_HEIGHT = 37;
const VIEWPORT_ROWS = 20;
const VIRTUAL_FROM = 100;

/** The task status a TaskStatusChanged event carries ("Completed", not "completed"). */
export function eventStatus(event: OrchestratorEvent): string | null {
  const meta = event.metadata.task_status;
  if (typeof meta === "string") return meta;
  const wire = event.data.status;
  return typeof wire === "string" ? wire.charAt(0).toUpperCase() + wire.slice(1) : null;
}

export function TasksPage() {
  const [status, setStatus] = useState("");
  const [limit, setLimit] = useState(50);
  const [offset, setOffset] = useState(0);
  const list = useLoad(
    async () => ({ ...(await requestPage<Task[]>("orch", "/tasks", { query: { status, limit, offset } })), status }),
    [status, limit, offset],
  );
  const reload = useDebounced(list.reload, 300);
  const rows = list.data?.data ?? [];
  const rowsRef = useRef(rows);
  rowsRef.current = rows;
  const setRef = useRef(list.set);
  setRef.current = list.set;

  useEffect(
    () =>
      subscribe((event) => {
        const id = event.data.task_id;
        if (typeof id !== "string") return;
        const current = rowsRef.current;
        const index = current.findIndex((t) => t.id === id);
        if (event.event_type === "TaskStatusChanged") {
          const next = eventStatus(event);
          if (index < 0 || (status && next !== status)) {
            reload(); // a new task, or one that leaves/enters the filtered set
            return;
          }
          const updated = [...current];
          updated[index] = { ...current[index]!, status: next ?? current[index]!.status };
          setRef.current({ data: updated, total: list.data?.total ?? null, status });
        } else if (event.event_type === "TaskProgress" && index >= 0) {
          const updated = [...current];
          updated[index] = { ...current[index]!, progress: Number(event.data.progress ?? 0) };
          setRef.current({ data: updated, total: list.data?.total ?? null, status });
        }
      }),
    [status, reload, list.data?.total],
  );

  return (
    <main id="main">
      <h1>Tasks</h1>
      <div class="toolbar">
        <label>
          Status{" "}
          <select
            value={status}
            onChange={(e) => {
              setStatus(e.currentTarget.value);
              setOffset(0);
            }}
          >
            <option value="">All</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Per page{" "}
          <select
            value={String(limit)}
            onChange={(e) => {
              setLimit(Number(e.currentTarget.value));
              setOffset(0);
            }}
          >
            {[50, 100, 500, 1000].map((n) => (
              <option key={n} value={String(n)}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <a class="button" href="#/submit">
          New workflow
        </a>
      </div>
      <ErrorMessage error={list.error} />
      <TaskTable rows={rows} loading={list.loading} loadedStatus={list.data?.status ?? null} />
      <Pager offset={offset} limit={limit} total={list.data?.total ?? null} onChange={setOffset} />
    </main>
  );
}

function TaskTable({ rows, loading, loadedStatus }: { rows: Task[]; loading: boolean; loadedStatus: string | null }) {
  const [scrollTop, setScrollTop] = useState(0);
  const virtual = rows.length > VIRTUAL_FROM;
  const first = virtual ? Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - 10) : 0;
  const last = virtual ? Math.min(rows.length, first + VIEWPORT_ROWS + 20) : rows.length;
  const visible = rows.slice(first, last);
  return (
    <div
      class={virtual ? "table-scroll virtual" : "table-scroll"}
      tabIndex={0}
      role="region"
      aria-label="Task list"
      onScroll={virtual ? (e) => setScrollTop(e.currentTarget.scrollTop) : undefined}
    >
      <table
        data-testid="tasks-table"
        data-status={loadedStatus ?? undefined}
        aria-busy={loading ? "true" : "false"}
        aria-rowcount={rows.length + 1}
      >
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Arguments</th>
            <th scope="col">Status</th>
            <th scope="col">Progress</th>
            <th scope="col">Created</th>
            <th scope="col">Batch</th>
          </tr>
        </thead>
        <tbody>
          {virtual && first > 0 && (
            <tr aria-hidden="true" class="spacer" style={{ height: `${first * ROW_HEIGHT}px` }}>
              <td colSpan={6} />
            </tr>
          )}
          {visible.map((task, i) => (
            <tr key={task.id} data-task-id={task.id} aria-rowindex={first + i + 2}>
              <td>
                <a href={`#/tasks/${task.id}`}>{task.name}</a>
              </td>
              <td class="args">{(task.args ?? []).join(" ")}</td>
              <td>
                <StatusBadge status={task.status} />
              </td>
              <td>
                <Progress value={task.progress} label={`Progress of ${task.name}`} />
              </td>
              <td>{fmtDate(task.created_at)}</td>
              <td>{task.batch_id ? <a href={`#/batches/${task.batch_id}`}>{task.operation_id ?? "batch"}</a> : "—"}</td>
            </tr>
          ))}
          {virtual && last < rows.length && (
            <tr aria-hidden="true" class="spacer" style={{ height: `${(rows.length - last) * ROW_HEIGHT}px` }}>
              <td colSpan={6} />
            </tr>
          )}
          {loadedStatus !== null && rows.length === 0 && (
            <tr>
              <td colSpan={6}>No tasks.</td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
