import { useState } from "preact/hooks";
import { ApiError, login } from "../api";
import { navigate } from "../router";
import { ErrorMessage, Field } from "../ui";

/** Remembered only until enrolment starts (memory, this page's lifetime). */
export const pendingPassword = { value: "" };

export function LoginPage() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [needCode, setNeedCode] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const user = await login(username, password, code.trim());
      if (!user.mfa_enabled) {
        pendingPassword.value = password;
        navigate("/mfa");
      } else {
        navigate("/tasks");
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 401 && /mfa/i.test(err.message)) setNeedCode(true);
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="login">
      <h1>Provisioning console</h1>
      <form onSubmit={submit} aria-label="Sign in" class="card">
        <h2>Sign in</h2>
        <Field label="Username">
          <input name="username" autocomplete="username" required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
        </Field>
        <Field label="Password">
          <input name="password" type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </Field>
        <Field label="Authentication code" hint={needCode ? "Enter the 6-digit code from your authenticator app" : "Only if two-factor authentication is on"}>
          <input
            name="mfa_code"
            inputMode="numeric"
            autocomplete="one-time-code"
            pattern="[0-9]{6}"
            maxLength={6}
            required={needCode}
            value={code}
            onInput={(e) => setCode(e.currentTarget.value)}
          />
        </Field>
        <ErrorMessage error={error} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
