import { useEffect, useState } from "preact/hooks";
import { cc, currentUser, isLive, logout, onLiveChange, onSessionChange, type User } from "./api";
import { AuditPage, PoliciesPage, UsersPage } from "./pages/admin";
import { BatchPage, BatchesPage } from "./pages/batches";
import { LoginPage } from "./pages/login";
import { MfaPage } from "./pages/mfa";
import { StatePage } from "./pages/state";
import { SubmitPage } from "./pages/submit";
import { TaskPage } from "./pages/task";
import { TasksPage } from "./pages/tasks";
import { match, navigate, usePath } from "./router";

type AdminArea = "users" | "policies" | "audit";
type Rights = Record<AdminArea, boolean>;
const AREAS: AdminArea[] = ["users", "policies", "audit"];

/** What the policies let this user administer (asked of /policies/evaluate). */
async function adminRights(user: User): Promise<Rights> {
  const fallback = user.roles.some((r) => r === "admin" || r === "auditor");
  const entries = await Promise.all(
    AREAS.map(async (area) => {
      try {
        const d = await cc<{ allowed: boolean }>("/policies/evaluate", { body: { action: "read", resource: `${area}:*` } });
        return [area, d.allowed] as const;
      } catch {
        return [area, fallback] as const;
      }
    }),
  );
  return Object.fromEntries(entries) as Rights;
}

function useUser(): User | null {
  const [user, setUser] = useState(currentUser());
  useEffect(() => onSessionChange(() => setUser(currentUser())), []);
  return user;
}

function LiveIndicator() {
  const [live, setLive] = useState(isLive());
  useEffect(() => onLiveChange(setLive), []);
  return (
    <span class={live ? "live on" : "live"} role="status" aria-live="polite">
      {live ? "Live" : "Offline"}
    </span>
  );
}

function Nav({ user, rights, path }: { user: User; rights: Rights | null; path: string }) {
  const link = (href: string, label: string) => (
    <li>
      <a href={`#${href}`} aria-current={path === href || path.startsWith(`${href}/`) ? "page" : undefined}>
        {label}
      </a>
    </li>
  );
  return (
    <header class="topbar">
      <a class="skip" href="#main" onClick={(e) => {
        e.preventDefault();
        document.getElementById("main")?.focus();
      }}>
        Skip to content
      </a>
      <span class="brand">Provisioning</span>
      <nav aria-label="Main">
        <ul>
          {link("/tasks", "Tasks")}
          {link("/submit", "Submit")}
          {link("/batches", "Batches")}
          {link("/state", "State")}
          {rights?.users && link("/admin/users", "Users")}
          {rights?.policies && link("/admin/policies", "Policies")}
          {rights?.audit && link("/admin/audit", "Audit log")}
        </ul>
      </nav>
      <LiveIndicator />
      <span class="who">
        {user.username} ({user.roles.join(", ")})
      </span>
      <button type="button" onClick={() => void logout().then(() => navigate("/login"))}>
        Sign out
      </button>
    </header>
  );
}

function Refused() {
  return (
    <main id="main">
      <h1>Not allowed</h1>
      <p class="error" role="alert">
        Your policies do not allow you to see this page.
      </p>
    </main>
  );
}

export function App() {
  const user = useUser();
  const path = usePath();
  const [rights, setRights] = useState<Rights | null>(null);

  useEffect(() => {
    setRights(null);
    if (user) void adminRights(user).then(setRights);
  }, [user?.id]);

  useEffect(() => {
    if (!user && path !== "/login") navigate("/login");
  }, [user, path]);

  useEffect(() => {
    const main = document.getElementById("main");
    if (main && !main.hasAttribute("tabindex")) main.setAttribute("tabindex", "-1");
    document.title = `${path.split("/")[1] || "console"} · Provisioning console`;
  });

  if (!user) return <LoginPage />;
  if (path === "/login") {
    navigate("/tasks");
    return null;
  }

  let page;
  let params: Record<string, string> | null;
  const admin = (area: AdminArea, element: preact.JSX.Element) =>
    rights === null ? <main id="main"><p role="status">Checking permissions…</p></main> : rights[area] ? element : <Refused />;
  if (path === "/mfa") page = <MfaPage />;
  else if (path === "/tasks") page = <TasksPage />;
  else if ((params = match("/tasks/:id", path))) page = <TaskPage id={params.id ?? ""} />;
  else if (path === "/submit") page = <SubmitPage />;
  else if (path === "/batches") page = <BatchesPage />;
  else if ((params = match("/batches/:id", path))) page = <BatchPage id={params.id ?? ""} />;
  else if (path === "/state") page = <StatePage />;
  else if (path === "/admin/users") page = admin("users", <UsersPage />);
  else if (path === "/admin/policies") page = admin("policies", <PoliciesPage />);
  else if (path === "/admin/audit") page = admin("audit", <AuditPage />);
  else
    page = (
      <main id="main">
        <h1>Not found</h1>
        <p>
          There is no page here. <a href="#/tasks">Go to the tasks</a>.
        </p>
      </main>
    );

  return (
    <>
      <Nav user={user} rights={rights} path={path} />
      {page}
    </>
  );
}
