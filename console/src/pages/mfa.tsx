import { useState } from "preact/hooks";
import { cc, markMfaEnabled } from "../api";
import { QrCode } from "../qr";
import { navigate } from "../router";
import { ErrorMessage, Field } from "../ui";
import { pendingPassword } from "./login";

interface Enrollment {
  secret: string;
  otpauth_uri: string;
}

/** First-time TOTP enrolment: password again, QR code, first code. */
export function MfaPage() {
  const [password, setPassword] = useState(pendingPassword.value);
  const [enrollment, setEnrollment] = useState<Enrollment | null>(null);
  const [code, setCode] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const start = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setEnrollment(await cc<Enrollment>("/auth/mfa/enroll", { body: { password } }));
      pendingPassword.value = "";
      setPassword("");
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const verify = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await cc<unknown>("/auth/mfa/verify", { body: { code: code.trim() } });
      markMfaEnabled();
      navigate("/tasks");
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main">
      <h1>Set up two-factor authentication</h1>
      {!enrollment ? (
        <form onSubmit={start} class="card" aria-label="Start enrolment">
          <p>Your account has no second factor yet. Confirm your password to get a QR code for your authenticator app.</p>
          <Field label="Password">
            <input type="password" name="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
          </Field>
          <ErrorMessage error={error} />
          <div class="actions">
            <button type="submit" class="primary" disabled={busy}>
              Show QR code
            </button>
            <a href="#/tasks">Not now</a>
          </div>
        </form>
      ) : (
        <form onSubmit={verify} class="card" aria-label="Verify enrolment">
          <p>Scan this code with your authenticator app, then enter the code it shows.</p>
          <QrCode text={enrollment.otpauth_uri} label="QR code of the authenticator secret" />
          <p>
            Or enter this key by hand: <code data-testid="mfa-secret">{enrollment.secret}</code>
          </p>
          <Field label="Code from the app">
            <input name="code" inputMode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxLength={6} required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
          </Field>
          <ErrorMessage error={error} />
          <button type="submit" class="primary" disabled={busy}>
            Turn on two-factor authentication
          </button>
        </form>
      )}
    </main>
  );
}
