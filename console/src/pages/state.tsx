import { useEffect, useRef, useState } from "preact/hooks";
import { orch, requestPage, subscribe } from "../api";
import { ConfirmButton, ErrorMessage, Field, fmtDate, useDebounced, useLoad } from "../ui";

interface Checkpoint {
  id: string;
  name: string;
  description: string | null;
  created_at: string;
  size: string;
}

interface LedgerEntry {
  id: string;
  batch_id: string | null;
  operation_id: string | null;
  task_id: string;
  name: string | null;
  compensation: { command?: string; args?: string[] };
  applied_at: string;
  compensated_by: string | null;
}

interface RollbackResult {
  rollback_id: string;
  success: boolean;
  operations_executed: number;
  operations_failed: number;
  duration: number;
}

function Facts({ data }: { data: Record<string, unknown> | undefined }) {
  if (!data) return null;
  return (
    <dl class="facts">
      {Object.entries(data).flatMap(([key, value]) => [
        <dt key={`${key}-k`}>{key.replace(/_/g, " ")}</dt>,
        <dd key={`${key}-v`}>{typeof value === "object" && value !== null ? <Facts data={value as Record<string, unknown>} /> : String(value)}</dd>,
      ])}
    </dl>
  );
}

/** What a rollback would undo: ledger entries not yet compensated (after ``since``). */
function pending(entries: LedgerEntry[], since?: string): LedgerEntry[] {
  const after = since ? Date.parse(since) : -Infinity;
  return entries.filter((e) => !e.compensated_by && Date.parse(e.applied_at) > after);
}

function UndoList({ entries, more = false }: { entries: LedgerEntry[]; more?: boolean }) {
  if (!entries.length && !more) return <p>Nothing to undo: no applied operation is recorded after this point.</p>;
  return (
    <>
      <p>These {entries.length} operations are undone, newest first:</p>
      <ul class="undo-list" data-testid="undo-list">
        {entries.map((e) => (
          <li key={e.id}>
            <strong>{e.name ?? e.operation_id ?? e.task_id}</strong>
            {e.batch_id ? ` (batch operation ${e.operation_id ?? ""})` : ""}: <code>{[e.compensation.command, ...(e.compensation.args ?? [])].filter(Boolean).join(" ")}</code>
          </li>
        ))}
      </ul>
      {more && <p class="error-text">Only the newest applied operations are listed here: older ones after this checkpoint are undone too.</p>}
    </>
  );
}

