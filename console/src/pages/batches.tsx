import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, orch, requestPage, subscribe, type OrchestratorEvent } from "../api";
import { navigate } from "../router";
import { ConfirmButton, ErrorMessage, Field, Pager, Progress, StatusBadge, fmtDate, useDebounced, useLoad } from "../ui";

/** An approval gate's record (``results.approval``): null until it is requested. */
interface Approval {
  status: "waiting" | "approved" | "rejected" | "timed_out";
  approvers?: string[];
  message?: string | null;
  timeout_seconds?: number | null;
  requested_at?: string | null;
  decided_by?: string | null;
  decided_at?: string | null;
  comment?: string | null;
}

interface BatchOperation {
  id: string;
  type: string;
  dependencies: string[];
  status: string;
  progress: number;
  results: { task_ids?: string[]; summary?: string; approval?: Approval | null } & Record<string, unknown>;
}

export interface Batch {
  batch_id: string;
  name: string;
  version?: string;
  status: string;
  parallel_limit?: number;
  rollback_enabled?: boolean;
  rolled_back?: boolean;
  rollback?: Record<string, unknown> | null;
  created_at: string;
  started_at?: string | null;
  completed_at?: string | null;
  operations: BatchOperation[];
  resumed_from?: string | null;
  resumed_by?: string | null;
}

interface Plan {
  name: string;
  total_tasks: number;
  parallel_limit: number;
  rollback_enabled: boolean;
  waves: string[][];
  operations: { id: string; type: string; dependencies: string[]; tasks: { id: string; name: string; command: string; args: string[] }[] }[];
}

export const CONTRACT_EXAMPLE = {
  name: "multi_cloud_deployment",
  version: "1.0.0",
  storage_backend: "surrealdb",
  parallel_limit: 5,
  rollback_enabled: true,
  operations: [
    {
      id: "upcloud_servers",
      type: "server_batch",
      provider: "upcloud",
      dependencies: [],
      server_configs: [
        { name: "web-01", plan: "1xCPU-2GB", zone: "de-fra1" },
        { name: "web-02", plan: "1xCPU-2GB", zone: "us-nyc1" },
      ],
    },
    {
      id: "aws_taskservs",
      type: "taskserv_batch",
      provider: "aws",
      dependencies: ["upcloud_servers"],
      taskservs: ["kubernetes", "cilium", "containerd"],
    },
  ],
};

const FINAL = new Set(["Completed", "Failed", "Cancelled", "RolledBack"]);
const RESUMABLE = new Set(["Failed", "Cancelled"]);
const APPROVAL_STATE: Record<Approval["status"], string> = {
  waiting: "Waiting for approval",
  approved: "Approved",
  rejected: "Rejected",
  timed_out: "Timed out",
};
const APPROVAL_EVENTS = new Set(["ApprovalRequested", "ApprovalDecided"]);

function approvalOf(op: BatchOperation | undefined): Approval | null {
  return op?.type === "approval" ? (op.results.approval ?? null) : null;
}

function skipped(op: BatchOperation): Set<string> {
  const ids = op.results.skipped_task_ids;
  return new Set(Array.isArray(ids) ? ids.map(String) : []);
}

function approvalText(op: BatchOperation): string {
  const approval = approvalOf(op);
  return approval ? APPROVAL_STATE[approval.status] ?? approval.status : "Not requested yet";
}

