import { useState } from "preact/hooks";
import { cc, requestPage } from "../api";
import { ConfirmButton, ErrorMessage, Field, Pager, fmtDate, useLoad } from "../ui";

const ROLES = ["admin", "operator", "viewer", "auditor"];

interface UserRow {
  id: string;
  username: string;
  email: string;
  roles: string[];
  enabled: boolean;
  mfa_enabled: boolean;
  last_login: string | null;
}

export function UsersPage() {
  const users = useLoad(() => cc<UserRow[]>("/users", { query: { limit: 1000 } }), []);
  const [form, setForm] = useState({ username: "", email: "", password: "", role: "operator" });
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");

  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await cc<unknown>("/users", {
        body: { username: form.username, email: form.email, password: form.password, roles: [form.role], enabled: true },
      });
      setNotice(`User ${form.username} created.`);
      setForm({ username: "", email: "", password: "", role: "operator" });
      users.reload();
    } catch (err) {
      setError(err);
    }
  };
  const update = async (user: UserRow, body: Record<string, unknown>, message: string) => {
    await cc<unknown>(`/users/${encodeURIComponent(user.id)}`, { method: "PUT", body });
    setNotice(message);
    users.reload();
  };

  return (
    <main id="main">
      <h1>Users</h1>
      <ErrorMessage error={users.error} />
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      {users.data && (
        <>
          <table data-testid="users">
            <thead>
              <tr>
                <th scope="col">Username</th>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                <th scope="col">Enabled</th>
                <th scope="col">MFA</th>
                <th scope="col">Last login</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {users.data.map((u) => (
                <tr key={u.id}>
                  <td>{u.username}</td>
                  <td>{u.email}</td>
                  <td>
                    <select
                      aria-label={`Role of ${u.username}`}
                      value={u.roles[0] ?? ""}
                      onChange={(e) => void update(u, { roles: [e.currentTarget.value] }, `Role of ${u.username} changed.`).catch(setError)}
                    >
                      {ROLES.map((r) => (
                        <option key={r} value={r}>
                          {r}
                        </option>
                      ))}
                    </select>
                  </td>
                  <td>{u.enabled ? "Yes" : "No"}</td>
                  <td>{u.mfa_enabled ? "On" : "Off"}</td>
                  <td>{fmtDate(u.last_login)}</td>
                  <td>
                    <div class="actions">
                    {u.enabled ? (
                      <ConfirmButton label={`Disable ${u.username}`} title={`Disable ${u.username}?`} confirmLabel="Disable" danger onConfirm={() => update(u, { enabled: false }, `${u.username} disabled.`)}>
                        <p>Every session of {u.username} ends now and the user cannot sign in until enabled again.</p>
                      </ConfirmButton>
                    ) : (
                      <button type="button" onClick={() => void update(u, { enabled: true }, `${u.username} enabled.`).catch(setError)}>
                        Enable {u.username}
                      </button>
                    )}
                    <button
                      type="button"
                      onClick={() =>
                        void cc<unknown>(`/users/${encodeURIComponent(u.id)}/unlock`, { method: "POST" })
                          .then(() => setNotice(`${u.username} unlocked.`))
                          .catch(setError)
                      }
                    >
                      Unlock {u.username}
                    </button>
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <form class="card" onSubmit={create} aria-label="New user">
            <h2>New user</h2>
            <div class="toolbar">
              <Field label="Username">
                <input name="new_username" required value={form.username} onInput={(e) => setForm({ ...form, username: e.currentTarget.value })} />
              </Field>
              <Field label="Email">
                <input name="new_email" type="email" required value={form.email} onInput={(e) => setForm({ ...form, email: e.currentTarget.value })} />
              </Field>
              <Field label="Initial password">
                <input name="new_password" type="password" autocomplete="new-password" required value={form.password} onInput={(e) => setForm({ ...form, password: e.currentTarget.value })} />
              </Field>
              <Field label="Role">
                <select name="new_role" value={form.role} onChange={(e) => setForm({ ...form, role: e.currentTarget.value })}>
                  {ROLES.map((r) => (
                    <option key={r} value={r}>
                      {r}
                    </option>
                  ))}
                </select>
              </Field>
            </div>
            <ErrorMessage error={error} />
            <button type="submit" class="primary">
              Create user
            </button>
          </form>
        </>
      )}
    </main>
  );
}

interface Policy {
  id: string;
  name: string;
  version: string;
  description?: string | null;
  enabled: boolean;
  rules: { effect: string; resource: string; action: string[]; condition?: string | null }[];
}

interface Decision {
  allowed: boolean;
  decision: string;
  reason: string;
  matched_rules: Record<string, unknown>[];
  errors: string[];
}

export function PoliciesPage() {
  const policies = useLoad(() => cc<Policy[]>("/policies", { query: { limit: 1000 } }), []);
  const [action, setAction] = useState("create");
  const [resource, setResource] = useState("servers:production");
  const [username, setUsername] = useState("");
  const [roles, setRoles] = useState("");
  const [decision, setDecision] = useState<Decision | null>(null);
  const [error, setError] = useState<unknown>(null);

  const evaluate = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setDecision(null);
    const roleList = roles.split(",").map((r) => r.trim()).filter(Boolean);
    const user = username || roleList.length ? { username, roles: roleList } : null;
    try {
      setDecision(await cc<Decision>("/policies/evaluate", { body: { action, resource, ...(user ? { user } : {}) } }));
    } catch (err) {
      setError(err);
    }
  };

  return (
    <main id="main">
      <h1>Policies</h1>
      <form class="card" onSubmit={evaluate} aria-label="Try a policy decision">
        <h2>Try it</h2>
        <div class="toolbar">
          <Field label="Action">
            <input name="eval_action" required value={action} onInput={(e) => setAction(e.currentTarget.value)} />
          </Field>
          <Field label="Resource">
            <input name="eval_resource" required value={resource} onInput={(e) => setResource(e.currentTarget.value)} />
          </Field>
          <Field label="As user (optional)">
            <input name="eval_username" value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
          </Field>
          <Field label="With roles (comma-separated, optional)">
            <input name="eval_roles" value={roles} onInput={(e) => setRoles(e.currentTarget.value)} />
          </Field>
        </div>
        <button type="submit" class="primary">
          Evaluate
        </button>
        <ErrorMessage error={error} />
        {decision && (
          <div role="status" data-testid="decision" class={decision.allowed ? "notice" : "error"}>
            <strong>{decision.allowed ? "Allowed" : "Denied"}</strong>: {decision.reason}
            {decision.matched_rules.length > 0 && <pre>{JSON.stringify(decision.matched_rules, null, 2)}</pre>}
            {decision.errors.length > 0 && <p>Condition errors: {decision.errors.join("; ")}</p>}
          </div>
        )}
      </form>
      <ErrorMessage error={policies.error} />
      {(policies.data ?? []).map((p) => (
        <section key={p.id} class="card" aria-label={`Policy ${p.name}`}>
          <h2>
            {p.name} <small>v{p.version}</small> {p.enabled ? "" : <em>(disabled)</em>}
          </h2>
          {p.description && <p>{p.description}</p>}
          <table>
            <thead>
              <tr>
                <th scope="col">Effect</th>
                <th scope="col">Resource</th>
                <th scope="col">Actions</th>
                <th scope="col">Condition</th>
              </tr>
            </thead>
            <tbody>
              {p.rules.map((r, i) => (
                <tr key={i}>
                  <td>{r.effect}</td>
                  <td>
                    <code>{r.resource}</code>
                  </td>
                  <td>{r.action.join(", ")}</td>
                  <td>
                    <code>{r.condition ?? ""}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      ))}
    </main>
  );
}

interface AuditEntry {
  id: string;
  timestamp: string;
  user_id: string | null;
  action: string;
  resource: string;
  result: string;
  details: Record<string, unknown>;
}

export function AuditPage() {
  const [draft, setDraft] = useState({ user_id: "", action: "", resource: "", from: "", to: "" });
  const [filters, setFilters] = useState(draft);
  const [offset, setOffset] = useState(0);
  const limit = 50;
  const iso = (local: string) => (local ? new Date(local).toISOString() : "");
  const logs = useLoad(async () => {
    const applied = { ...filters };
    const page = await requestPage<AuditEntry[]>("cc", "/audit/logs", {
      query: { ...applied, from: iso(applied.from), to: iso(applied.to), limit, offset },
    });
    return { ...page, applied };
  }, [filters, offset]);
  const applied = Object.entries(logs.data?.applied ?? {})
    .filter(([, value]) => value)
    .map(([key, value]) => `${key.replace("_", " ")} ${value}`);
  return (
    <main id="main">
      <h1>Audit log</h1>
      <form
        class="toolbar"
        aria-label="Audit filters"
        onSubmit={(e) => {
          e.preventDefault();
          setOffset(0);
          setFilters({ ...draft });
        }}
      >
        <Field label="User id">
          <input name="user_id" value={draft.user_id} onInput={(e) => setDraft({ ...draft, user_id: e.currentTarget.value })} />
        </Field>
        <Field label="Action">
          <input name="action" value={draft.action} onInput={(e) => setDraft({ ...draft, action: e.currentTarget.value })} placeholder="auth.login" />
        </Field>
        <Field label="Resource">
          <input name="resource" value={draft.resource} onInput={(e) => setDraft({ ...draft, resource: e.currentTarget.value })} />
        </Field>
        <Field label="From">
          <input name="from" type="datetime-local" value={draft.from} onInput={(e) => setDraft({ ...draft, from: e.currentTarget.value })} />
        </Field>
        <Field label="To">
          <input name="to" type="datetime-local" value={draft.to} onInput={(e) => setDraft({ ...draft, to: e.currentTarget.value })} />
        </Field>
        <button type="submit" class="primary">
          Filter
        </button>
      </form>
      <ErrorMessage error={logs.error} />
      <table data-testid="audit" aria-busy={logs.loading ? "true" : "false"}>
        <caption data-testid="audit-caption">
          {logs.data ? (applied.length ? `Entries with ${applied.join(", ")}` : "All entries, newest first") : "Loading…"}
        </caption>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">User</th>
            <th scope="col">Action</th>
            <th scope="col">Resource</th>
            <th scope="col">Result</th>
          </tr>
        </thead>
        <tbody>
          {(logs.data?.data ?? []).map((entry) => (
            <tr key={entry.id}>
              <td>{fmtDate(entry.timestamp)}</td>
              <td>{entry.user_id ?? "—"}</td>
              <td>{entry.action}</td>
              <td>{entry.resource}</td>
              <td>{entry.result}</td>
            </tr>
          ))}
          {logs.data?.data.length === 0 && (
            <tr>
              <td colSpan={5}>No entries match.</td>
            </tr>
          )}
        </tbody>
      </table>
      <Pager offset={offset} limit={limit} total={logs.data?.total ?? null} onChange={setOffset} />
    </main>
  );
}
