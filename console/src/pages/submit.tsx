import { useState } from "preact/hooks";
import { orch } from "../api";
import { navigate } from "../router";
import { ErrorMessage, Field } from "../ui";

type Kind = "server" | "taskserv" | "cluster";
const PATHS: Record<Kind, string> = {
  server: "/workflows/servers/create",
  taskserv: "/workflows/taskserv/create",
  cluster: "/workflows/cluster/create",
};
const OPERATIONS = ["create", "delete", "update"];

export function SubmitPage() {
  const [kind, setKind] = useState<Kind>("server");
  const [infra, setInfra] = useState("");
  const [settings, setSettings] = useState("config.k");
  const [operation, setOperation] = useState("create");
  const [target, setTarget] = useState("");
  const [checkMode, setCheckMode] = useState(false);
  const [wait, setWait] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const body: Record<string, unknown> = { infra, settings, check_mode: checkMode, wait };
    if (kind === "taskserv") Object.assign(body, { operation, taskserv: target });
    if (kind === "cluster") Object.assign(body, { operation, cluster_type: target });
    try {
      const id = await orch<string>(PATHS[kind], { body });
      navigate(`/tasks/${id}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main">
      <h1>Submit a workflow</h1>
      <form class="card" onSubmit={submit} aria-label="Workflow">
        <fieldset>
          <legend>Kind</legend>
          {(["server", "taskserv", "cluster"] as Kind[]).map((k) => (
            <label key={k} class="inline">
              <input type="radio" name="kind" value={k} checked={kind === k} onChange={() => setKind(k)} />{" "}
              {k === "server" ? "Servers" : k === "taskserv" ? "Task service" : "Cluster"}
            </label>
          ))}
        </fieldset>
        {kind !== "server" && (
          <Field label="Operation">
            <select name="operation" value={operation} onChange={(e) => setOperation(e.currentTarget.value)}>
              {OPERATIONS.map((o) => (
                <option key={o} value={o}>
                  {o}
                </option>
              ))}
            </select>
          </Field>
        )}
        {kind !== "server" && (
          <Field label={kind === "taskserv" ? "Task service" : "Cluster type"}>
            <input name="target" required value={target} onInput={(e) => setTarget(e.currentTarget.value)} placeholder={kind === "taskserv" ? "kubernetes" : "buildkit"} />
          </Field>
        )}
        <Field label="Infrastructure">
          <input name="infra" required value={infra} onInput={(e) => setInfra(e.currentTarget.value)} placeholder="production" />
        </Field>
        <Field label="Settings file">
          <input name="settings" required value={settings} onInput={(e) => setSettings(e.currentTarget.value)} />
        </Field>
        <label class="inline">
          <input type="checkbox" name="check_mode" checked={checkMode} onChange={(e) => setCheckMode(e.currentTarget.checked)} /> Check mode (dry run: nothing is changed)
        </label>
        <label class="inline">
          <input type="checkbox" name="wait" checked={wait} onChange={(e) => setWait(e.currentTarget.checked)} /> Wait for completion
        </label>
        <ErrorMessage error={error} />
        <button type="submit" class="primary" disabled={busy}>
          Submit
        </button>
      </form>
    </main>
  );
}