export function BatchesPage() {
  const [offset, setOffset] = useState(0);
  const limit = 20;
  const list = useLoad(() => requestPage<Batch[]>("orch", "/batch/operations", { query: { limit, offset } }), [offset]);
  const reload = useDebounced(list.reload, 500);
  useEffect(() => subscribe((e) => e.event_type === "BatchStatusChanged" && reload()), [reload]);
  return (
    <main id="main">
      <h1>Batches</h1>
      <NewBatch />
      <h2>Batch operations</h2>
      <ErrorMessage error={list.error} />
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Status</th>
            <th scope="col">Operations</th>
            <th scope="col">Created</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.data ?? []).map((b) => (
            <tr key={b.batch_id}>
              <td>
                <a href={`#/batches/${b.batch_id}`}>{b.name}</a>
              </td>
              <td>
                <StatusBadge status={b.status} />
              </td>
              <td>{b.operations.length}</td>
              <td>{fmtDate(b.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <Pager offset={offset} limit={limit} total={list.data?.total ?? null} onChange={setOffset} />
    </main>
  );
}

function NewBatch() {
  const [text, setText] = useState("");
  const [plan, setPlan] = useState<Plan | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const parse = (): unknown => {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new ApiError(`The batch document is not valid JSON: ${(err as Error).message}`, 400);
    }
  };
  const validate = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setPlan(null);
    try {
      setPlan(await orch<Plan>("/batch/plan", { body: parse() }));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const execute = async () => {
    setBusy(true);
    setError(null);
    try {
      const result = await orch<{ batch_id: string }>("/batch/execute", { body: parse() });
      navigate(`/batches/${result.batch_id}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const upload = async (e: Event) => {
    const file = (e.currentTarget as HTMLInputElement).files?.[0];
    if (file) {
      setText(await file.text());
      setPlan(null);
    }
  };

  return (
    <form class="card" onSubmit={validate} aria-label="New batch">
      <h2>New batch</h2>
      <label class="field">
        <span class="field-label">Batch document (JSON, as in the API contract)</span>
        <textarea
          name="batch"
          rows={12}
          spellcheck={false}
          value={text}
          onInput={(e) => {
            setText(e.currentTarget.value);
            setPlan(null);
          }}
        />
      </label>
      <div class="actions">
        <label class="field inline">
          <span class="field-label">Upload a file</span>
          <input type="file" accept="application/json,.json" onChange={upload} />
        </label>
        <button
          type="button"
          onClick={() => {
            setText(JSON.stringify(CONTRACT_EXAMPLE, null, 2));
            setPlan(null);
          }}
        >
          Use the contract example
        </button>
        <button type="submit" class="primary" disabled={busy || !text.trim()}>
          Validate and plan
        </button>
      </div>
      <ErrorMessage error={error} />
      {plan && (
        <section aria-label="Plan" data-testid="batch-plan">
          <h3>
            Plan: {plan.total_tasks} tasks in {plan.waves.length} waves, at most {plan.parallel_limit} at once
            {plan.rollback_enabled ? ", rolled back on failure" : ""}
          </h3>
          <ol>
            {plan.waves.map((wave, i) => (
              <li key={i}>
                Wave {i + 1}:{" "}
                {wave
                  .map((opId) => {
                    const op = plan.operations.find((o) => o.id === opId);
                    return `${opId} (${op?.tasks.length ?? 0} tasks)`;
                  })
                  .join(", ")}
              </li>
            ))}
          </ol>
          <button type="button" class="primary" disabled={busy} onClick={() => void execute()}>
            Execute batch
          </button>
        </section>
      )}
    </form>
  );
}

/** Depth of each operation: wave N holds those whose dependencies are all earlier. */
function waves(ops: BatchOperation[]): string[][] {
  const level = new Map<string, number>();
  let remaining = [...ops];
  while (remaining.length) {
    const next = remaining.filter((op) => op.dependencies.every((d) => level.has(d)));
    if (!next.length) break;
    for (const op of next) level.set(op.id, 1 + Math.max(-1, ...op.dependencies.map((d) => level.get(d) ?? 0)));
    remaining = remaining.filter((op) => !level.has(op.id));
  }
  const out: string[][] = [];
  for (const op of ops) {
    const l = level.get(op.id) ?? 0;
    (out[l] ??= []).push(op.id);
  }
  return out;
}

const NODE_W = 200;
const NODE_H = 64;
const GAP_X = 80;
const GAP_Y = 24;

function Dag({ batch }: { batch: Batch }) {
  const layers = waves(batch.operations);
  const pos = new Map<string, { x: number; y: number }>();
  layers.forEach((layer, col) =>
    layer.forEach((id, row) => pos.set(id, { x: 10 + col * (NODE_W + GAP_X), y: 10 + row * (NODE_H + GAP_Y) })),
  );
  const width = 20 + layers.length * (NODE_W + GAP_X) - GAP_X;
  const height = 20 + Math.max(1, ...layers.map((l) => l.length)) * (NODE_H + GAP_Y) - GAP_Y;
  return (
    <svg class="dag" viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label="Dependency graph of the batch's operations">
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">
          <path d="M0 0L10 5L0 10z" fill="#555" />
        </marker>
      </defs>
      {batch.operations.flatMap((op) =>
        op.dependencies.map((dep) => {
          const from = pos.get(dep);
          const to = pos.get(op.id);
          if (!from || !to) return null;
          const x1 = from.x + NODE_W;
          const y1 = from.y + NODE_H / 2;
          const x2 = to.x;
          const y2 = to.y + NODE_H / 2;
          return <path key={`${dep}-${op.id}`} d={`M${x1} ${y1}C${x1 + 40} ${y1} ${x2 - 40} ${y2} ${x2} ${y2}`} class="edge" marker-end="url(#arrow)" />;
        }),
      )}
      {batch.operations.map((op) => {
        const p = pos.get(op.id);
        if (!p) return null;
        return (
          <g key={op.id} transform={`translate(${p.x} ${p.y})`} class={`node node-${op.status.toLowerCase()}`}>
            <rect width={NODE_W} height={NODE_H} rx="8" />
            <text x="10" y="24" class="node-title">
              {op.id}
            </text>
            <text x="10" y="46" class="node-status">
              {op.type === "approval"
                ? `${op.status} · ${approvalOf(op)?.status.replace("_", " ") ?? "not requested"}`
                : `${op.status} · ${op.progress.toFixed(0)}%`}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

/** What an approval event announced, until the batch document shows it: the event is
 * published just before the reconciler writes the batch, so a reload can be early. */
interface Awaited {
  op: string;
  status: string;
  tries: number;
}

function awaitedOf(event: OrchestratorEvent): Awaited | null {
  if (!APPROVAL_EVENTS.has(event.event_type)) return null;
  const op = event.data.operation_id;
  if (typeof op !== "string") return null;
  const status = event.event_type === "ApprovalRequested" ? "waiting" : String(event.data.decision ?? "");
  return { op, status, tries: 0 };
}

function reflected(batch: Batch, want: Awaited): boolean {
  const state = approvalOf(batch.operations.find((o) => o.id === want.op))?.status;
  if (!state) return false;
  return want.status === "waiting" || state === want.status;
}

function BatchLink({ id }: { id: string }) {
  return (
    <a href={`#/batches/${encodeURIComponent(id)}`}>
      <code>{id}</code>
    </a>
  );
}

function ResumeButton({ batch }: { batch: Batch }) {
  const again = batch.operations.filter((op) => op.status !== "Completed");
  return (
    <ConfirmButton
      label="Resume batch"
      title="Resume this batch?"
      confirmLabel="Resume"
      testid="resume-batch"
      onConfirm={async () => {
        const next = await orch<Batch>(`/batch/operations/${encodeURIComponent(batch.batch_id)}/resume`, { method: "POST" });
        navigate(`/batches/${next.batch_id}`);
      }}
    >
      <p>A new run of this batch starts. Completed work is skipped; these operations run again:</p>
      <ul data-testid="resume-list">
        {again.map((op) => (
          <li key={op.id}>
            {op.id} ({op.status})
          </li>
        ))}
      </ul>
    </ConfirmButton>
  );
}

function ApprovalGate({ batch, op, onDecided }: { batch: Batch; op: BatchOperation; onDecided: (b: Batch) => void }) {
  const [comment, setComment] = useState("");
  const approval = approvalOf(op);
  const waiting = approval?.status === "waiting" && !FINAL.has(batch.status);
  const decide = (decision: "approve" | "reject") => async () => {
    const text = comment.trim();
    const result = await orch<Batch>(
      `/batch/operations/${encodeURIComponent(batch.batch_id)}/approvals/${encodeURIComponent(op.id)}`,
      { body: { decision, ...(text ? { comment: text } : {}) } },
    );
    setComment("");
    onDecided(result);
  };
  const said = text(comment);
  return (
    <section class="card approval" aria-labelledby={`gate-${op.id}`} data-testid={`approval-${op.id}`} data-approval={approval?.status ?? "none"}>
      <h3 id={`gate-${op.id}`}>Approval gate {op.id}</h3>
      <dl class="facts">
        <dt>State</dt>
        <dd data-testid="approval-state">{approvalText(op)}</dd>
        {approval?.message && (
          <>
            <dt>Message</dt>
            <dd data-testid="approval-message">{approval.message}</dd>
          </>
        )}
        <dt>Approvers</dt>
        <dd>{(approval?.approvers ?? []).join(", ") || "—"}</dd>
        {approval?.requested_at && (
          <>
            <dt>Requested</dt>
            <dd>{fmtDate(approval.requested_at)}</dd>
          </>
        )}
        {approval?.timeout_seconds ? (
          <>
            <dt>Times out after</dt>
            <dd>{approval.timeout_seconds} s</dd>
          </>
        ) : null}
        {approval && approval.status !== "waiting" && (
          <>
            <dt>Decided by</dt>
            <dd data-testid="approval-decided-by">{approval.decided_by ?? "—"}</dd>
            <dt>Decided</dt>
            <dd>{fmtDate(approval.decided_at)}</dd>
            <dt>Comment</dt>
            <dd data-testid="approval-comment">{approval.comment || "—"}</dd>
          </>
        )}
      </dl>
      {waiting && (
        <>
          <Field label={`Comment on ${op.id} (optional)`}>
            <textarea name="comment" rows={2} maxLength={1000} value={comment} onInput={(e) => setComment(e.currentTarget.value)} />
          </Field>
          <div class="actions">
            <ConfirmButton label={`Approve ${op.id}`} title={`Approve ${op.id}?`} confirmLabel="Approve" testid={`approve-${op.id}`} onConfirm={decide("approve")}>
              <p>The operations that wait on {op.id} then run.</p>
              {said}
            </ConfirmButton>
            <ConfirmButton label={`Reject ${op.id}`} title={`Reject ${op.id}?`} confirmLabel="Reject" danger testid={`reject-${op.id}`} onConfirm={decide("reject")}>
              <p>The operations that wait on {op.id} are cancelled without running and the batch fails.</p>
              {said}
            </ConfirmButton>
          </div>
        </>
      )}
    </section>
  );
}

function text(comment: string) {
  const value = comment.trim();
  return value ? <p>Comment: {value}</p> : <p>No comment.</p>;
}

export function BatchPage({ id }: { id: string }) {
  const batch = useLoad(() => orch<Batch>(`/batch/operations/${encodeURIComponent(id)}`), [id]);
  const reload = useDebounced(batch.reload, 250);
  const reloadRef = useRef(reload);
  reloadRef.current = reload;
  const awaited = useRef<Awaited | null>(null);
  useEffect(() => {
    awaited.current = null;
    return subscribe((event) => {
      const about = event.data.batch_id ?? event.metadata.batch_id;
      if (about !== id) return;
      const want = awaitedOf(event);
      if (want) awaited.current = want;
      reloadRef.current();
    });
  }, [id]);
  // Another batch's document (before a navigation's load answers) is not shown.
  const b = batch.data?.batch_id === id ? batch.data : undefined;
  // An approval event seen before the batch document shows it: read it again shortly.
  useEffect(() => {
    const want = awaited.current;
    if (!want || !b || b.batch_id !== id) return;
    if (reflected(b, want) || want.tries >= 20) {
      awaited.current = null;
      return;
    }
    want.tries += 1;
    const timer = window.setTimeout(() => reloadRef.current(), 250);
    return () => window.clearTimeout(timer);
  }, [b, id]);
  const gates = b ? b.operations.filter((op) => op.type === "approval") : [];
  const resumable = b && RESUMABLE.has(b.status) && !b.resumed_by && !b.rolled_back && !b.rollback;
  return (
    <main id="main">
      <p>
        <a href="#/batches">← Batches</a>
      </p>
      <h1>Batch {b?.name ?? id}</h1>
      <ErrorMessage error={batch.error} />
      {b && (
        <>
          <dl class="facts">
            <dt>Status</dt>
            <dd data-testid="batch-status">
              <StatusBadge status={b.status} />
            </dd>
            <dt>Parallel limit</dt>
            <dd>{b.parallel_limit ?? "—"}</dd>
            <dt>Rollback</dt>
            <dd data-testid="batch-rollback">
              {b.rollback_enabled ? (b.rolled_back ? "Rolled back" : b.rollback ? `In progress (${String(b.rollback.status ?? "")})` : "Enabled, not needed") : "Disabled"}
            </dd>
            <dt>Created</dt>
            <dd>{fmtDate(b.created_at)}</dd>
            <dt>Finished</dt>
            <dd>{fmtDate(b.completed_at)}</dd>
            {b.resumed_from && (
              <>
                <dt>Resumed from</dt>
                <dd data-testid="resumed-from">
                  <BatchLink id={b.resumed_from} />
                </dd>
              </>
            )}
            {b.resumed_by && (
              <>
                <dt>Resumed by</dt>
                <dd data-testid="resumed-by">
                  <BatchLink id={b.resumed_by} />
                </dd>
              </>
            )}
          </dl>
          <div class="actions">
            <ConfirmButton
              label="Cancel batch"
              title="Cancel this batch?"
              confirmLabel="Cancel batch"
              danger
              testid="cancel-batch"
              disabled={FINAL.has(b.status)}
              onConfirm={async () => {
                await orch<unknown>(`/batch/operations/${encodeURIComponent(id)}/cancel`, { method: "POST" });
                batch.reload();
              }}
            >
              <p>
                Operations not yet finished stop; pending ones never start.
                {b.rollback_enabled ? " Completed operations are then rolled back." : ""}
              </p>
            </ConfirmButton>
            {resumable && <ResumeButton key={b.batch_id} batch={b} />}
          </div>
          <h2>Operations</h2>
          <div class="dag-wrap">
            <Dag batch={b} />
          </div>
          <table data-testid="batch-operations">
            <thead>
              <tr>
                <th scope="col">Operation</th>
                <th scope="col">Type</th>
                <th scope="col">Depends on</th>
                <th scope="col">Status</th>
                <th scope="col">Progress</th>
                <th scope="col">Tasks</th>
              </tr>
            </thead>
            <tbody>
              {b.operations.map((op) => (
                <tr key={op.id} data-operation-id={op.id}>
                  <td>{op.id}</td>
                  <td>{op.type}</td>
                  <td>{op.dependencies.join(", ") || "—"}</td>
                  <td>
                    <StatusBadge status={op.status} />
                  </td>
                  <td>
                    <Progress value={op.progress} label={`Progress of ${op.id}`} />
                  </td>
                  <td>
                    {op.type === "approval" ? (
                      <span data-testid={`approval-cell-${op.id}`}>{approvalText(op)}</span>
                    ) : (
                      (op.results.task_ids ?? []).map((tid, i) =>
                        skipped(op).has(tid) ? (
                          // A resumed run's item that completed before: it has no task here.
                          <span key={tid} class="chip">
                            {op.id} #{i + 1} (skipped)
                          </span>
                        ) : (
                          <a key={tid} href={`#/tasks/${tid}`} class="chip">
                            {op.id} #{i + 1}
                          </a>
                        ),
                      )
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {gates.length > 0 && (
            <>
              <h2>Approvals</h2>
              {gates.map((op) => (
                <ApprovalGate key={op.id} batch={b} op={op} onDecided={batch.set} />
              ))}
            </>
          )}
        </>
      )}
    </main>
  );
}