export function StatePage() {
  const health = useLoad(() => orch<Record<string, unknown>>("/state/system/health"), []);
  const stats = useLoad(() => orch<Record<string, unknown>>("/state/statistics"), []);
  const metrics = useLoad(() => orch<Record<string, unknown>>("/state/system/metrics"), []);
  const rbStats = useLoad(() => orch<Record<string, unknown>>("/rollback/statistics"), []);
  const checkpoints = useLoad(() => requestPage<Checkpoint[]>("orch", "/rollback/checkpoints", { query: { limit: 100 } }), []);
  const ledger = useLoad(() => requestPage<LedgerEntry[]>("orch", "/rollback/operations", { query: { limit: 1000 } }), []);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [createError, setCreateError] = useState<unknown>(null);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [result, setResult] = useState<string | null>(null);

  const refreshAll = () => {
    checkpoints.reload();
    ledger.reload();
    stats.reload();
    rbStats.reload();
  };
  // Compensations run after the answer: follow them (and new applied work) live.
  const refreshLive = useDebounced(() => {
    ledger.reload();
    rbStats.reload();
    stats.reload();
  }, 500);
  const refreshRef = useRef(refreshLive);
  refreshRef.current = refreshLive;
  useEffect(
    () =>
      subscribe((event) => {
        const final = event.event_type === "TaskStatusChanged" && event.metadata.task_status !== "Running";
        if (event.event_type.startsWith("Rollback") || final) refreshRef.current();
      }),
    [],
  );
  const create = async (e: Event) => {
    e.preventDefault();
    setCreateError(null);
    try {
      await orch<string>("/rollback/checkpoints", { body: { name, ...(description ? { description } : {}) } });
      setName("");
      setDescription("");
      refreshAll();
    } catch (err) {
      setCreateError(err);
    }
  };
  const rollback = async (body: Record<string, unknown>) => {
    const r = await orch<RollbackResult>("/rollback/execute", { body });
    setResult(`Rollback ${r.rollback_id}: ${r.operations_executed} operations undone, ${r.operations_failed} failed (${r.duration.toFixed(1)} s).`);
    setSelected(new Set());
    refreshAll();
  };
  const entries = ledger.data?.data ?? [];
  const truncated = (ledger.data?.total ?? 0) > entries.length;
  const oldest = entries.length ? entries[entries.length - 1]!.applied_at : null;
  const undoable = pending(entries);

  return (
    <main id="main">
      <h1>State and rollback</h1>
      <div class="grid">
        <section class="card" aria-labelledby="health-h">
          <h2 id="health-h">System health</h2>
          <ErrorMessage error={health.error} />
          <Facts data={health.data} />
        </section>
        <section class="card" aria-labelledby="stats-h">
          <h2 id="stats-h">Statistics</h2>
          <ErrorMessage error={stats.error} />
          <Facts data={stats.data} />
          <ErrorMessage error={metrics.error} />
          <Facts data={metrics.data} />
        </section>
        <section class="card" aria-labelledby="rb-h">
          <h2 id="rb-h">Rollbacks</h2>
          <ErrorMessage error={rbStats.error} />
          <Facts data={rbStats.data} />
        </section>
      </div>
      {result && (
        <p class="notice" role="status" data-testid="rollback-result">
          {result}
        </p>
      )}
      <h2>Checkpoints</h2>
      <form class="toolbar" onSubmit={create} aria-label="New checkpoint">
        <Field label="Checkpoint name">
          <input name="checkpoint_name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <Field label="Description">
          <input name="checkpoint_description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </Field>
        <button type="submit" class="primary">
          Create checkpoint
        </button>
      </form>
      <ErrorMessage error={createError} />
      <ErrorMessage error={checkpoints.error} />
      <table data-testid="checkpoints">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Description</th>
            <th scope="col">Created</th>
            <th scope="col">Size</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {(checkpoints.data?.data ?? []).map((c) => (
            <tr key={c.id} data-checkpoint={c.name}>
              <td>{c.name}</td>
              <td>{c.description ?? ""}</td>
              <td>{fmtDate(c.created_at)}</td>
              <td>{c.size}</td>
              <td>
                <div class="actions">
                <ConfirmButton
                  label={`Roll back to ${c.name}`}
                  title={`Roll back to checkpoint ${c.name}?`}
                  confirmLabel="Roll back"
                  danger
                  testid={`rollback-${c.id}`}
                  onConfirm={() => rollback({ checkpoint_id: c.id })}
                >
                  <UndoList
                    entries={pending(entries, c.created_at)}
                    more={truncated && oldest !== null && Date.parse(oldest) > Date.parse(c.created_at)}
                  />
                </ConfirmButton>
                <ConfirmButton
                  label={`Restore ${c.name}`}
                  title={`Restore the state recorded in ${c.name}?`}
                  confirmLabel="Restore"
                  danger
                  testid={`restore-${c.id}`}
                  onConfirm={async () => {
                    const msg = await orch<unknown>(`/rollback/restore/${encodeURIComponent(c.id)}`, { method: "POST" });
                    setResult(typeof msg === "string" ? msg : `State restored from checkpoint ${c.name}.`);
                    refreshAll();
                  }}
                >
                  <p>The orchestrator's recorded batch state goes back to what it was when {c.name} was taken. Refused while a batch is running.</p>
                </ConfirmButton>
                </div>
              </td>
            </tr>
          ))}
          {checkpoints.data?.data.length === 0 && (
            <tr>
              <td colSpan={5}>No checkpoints yet.</td>
            </tr>
          )}
        </tbody>
      </table>
      <h2>Applied operations</h2>
      <ErrorMessage error={ledger.error} />
      <div class="table-scroll" tabIndex={0} role="region" aria-label="Applied operations">
        <table data-testid="ledger">
          <thead>
            <tr>
              <th scope="col">Select</th>
              <th scope="col">Operation</th>
              <th scope="col">Applied</th>
              <th scope="col">Undo command</th>
              <th scope="col">Undone</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((e) => (
              <tr key={e.id}>
                <td>
                  <input
                    type="checkbox"
                    aria-label={`Select ${e.name ?? e.id}`}
                    disabled={Boolean(e.compensated_by)}
                    checked={selected.has(e.id)}
                    onChange={(ev) => {
                      const next = new Set(selected);
                      if (ev.currentTarget.checked) next.add(e.id);
                      else next.delete(e.id);
                      setSelected(next);
                    }}
                  />
                </td>
                <td>{e.name ?? e.operation_id ?? e.task_id}</td>
                <td>{fmtDate(e.applied_at)}</td>
                <td>
                  <code>{[e.compensation.command, ...(e.compensation.args ?? [])].filter(Boolean).join(" ")}</code>
                </td>
                <td>{e.compensated_by ? "Yes" : "No"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div class="actions">
        <ConfirmButton
          label="Roll back selected operations"
          title="Roll back the selected operations?"
          confirmLabel="Roll back"
          danger
          testid="rollback-selected"
          disabled={selected.size === 0}
          onConfirm={() => rollback({ operation_ids: [...selected] })}
        >
          <UndoList entries={undoable.filter((e) => selected.has(e.id))} />
        </ConfirmButton>
      </div>
    </main>
  );
}
