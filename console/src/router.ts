// Hash routing (#/tasks/42): works under /ui/ and any gateway prefix without
// server-side fallbacks.
import { useEffect, useState } from "preact/hooks";

export function currentPath(): string {
  const hash = window.location.hash.replace(/^#/, "");
  return hash.startsWith("/") ? hash : "/tasks";
}

export function navigate(path: string): void {
  if (currentPath() !== path) window.location.hash = path;
}

export function usePath(): string {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const update = () => setPath(currentPath());
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return path;
}

/** ``match("/tasks/:id", "/tasks/42")`` -> ``{id: "42"}``; null when it does not match. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const [pathname] = path.split("?");
  const want = pattern.split("/");
  const got = (pathname ?? "").split("/");
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i] ?? "";
    const g = got[i] ?? "";
    if (w.startsWith(":")) params[w.slice(1)] = decodeURIComponent(g);
    else if (w !== g) return null;
  }
  return params;
}
